"""Scan: totals equal the chain, an interrupted scan resumes without re-reading, faults are survived.

The fault suite puts tests/rpcserver.FaultProxy between the scan and the devnet: each fault kind
hits about a third of all requests, and the scan must still produce exactly the clean snapshot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from analyzer.books import market_of
from analyzer.errors import ContagionError
from analyzer.model import TABLES
from analyzer.multicall import Call, multicall
from analyzer.rpc import RpcClient
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.rpcserver import FAULTS, FaultProxy

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")


def chosen(*names):
    known = plugins()
    return [known[n] for n in names if n in known]


def tables_equal(a, b) -> None:
    for name in TABLES:
        left = a.table(name).sort_values(list(a.table(name).columns)).reset_index(drop=True)
        right = b.table(name).sort_values(list(b.table(name).columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right)


@pytest.fixture(scope="module")
def clean(devnet):
    block = devnet.w3.eth.block_number
    return block, scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None)


def test_per_protocol_totals_equal_the_chain(devnet, clean):
    """Σ of every account's raw balance equals the token's own totalSupply (Compound cTokens,
    Comet collateral totals); Aave debt within rounding of its index maths (1 wei per account)."""
    block, snapshot = clean
    w3, book = devnet.w3, devnet.book
    checked = 0
    pos = snapshot.positions
    if "compound-v2" in book["protocols"]:
        markets = snapshot.markets[snapshot.markets["protocol"] == "compound-v2"]
        for row in markets.itertuples(index=False):
            ctoken = json.loads(row.params)["ctoken"]
            total = multicall(w3, [Call(ctoken, "totalSupply()(uint256)")], block=block)[0].unwrap()
            held = pos[(pos["protocol"] == "compound-v2") & (pos["reserve"] == row.reserve) & (pos["side"] == "collateral")]
            assert sum(int(r) for r in held["raw"]) == total, row.asset
            checked += 1
    if "aave-v3" in book["protocols"]:
        for symbol, reserve in market_of(book, "aave-v3")["reserves"].items():
            total = multicall(w3, [Call(reserve["variableDebtToken"], "totalSupply()(uint256)")], block=block)[0].unwrap()
            owed = pos[(pos["protocol"] == "aave-v3") & (pos["asset"] == reserve["asset"]) & (pos["side"] == "debt")]
            accounts = len(owed)
            assert abs(sum(int(r) for r in owed["raw"]) - total) <= accounts + 1, symbol
            checked += 1
    assert checked >= 5


def test_an_interrupted_scan_resumes_without_reading_finished_chunks(devnet, tmp_path):
    lenders = chosen("aave-v3")
    block = devnet.w3.eth.block_number
    full = ScanStats()
    reference = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path / "a",
                     chunk_accounts=25, stats=full)
    calls_full = full.requests.get("eth_call", 0)

    crashed_after = 5

    def crash(label, done, total):
        if label.endswith("accounts") and done >= crashed_after * 25:
            raise KeyboardInterrupt  # the user's Ctrl-C, mid-scan

    cache = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=cache, chunk_accounts=25,
             progress=crash, workers=1)
    resumed = ScanStats()
    again = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=cache, chunk_accounts=25,
                 stats=resumed)
    tables_equal(again, reference)
    chunks = full.chunks_read
    assert resumed.chunks_cached >= crashed_after          # markets, discovery and finished position chunks
    assert resumed.chunks_read == chunks - resumed.chunks_cached
    assert resumed.requests.get("eth_call", 0) < calls_full
    rerun = ScanStats()
    scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=cache, chunk_accounts=25, stats=rerun)
    assert rerun.chunks_read == 0 and rerun.requests.get("eth_call", 0) == 0


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_kind_ends_in_the_clean_snapshot(devnet, clean, chain_checkpoint, fault):
    block, reference = clean
    if fault == "wrong_block":
        # later blocks must exist (with interest accrued) for a replica to answer from one
        devnet.w3.provider.make_request("evm_increaseTime", [3600])
        devnet.w3.provider.make_request("anvil_mine", ["0x3"])
    with FaultProxy(devnet.url, faults=(fault,), rate=0.35, seed=7, max_log_range=None, delay_s=0.05) as proxy:
        client = RpcClient(proxy.url, backoff_s=0.001, max_backoff_s=0.01, max_retries=12)
        got = scan(proxy.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None, client=client,
                   log_range=200)
    assert sum(proxy.injected.values()) >= 3, f"the {fault} fault was hardly injected: {proxy.injected}"
    tables_equal(got, reference)


def test_a_node_with_a_narrow_log_range_is_read_in_smaller_ranges(devnet, clean):
    block, reference = clean
    with FaultProxy(devnet.url, faults=(), rate=0.0, max_log_range=64) as proxy:
        got = scan(proxy.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None, log_range=5000)
    assert proxy.injected["logs_range_limit"] > 0
    tables_equal(got, reference)


def test_a_node_that_keeps_failing_is_a_clear_error_and_no_snapshot(devnet, tmp_path):
    with FaultProxy(devnet.url, faults=("http503",), rate=1.0) as proxy:
        client = RpcClient(proxy.url, backoff_s=0.001, max_backoff_s=0.002, max_retries=3)
        with pytest.raises(ContagionError, match="kept failing"):
            scan(proxy.url, chosen("aave-v3"), book=devnet.book, cache_dir=None, client=client)
    assert not (tmp_path / "snapshot").exists()


def test_a_planted_secret_appears_in_no_output_or_log(devnet, tmp_path):
    """The RPC URL carries a key; scan, graph, simulate and report must never write or print it."""
    secret = "s3cr3tK3yDoNotLeak0123456789abcdef"
    book_path = tmp_path / "book.json"
    book_path.write_text(json.dumps(devnet.book))
    out = tmp_path / "run"
    with FaultProxy(devnet.url, faults=(), rate=0.0) as proxy:
        url = f"{proxy.url}/v2/{secret}"
        env = dict(os.environ)
        runs = [
            ["scan", "--rpc", url, "--book", str(book_path), "--protocols", "aave-v3,uniswap-v3",
             "--out", str(out / "snapshot"), "--no-cache"],
            ["graph", str(out / "snapshot"), "--out", str(out)],
            ["simulate", str(out / "snapshot"), "--shock", "WETH=-25%", "--out", str(out), "--report"],
            ["scan", "--rpc", f"http://127.0.0.1:1/v2/{secret}", "--book", str(book_path), "--out", str(tmp_path / "x")],
        ]
        logs = []
        for args in runs:
            proc = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True,
                                  env=env, timeout=600)
            logs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 2 and "error:" in proc.stderr  # the unreachable node, redacted
    assert (out / "report.html").is_file()
    for log in logs:
        assert secret not in log
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_scan_leaves_the_garbage_collector_as_it_found_it_even_when_it_fails():
    """A scan pauses the collector while it runs: after it, by an error too, the collector is on
    again if it was on, and still off if it was off."""
    import gc

    with pytest.raises(ContagionError):
        scan("http://user:pass@host with space", [])
    assert gc.isenabled()
    gc.disable()
    try:
        with pytest.raises(ContagionError):
            scan("http://user:pass@host with space", [])
        assert not gc.isenabled()
    finally:
        gc.enable()
