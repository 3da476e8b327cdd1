"""Compound V2 incremental rescans read their touched accounts in the markets those held at the
earlier block and the markets the change events show since (a cToken ``Transfer`` to its receiver,
a ``Borrow`` to its borrower), and compute the others: the snapshot is the full scan's at the later
block, read through Multicall3 in every market (an independent computation)."""

from __future__ import annotations

import json

from analyzer import scan_chunks
from analyzer.books import market_of
from analyzer.cheats import deal
from analyzer.devnet.scenario import account_address
from analyzer.multicall import Call
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal
from tests.test_scan_incremental import send

pytestmark = requires_anvil


def test_a_rescan_reads_touched_accounts_in_their_old_and_new_markets(chain_checkpoint, tmp_path, monkeypatch):
    devnet = chain_checkpoint
    given = []      # the holdings each rescan read its touched accounts under
    real_holdings = scan_chunks._holdings
    monkeypatch.setattr(scan_chunks, "_holdings", lambda *args: given.append(real_holdings(*args)) or given[-1])
    w3, compound = devnet.w3, [plugins()["compound-v2"]]
    deployment = market_of(devnet.book, "compound-v2")
    markets = deployment["markets"]
    c_usdc = markets["USDC"]["cToken"]
    earlier = w3.eth.block_number
    first = scan(devnet.url, compound, book=devnet.book, block=earlier, cache_dir=tmp_path)
    positions = first.positions
    held = {a: set(reserves) for a, reserves in positions.groupby("account")["reserve"]}
    entered = first.accounts.set_index("account")["params"].map(lambda p: json.loads(p)["entered"])
    # the largest supplier of one market (not USDC) it entered now borrows in a market it never
    # held (one others borrow in: borrowable, priced)
    supplied = positions[positions["side"] == "collateral"].sort_values("amount", ascending=False)
    borrowed = set(positions[positions["side"] == "debt"]["reserve"])
    borrower, c_held = next((a, r) for a, r in zip(supplied["account"], supplied["reserve"], strict=True)
                            if r != c_usdc and r in entered[a] and borrowed - held[a])
    symbol = next(s for s, m in sorted(markets.items()) if m["cToken"] in borrowed - held[borrower])
    c_new = markets[symbol]["cToken"]
    send(w3, borrower, Call(c_new, "borrow(uint256)(uint256)", (10 ** int(markets[symbol]["decimals"]) // 100,)))
    # an existing USDC borrower borrows more (the USDC index moves for every other USDC borrower)
    usdc_borrower = positions[(positions["reserve"] == c_usdc) & (positions["side"] == "debt")]["account"].iloc[0]
    send(w3, usdc_borrower, Call(c_usdc, "borrow(uint256)(uint256)", (10**6,)))
    # a newcomer mints cUSDC and enters the market; it receives the borrower's cToken by transfer alone
    newcomer = account_address("compound-rescan-newcomer")
    usdc = markets["USDC"]["underlying"]
    deal(w3, usdc, newcomer, 10**9)
    send(w3, newcomer, Call(usdc, "approve(address,uint256)(bool)", (c_usdc, 10**9)))
    send(w3, newcomer, Call(c_usdc, "mint(uint256)(uint256)", (10**9,)))
    send(w3, newcomer, Call(deployment["comptroller"], "enterMarkets(address[])(uint256[])", ([c_usdc],)))
    send(w3, borrower, Call(c_held, "transfer(address,uint256)(bool)", (newcomer, 10**6)))
    w3.provider.make_request("evm_increaseTime", [30 * 86400])
    w3.provider.make_request("anvil_mine", ["0x3"])
    later = w3.eth.block_number
    stats = ScanStats()
    rescan = scan(devnet.url, compound, book=devnet.book, block=later, cache_dir=tmp_path, since_block=earlier,
                  stats=stats)
    full = scan(devnet.url, compound, book=devnet.book, block=later, cache_dir=None, use_lens=False)
    tables_equal(rescan, full)
    assert stats.accounts["compound-v2"] == 3
    assert set(given[-1][borrower]) == held[borrower] | {c_new}
    assert set(given[-1][newcomer]) == {c_usdc, c_held}
    assert set(given[-1][usdc_borrower]) == held[usdc_borrower]
    debts = full.positions[full.positions["side"] == "debt"]
    assert ((debts["account"] == borrower) & (debts["reserve"] == c_new)).any()
    assert json.loads(full.accounts.set_index("account").at[newcomer, "params"])["entered"] == [c_usdc]
    # untouched USDC borrowers were computed at the moved index: their stored balances moved
    before, after = (s.positions[(s.positions["reserve"] == c_usdc) & (s.positions["side"] == "debt")]
                     .set_index("account")["raw"] for s in (first, full))
    common = before.index.intersection(after.index).difference([usdc_borrower])
    assert len(common) > 5 and (before[common] != after[common]).all()
