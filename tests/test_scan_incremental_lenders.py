"""Incremental rescans of Compound V2 and Comet: from a cached earlier scan, only the accounts that
events named since are read in full; the others are computed from the state that scan kept (with
only the figures no event announces read again: Compound V2 borrow balances in the markets that
accrued interest, Comet principals of non-suppliers), and the snapshot is the full scan's."""

from __future__ import annotations

import json

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.multicall import Call
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal
from tests.test_scan_incremental import send

pytestmark = requires_anvil


def principals(snapshot, market: str) -> dict[str, int]:
    rows = snapshot.accounts[snapshot.accounts["market"] == market]
    return {a: int(json.loads(p)["principal"]) for a, p in zip(rows["account"], rows["params"], strict=True)}


def test_a_compound_and_comet_rescan_equals_a_full_scan(chain_checkpoint, tmp_path):
    devnet = chain_checkpoint
    w3, lenders = devnet.w3, [plugins()["compound-v2"], plugins()["comet"]]
    compound, comet = market_of(devnet.book, "compound-v2"), market_of(devnet.book, "comet", "cUSDCv3")["comet"]
    c_usdc, c_weth = compound["markets"]["USDC"]["cToken"], compound["markets"]["WETH"]["cToken"]
    earlier = w3.eth.block_number
    first = scan(devnet.url, lenders, book=devnet.book, block=earlier, cache_dir=tmp_path)
    borrower, whale, receiver = account_address("pop-5"), account_address("whale-1"), account_address("incr-receiver")
    # Compound V2: a borrow accrues the USDC market (every USDC borrower's stored balance moves),
    # a cToken transfer gives a newcomer a balance by Transfer alone
    send(w3, borrower, Call(c_usdc, "borrow(uint256)(uint256)", (10**6,)))
    send(w3, whale, Call(c_weth, "transfer(address,uint256)(bool)", (receiver, 10**8)))
    # Comet: base transfers that name neither borrower in any event (Comet.transferBase emits
    # Transfer only for supply given up or gained): a borrower to a borrower, a lender to a borrower
    silent = [account_address(x) for x in ("comet-8", "comet-7", "pop-0")]
    send(w3, silent[0], Call(comet, "transfer(address,uint256)(bool)", (silent[1], 1000 * 10**6)))
    send(w3, account_address("comet-lender-1"), Call(comet, "transfer(address,uint256)(bool)", (silent[2], 500 * 10**6)))
    w3.provider.make_request("evm_increaseTime", [30 * 86400])   # a month of Comet interest
    w3.provider.make_request("anvil_mine", ["0x3"])
    later = w3.eth.block_number
    stats = ScanStats()
    rescan = scan(devnet.url, lenders, book=devnet.book, block=later, cache_dir=tmp_path, since_block=earlier,
                  stats=stats)
    full = scan(devnet.url, lenders, book=devnet.book, block=later, cache_dir=None, use_lens=False)
    tables_equal(rescan, full)
    # read in full: only the accounts the events named (the borrower, the whale and the newcomer;
    # the lender, whose Transfer(src, 0) names it); every other account was computed
    assert stats.accounts["compound-v2"] == 3
    assert stats.accounts["comet cUSDCv3"] == 1 and stats.accounts["comet cWETHv3"] == 0
    assert stats.accounts_refreshed["compound-v2"] >= 40
    # block headers asked once a scan: the scan's block and the earlier one (whose hash keys the
    # change logs of all three markets), not once per market
    assert stats.requests["eth_getBlockByNumber"] == 2
    assert receiver in set(rescan.positions["account"])
    # the silent transfers moved the principals the rescan did not read in full
    before, after = principals(first, comet), principals(full, comet)
    assert all(before[a] != after[a] for a in silent)
    # untouched USDC borrowers' stored balances moved with the market's index
    debts = [s.positions[(s.positions["reserve"] == c_usdc) & (s.positions["side"] == "debt")]
             .set_index("account")["raw"] for s in (first, full)]
    common = debts[0].index.intersection(debts[1].index).difference([borrower])
    assert len(common) > 5 and (debts[0][common] != debts[1][common]).all()
    # a rescan of the rescan (from the state the first rescan kept): another accrual, another silent transfer
    send(w3, borrower, Call(c_usdc, "borrow(uint256)(uint256)", (10**6,)))
    send(w3, silent[0], Call(comet, "transfer(address,uint256)(bool)", (silent[1], 1000 * 10**6)))
    w3.provider.make_request("evm_increaseTime", [86400])
    w3.provider.make_request("anvil_mine", ["0x2"])
    last = w3.eth.block_number
    again = scan(devnet.url, lenders, book=devnet.book, block=last, cache_dir=tmp_path, since_block=later,
                 stats=(stats := ScanStats()))
    tables_equal(again, scan(devnet.url, lenders, book=devnet.book, block=last, cache_dir=None, use_lens=False))
    assert stats.accounts["compound-v2"] == 1 and stats.accounts["comet cUSDCv3"] == 0
