"""Each protocol's interest accrual in the engine against the chain's own accrual.

A snapshot is read, time (and blocks) pass on the devnet, the protocol accrues on chain, and the
snapshot is read again: the rule's ``accrue`` of the first book over the elapsed seconds / blocks
must give the second book's debts and deposits.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import function_signature_to_4byte_selector

from analyzer.books import market_of
from analyzer.chain import rpc
from analyzer.multicall import Call, single_call
from analyzer.scan import scan
from protocols import plugins
from protocols.base import InterestAccrual
from tests.conftest import requires_anvil

pytestmark = requires_anvil
MONTH = 30 * 86400
ACCRUE_INTEREST = function_signature_to_4byte_selector("accrueInterest()")


def _books(devnet, name: str):
    """Every market's book of ``name`` (by market), with the read's block and time."""
    plugin = plugins()[name]
    snapshot = scan(devnet.url, [plugin], book=devnet.book, cache_dir=None, oracle_paths=False)
    books = {book.market: book for book in plugin.rules().books(snapshot)}
    return books, snapshot.meta["block_number"], snapshot.meta["block_timestamp"]


def _book(devnet, name: str):
    books, block, timestamp = _books(devnet, name)
    (book,) = books.values()
    return book, block, timestamp


def _same_accounts(before, after):
    index = {a: i for i, a in enumerate(after.accounts)}
    rows = np.array([index[a] for a in before.accounts])
    return after.debt[rows], after.collateral[rows]


@pytest.mark.parametrize("name", ["aave-v3", "comet"])
def test_per_second_accrual_matches_the_chain_after_a_month(chain_checkpoint, name):
    devnet = chain_checkpoint
    rules = plugins()[name].rules()
    assert isinstance(rules, InterestAccrual)
    books_before, _, t0 = _books(devnet, name)
    rpc(devnet.w3, "evm_increaseTime", [MONTH])
    rpc(devnet.w3, "evm_mine", [])
    books_after, _, t1 = _books(devnet, name)
    assert set(books_before) == set(books_after)
    for market, before in books_before.items():       # every market of the protocol (Comet: two)
        debt, collateral = _same_accounts(before, books_after[market])
        grown = rules.accrue(before, float(t1 - t0), 0.0)
        assert (debt > before.debt).any(), f"a month of interest must move some debt in {market}"
        np.testing.assert_allclose(grown.debt, debt, rtol=1e-6)
        np.testing.assert_allclose(grown.collateral, collateral, rtol=1e-6)
        bound = rules.max_debt_growth(before, float(t1 - t0), 0.0)
        assert (debt <= before.debt * bound * (1 + 1e-6) + 1e-12).all()   # + a wei of rounding


@pytest.mark.slow
def test_per_block_accrual_matches_compound_v2_after_accrue_interest(chain_checkpoint):
    devnet = chain_checkpoint
    rules = plugins()["compound-v2"].rules()
    deployment = market_of(devnet.book, "compound-v2")
    w3 = devnet.w3
    before, block_before, _ = _book(devnet, "compound-v2")
    ctokens = [m["cToken"] for m in deployment["markets"].values()]
    # a stored borrow balance is as of the market's last accrual, not the read's block: the book
    # owes the blocks since then too (seeding left hundreds of blocks between them)
    accrued_at = {c: single_call(w3, Call(c, "accrualBlockNumber()(uint256)"), block=block_before).value
                  for c in ctokens}
    assert max(block_before - a for a in accrued_at.values()) > 10
    rpc(w3, "anvil_mine", [hex(300)])
    sender = w3.eth.accounts[0]
    for ctoken in ctokens:   # one accrual each, as the first transaction touching the market would do
        tx = w3.eth.send_transaction({"from": sender, "to": ctoken, "data": "0x" + ACCRUE_INTEREST.hex()})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    after, block_after, _ = _book(devnet, "compound-v2")
    debt, collateral = _same_accounts(before, after)
    assert (debt > before.debt).any()
    # the chain's balances grew from each market's last accrual to the second read; the engine's
    # from the first read, which already owed the blocks before it
    grown = rules.accrue(before, 0.0, float(block_after - block_before))
    # borrowBalanceStored (principal × borrowIndex / interestIndex) truncates to the underlying's
    # smallest unit at each read, before and after: the float growth of the first read differs from
    # the second by under one such unit × the growth (a satoshi is 1.7e-8 of a 0.6 WBTC borrow; a
    # wei is nothing to an 18-decimal one), beside a relative 1e-9 for the order of compounding
    unit = np.array([10.0 ** -_decimals(w3, asset) for asset in before.assets])
    assert (np.abs(grown.debt - debt) <= 1e-9 * np.abs(debt) + 1.001 * unit).all()
    # a cToken's underlying value grows with exchangeRateStored, i.e. by supplyRatePerBlock (no
    # truncation to the underlying's unit: the balance is the cToken count × the exchange rate)
    assert (collateral > before.collateral).any()
    np.testing.assert_allclose(grown.collateral, collateral, rtol=1e-9)


def _decimals(w3, asset: str) -> int:
    """The asset's ``decimals()`` on chain (18 for the native-asset sentinel, which has no code)."""
    if not w3.eth.get_code(asset):
        return 18
    return single_call(w3, Call(asset, "decimals()(uint8)"), block=w3.eth.block_number).value
