"""Scan throughput on a devnet: lens reads, the naive loop, Multicall3, and an incremental rescan.

Three measurements, one JSON object:

- ``accounts`` / ``seconds`` / ``accounts_per_second``: Aave V3 + Compound V2 + Comet read through
  the lens (no cache) for the scenario's discovered accounts padded with ``--accounts`` addresses
  that hold nothing (they cost the lens every per-reserve read an account with nothing costs);
  ``naive_accounts_per_second``: one ``getUserAccountData`` ``eth_call`` per account on a sample, in
  the same run; ``multicall_accounts_per_second``: the Multicall3 path on a sample; ``rpc_calls``
  (every JSON-RPC request of the lens scan), ``peak_rss_mb``.
- ``discovery_*``: a full scan with discovery of the scenario's book (cold cache).
- ``incremental_*``: Aave V3 alone (the protocol that declares its change events) on the padded
  book: 1% of its accounts act (a supply), a month passes, the rescan from the cached scan against a
  full scan of the same block; ``incremental_identical`` compares them table for table.

    .venv/bin/python -m benchmarks.scan [--scenario mainnet-like] [--accounts 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from eth_utils import keccak, to_checksum_address

from analyzer.cheats import deal
from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import start_devnet
from analyzer.model import TABLES
from analyzer.multicall import Call
from analyzer.rpc import RpcClient
from analyzer.scan import ScanStats, scan
from protocols import parse_protocols

LENDERS = "aave-v3,compound-v2,comet"
USER_ACCOUNT_DATA = "getUserAccountData(address)(uint256,uint256,uint256,uint256,uint256,uint256)"


def identical(a, b) -> bool:
    for name in TABLES:
        left = a.table(name).sort_values(list(a.table(name).columns)).reset_index(drop=True)
        right = b.table(name).sort_values(list(b.table(name).columns)).reset_index(drop=True)
        if not left.equals(right):
            return False
    return True


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def naive_rate(url: str, pool: str, accounts: list[str], block: int) -> float:
    client = RpcClient(url)
    started = time.perf_counter()
    for account in accounts:
        call = Call(pool, USER_ACCOUNT_DATA, (account,))
        client.eth_call({"to": pool, "data": "0x" + call.calldata.hex()}, block)
    return len(accounts) / (time.perf_counter() - started)


def act(w3, book: dict, accounts: list[str]) -> None:
    """Each account supplies 1 WETH more to Aave (impersonated; the devnet is anvil)."""
    pool, weth = book["protocols"]["aave-v3"]["pool"], book["tokens"]["WETH"]
    for who in accounts:
        w3.provider.make_request("anvil_impersonateAccount", [who])
        w3.provider.make_request("anvil_setBalance", [who, hex(10**20)])
        deal(w3, weth, who, 10**19)
        for call in (Call(weth, "approve(address,uint256)(bool)", (pool, 10**19)),
                     Call(pool, "supply(address,uint256,address,uint16)", (weth, 10**18, who, 0))):
            tx = w3.eth.send_transaction({"from": who, "to": call.target, "data": "0x" + call.calldata.hex()})
            w3.eth.wait_for_transaction_receipt(tx)
    w3.provider.make_request("evm_increaseTime", [30 * 86400])
    w3.provider.make_request("anvil_mine", ["0x3"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mainnet-like")
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts read through the lens (padded)")
    parser.add_argument("--naive-sample", type=int, default=1_000)
    args = parser.parse_args()
    lenders = parse_protocols(LENDERS)
    out: dict = {"scenario": args.scenario, "protocols": [p.name for p in lenders]}
    # every plugin, as the test suite's devnet: the cached state is shared
    with start_devnet(scenario_mod.load(args.scenario), parse_protocols(None)) as devnet, \
            tempfile.TemporaryDirectory() as cache:
        w3, book = devnet.w3, devnet.book
        block = w3.eth.block_number
        discovery = ScanStats()
        booked, seconds = timed(lambda: scan(devnet.url, lenders, book=book, block=block, cache_dir=Path(cache),
                                             stats=discovery))
        real = sorted(set(booked.accounts["account"]))
        out.update(discovery_accounts=sum(discovery.accounts.values()), discovery_seconds=round(seconds, 3),
                   discovery_rpc_calls=sum(discovery.requests.values()))

        padding = [to_checksum_address(keccak(text=f"bench-{i}")[-20:]) for i in range(max(args.accounts - len(real), 0))]
        accounts = (real + padding)[:args.accounts]
        stats = ScanStats()
        snapshot, seconds = timed(lambda: scan(devnet.url, lenders, book=book, block=block, accounts=accounts,
                                               cache_dir=None, stats=stats))
        rpc_calls = sum(stats.requests.values())
        sample = accounts[:args.naive_sample]
        naive = naive_rate(devnet.url, book["protocols"]["aave-v3"]["pool"], sample, block)
        _, multicall_seconds = timed(lambda: scan(devnet.url, lenders, book=book, block=block, accounts=sample,
                                                  cache_dir=None, use_lens=False))
        out.update(accounts=len(accounts), real_accounts=len(real), positions=len(snapshot.positions),
                   seconds=round(seconds, 3), accounts_per_second=round(len(accounts) / seconds, 1),
                   naive_accounts_per_second=round(naive, 1), ratio_to_naive=round(len(accounts) / seconds / naive, 1),
                   multicall_accounts_per_second=round(len(sample) / multicall_seconds, 1),
                   rpc_calls=rpc_calls, rpc_calls_per_1000_accounts=round(1000 * rpc_calls / len(accounts), 2))

        # incremental: Aave V3 (the protocol that declares its change events; Compound V2 and Comet
        # are read again in full), the padded book scanned into a cache, then 1% of it acts
        aave = parse_protocols("aave-v3")
        scan(devnet.url, aave, book=book, block=block, accounts=accounts, cache_dir=Path(cache))
        changed = accounts[::100]
        act(w3, book, changed)
        later = w3.eth.block_number
        rescan_stats = ScanStats()
        rescan, incremental = timed(lambda: scan(devnet.url, aave, book=book, block=later, accounts=accounts,
                                                 cache_dir=Path(cache), since_block=block, stats=rescan_stats))
        full, full_seconds = timed(lambda: scan(devnet.url, aave, book=book, block=later, accounts=accounts,
                                                cache_dir=None))
        out.update(incremental_protocols=["aave-v3"], incremental_accounts=len(accounts),
                   incremental_changed_accounts=len(changed), incremental_seconds=round(incremental, 3),
                   incremental_full_seconds=round(full_seconds, 3),
                   incremental_speedup=round(full_seconds / incremental, 1),
                   incremental_accounts_read=rescan_stats.accounts["aave-v3"],
                   incremental_accounts_computed=rescan_stats.accounts_refreshed.get("aave-v3", 0),
                   incremental_identical=identical(rescan, full))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
