"""Incremental rescans: from a cached earlier scan, only the accounts that events named since are
read; the others are computed from the state that scan kept, and the snapshot is the full scan's."""

from __future__ import annotations

from analyzer import scan_chunks
from analyzer.books import market_of
from analyzer.cheats import deal
from analyzer.devnet.scenario import account_address
from analyzer.multicall import Call
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal

pytestmark = requires_anvil


def read_reserves(devnet) -> list[dict]:
    """The pool's reserves with their tokens, read with the scan's reader at the head."""
    from functools import partial

    from analyzer.multicall import multicall
    from protocols.aave_v3.reader import AaveV3Reader
    from protocols.base import ReadContext

    w3, block = devnet.w3, devnet.w3.eth.block_number
    ctx = ReadContext(w3, w3.eth.chain_id, block, partial(multicall, w3, block=block), lambda *a: [])
    return AaveV3Reader(ctx, market_of(devnet.book, "aave-v3")).reserves()


def send(w3, sender: str, call: Call) -> None:
    w3.provider.make_request("anvil_impersonateAccount", [sender])
    w3.provider.make_request("anvil_setBalance", [sender, hex(10**20)])
    tx = w3.eth.send_transaction({"from": sender, "to": call.target, "data": "0x" + call.calldata.hex()})
    assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


def test_a_rescan_reads_only_touched_accounts_and_equals_a_full_scan(chain_checkpoint, tmp_path, monkeypatch):
    devnet = chain_checkpoint
    given = []     # the holdings the touched accounts were read under (kept + since the earlier block)
    real_holdings = scan_chunks._holdings
    monkeypatch.setattr(scan_chunks, "_holdings", lambda *args: given.append(real_holdings(*args)) or given[-1])
    w3, aave = devnet.w3, [plugins()["aave-v3"]]
    deployment = market_of(devnet.book, "aave-v3")
    pool, weth = deployment["pool"], devnet.book["tokens"]["WETH"]
    earlier = w3.eth.block_number
    first = scan(devnet.url, aave, book=devnet.book, block=earlier, cache_dir=tmp_path)
    # two accounts act: one supplies more WETH, a newcomer supplies for the first time
    actor, newcomer = account_address("pop-3"), account_address("incremental-newcomer")
    for who in (actor, newcomer):
        deal(w3, weth, who, 10**19)
        send(w3, who, Call(weth, "approve(address,uint256)(bool)", (pool, 10**19)))
        send(w3, who, Call(pool, "supply(address,uint256,address,uint16)", (weth, 10**18, who, 0)))
    w3.provider.make_request("evm_increaseTime", [30 * 86400])   # a month of interest for everyone else
    w3.provider.make_request("anvil_mine", ["0x3"])
    later = w3.eth.block_number
    stats = ScanStats()
    rescan = scan(devnet.url, aave, book=devnet.book, block=later, cache_dir=tmp_path, since_block=earlier,
                  stats=stats)
    full = scan(devnet.url, aave, book=devnet.book, block=later, cache_dir=None, use_lens=False)
    tables_equal(rescan, full)
    assert stats.accounts["aave-v3"] == 2            # read: only the two that acted
    assert stats.accounts_refreshed["aave-v3"] >= len(set(first.accounts["account"])) - 2
    # the computed accounts really moved with interest: their debts differ from the earlier scan's
    before = first.positions.set_index(["account", "asset", "side"])["raw"]
    after = full.positions.set_index(["account", "asset", "side"])["raw"]
    common = before.index.intersection(after.index)
    assert (before[common] != after[common]).sum() > 100
    assert newcomer in set(rescan.accounts["account"])
    a_weth = next(r["aToken"] for r in read_reserves(devnet) if r["asset"] == weth)
    assert given[-1] is not None and given[-1][newcomer] == [a_weth] and a_weth in given[-1][actor]
    # a rescan of the rescan: from the state the first one kept (its computed accounts by reference
    # to the earlier scan's), after another account acts and a day passes
    send(w3, actor, Call(pool, "supply(address,uint256,address,uint16)", (weth, 10**18, actor, 0)))
    # an aToken received by transfer alone (no Pool event names the receiver)
    receiver = account_address("incremental-receiver")
    send(w3, actor, Call(a_weth, "transfer(address,uint256)(bool)", (receiver, 10**17)))
    w3.provider.make_request("evm_increaseTime", [86400])
    w3.provider.make_request("anvil_mine", ["0x2"])
    last = w3.eth.block_number
    again = scan(devnet.url, aave, book=devnet.book, block=last, cache_dir=tmp_path, since_block=later,
                 stats=(stats := ScanStats()))
    tables_equal(again, scan(devnet.url, aave, book=devnet.book, block=last, cache_dir=None, use_lens=False))
    assert stats.accounts["aave-v3"] == 2
    assert given[-1] is not None and given[-1][receiver] == [a_weth]
    assert receiver in set(again.accounts["account"])
    assert stats.accounts_refreshed["aave-v3"] >= len(set(first.accounts["account"])) - 1
