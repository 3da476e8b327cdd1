"""The lens (our contract in an eth_call state override) reads the same snapshot as Multicall3,
exact integers included, in far fewer calls; a node that refuses overrides gets Multicall3."""

from __future__ import annotations

import json
import logging
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest
from eth_utils import keccak, to_checksum_address

from analyzer import lens as lens_mod
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.rpcserver import _reply, _Server
from tests.test_scan import tables_equal

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")


def chosen(*names):
    known = plugins()
    return [known[n] for n in names if n in known]


class NoOverrideNode(_Server):
    """Forwards to anvil but answers an eth_call with a state override as geth before 1.9.? did."""

    def __init__(self, upstream: str):
        self.upstream, self.refused = upstream, 0

        def factory(server):
            class Handler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_POST(self):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    request = json.loads(body)
                    if request.get("method") == "eth_call" and len(request["params"]) > 2:
                        server.refused += 1
                        error = {"code": -32602, "message": "too many arguments, want at most 2"}
                        return _reply(self, 200, json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode())
                    forward = urllib.request.Request(server.upstream, data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(forward, timeout=60) as response:
                        return _reply(self, 200, response.read())
            return Handler

        super().__init__(factory)


@pytest.fixture(scope="module")
def book_accounts(devnet):
    """Every discovered account of the devnet, and addresses that hold nothing (same reads)."""
    block = devnet.w3.eth.block_number
    seeded = scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None, use_lens=False)
    empty = [to_checksum_address(keccak(text=f"lens-empty-{i}")[-20:]) for i in range(150)]
    return block, seeded, sorted(set(seeded.accounts["account"])) + empty


def test_the_lens_snapshot_equals_the_multicall_snapshot_table_for_table(devnet, book_accounts):
    block, discovered, accounts = book_accounts
    through_multicall, through_lens = ScanStats(), ScanStats()
    reference = scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, accounts=accounts,
                     cache_dir=None, oracle_paths=False, use_lens=False, stats=through_multicall)
    got = scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, accounts=accounts, cache_dir=None, oracle_paths=False,
               stats=through_lens)
    tables_equal(got, reference)
    tables_equal(got, discovered)      # the padding holds nothing, in either path
    assert len(got.positions) > 300
    # (oracle paths off: the derived-price reads are the same in both paths and not what is measured)
    # every protocol's accounts in one or two calls, against one Multicall3 batch per 250 reads
    protocols = sum(len(devnet.book["protocols"][p]) for p in LENDERS if p in devnet.book["protocols"])  # markets
    assert through_lens.requests["eth_call"] < through_multicall.requests["eth_call"] / 3
    assert through_lens.requests["eth_call"] - protocols * 8 <= protocols * 2


def test_a_node_out_of_gas_gets_smaller_calls_and_the_same_snapshot(devnet, book_accounts, monkeypatch):
    block, discovered, accounts = book_accounts
    monkeypatch.setattr(lens_mod, "CALL_GAS", 3_000_000)   # a node with a low eth_call gas cap
    stats = ScanStats()
    got = scan(devnet.url, chosen("aave-v3"), book=devnet.book, block=block, accounts=accounts, cache_dir=None,
               stats=stats)
    tables_equal(got, scan(devnet.url, chosen("aave-v3"), book=devnet.book, block=block, accounts=accounts,
                           cache_dir=None, use_lens=False))
    assert stats.requests["eth_call"] > 10


def test_a_node_without_state_overrides_is_read_through_multicall_and_says_so(devnet, book_accounts, caplog):
    block, discovered, _ = book_accounts
    with NoOverrideNode(devnet.url) as node, caplog.at_level(logging.WARNING, logger="analyzer.scan"):
        got = scan(node.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None)
    assert node.refused == 1                 # asked once, then never again
    assert "state override" in caplog.text and "Multicall3" in caplog.text
    tables_equal(got, discovered)


def test_discovered_accounts_are_read_under_their_holdings_to_the_same_snapshot(devnet, book_accounts, monkeypatch):
    """With discovery, each account's lens row reads only the aTokens / cTokens / collaterals its
    events gave it; the snapshot is still the Multicall3 one, which reads every balance."""
    import protocols.aave_v3.lens as aave_lens
    import protocols.comet.lens as comet_lens
    import protocols.compound_v2.lens as compound_lens

    block, discovered, _ = book_accounts
    skipped: dict[str, int] = {}
    for module in (aave_lens, compound_lens, comet_lens):
        def spy(holdings, accounts, reads, name=module.__name__):
            words = lens_mod.masks(holdings, accounts, reads)
            skipped[name] = skipped.get(name, 0) + sum(len(reads) - bin(w).count("1") for w in words)
            return words
        monkeypatch.setattr(module, "masks", spy)
    got = scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=None)
    tables_equal(got, discovered)
    # every protocol's reads were cut down to the accounts' holdings
    present = {"aave-v3": aave_lens, "compound-v2": compound_lens, "comet": comet_lens}
    for protocol, module in present.items():
        if protocol in devnet.book["protocols"]:
            assert skipped.get(module.__name__, 0) > 0, protocol


def test_comet_borrowers_are_liquidatable_or_not_through_the_lens_as_on_chain(chain_checkpoint):
    """The Comet lens reads principals and collateral; the base balances and isLiquidatable are
    computed from them (protocols/comet/lens.py base_balances). After cUSDCv3's collaterals fall
    15%, some borrowers are liquidatable and some are not: the snapshot equals Multicall3's, which
    calls borrowBalanceOf, balanceOf and isLiquidatable on chain, table for table."""
    from protocols.comet.executor import CometExecutor

    devnet = chain_checkpoint
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    executor = CometExecutor(devnet.w3, devnet.book["protocols"]["comet"]["cUSDCv3"], devnet.w3.eth.accounts[4])
    for symbol in ("WETH", "wstETH", "WBTC", "LINK"):
        executor.set_price(devnet.book["tokens"][symbol], devnet.scenario.assets[symbol].price_usd * 0.85)
    block = devnet.w3.eth.block_number
    reference = scan(devnet.url, chosen("comet"), book=devnet.book, block=block, cache_dir=None, oracle_paths=False,
                     use_lens=False)
    got = scan(devnet.url, chosen("comet"), book=devnet.book, block=block, cache_dir=None, oracle_paths=False)
    tables_equal(got, reference)
    params = [json.loads(p) for p in got.accounts["params"]]
    flags = [p["is_liquidatable"] for p in params if int(p["principal"]) < 0]
    assert any(flags) and not all(flags), flags
    assert (got.positions["side"] == "debt").sum() == len(flags)
