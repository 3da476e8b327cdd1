"""Two Compound V2 markets of one underlying, as Ethereum has the legacy cWBTC beside cWBTC2.

The devnet lists WBTC twice (``WBTC`` and ``WBTC2``: two cTokens over one token, one feed), with
collateral and borrows open in both. Each market is its own snapshot row and book column (keyed
by its cToken, the ``reserve``), read in full; expected values come from the chain (cToken
totals, balances, ``LiquidateBorrow`` receipts), never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.engine.prepare import prepare
from analyzer.graph import build_graph
from protocols.compound_v2.constants import PROTOCOL
from protocols.compound_v2.executor import CompoundV2Executor
from protocols.compound_v2.reader import read_snapshot
from protocols.compound_v2.rules import CompoundV2Rules
from tests.conftest import requires_anvil
from tests.test_compound_v2_devnet import at_chain_exchange_rate

pytestmark = requires_anvil


@pytest.fixture(scope="module")
def deployment(devnet):
    if PROTOCOL not in devnet.book["protocols"]:
        pytest.skip("compound-v2 is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    markets = market_of(devnet.book, PROTOCOL)
    assert markets["markets"]["WBTC"]["underlying"] == markets["markets"]["WBTC2"]["underlying"]
    assert markets["markets"]["WBTC"]["cToken"] != markets["markets"]["WBTC2"]["cToken"]
    return markets


def _ctoken(w3, address):
    return w3.eth.contract(address=address, abi=fixture_artifact("compound_v2", "CErc20")["abi"])


def test_both_markets_are_rows_and_columns_whose_totals_equal_the_chain(devnet, deployment):
    w3 = devnet.w3
    block = w3.eth.block_number
    snap = read_snapshot(w3, deployment, block)
    wbtc = deployment["markets"]["WBTC"]["underlying"]
    ctokens = {deployment["markets"][s]["cToken"] for s in ("WBTC", "WBTC2")}
    rows = snap.markets[snap.markets["asset"] == wbtc]
    assert set(rows["reserve"]) == ctokens and len(rows) == 2
    assert "excluded_markets" not in snap.meta or all(e["asset"] not in ctokens for e in snap.meta["excluded_markets"])
    (book,) = CompoundV2Rules().books(snap)
    for ctoken in ctokens:
        token = _ctoken(w3, ctoken)
        j = list(book.reserves).index(ctoken)
        assert book.assets[j] == wbtc
        held = snap.positions[snap.positions["reserve"] == ctoken]
        supplied = held[held["side"] == "collateral"]
        borrowed = held[held["side"] == "debt"]
        # every cToken holder is found: the balances sum to totalSupply, to the unit
        assert sum(int(x) for x in supplied["raw"]) == token.functions.totalSupply().call(block_identifier=block)
        total_borrows = token.functions.totalBorrows().call(block_identifier=block)
        stored = sum(int(x) for x in borrowed["raw"])
        # every borrower is found: totalBorrows accrues on its own (truncating each accrual), so the
        # stored balances meet it to a few units, not exactly
        assert total_borrows > 0 and stored == pytest.approx(total_borrows, rel=1e-6)
        for row in held.itertuples():
            chain = token.functions.balanceOf(row.account).call(block_identifier=block) if row.side == "collateral" \
                else token.functions.borrowBalanceStored(row.account).call(block_identifier=block)
            assert int(row.raw) == chain
        # the float book owes the supply interest of the blocks since the market's last accrual
        # (CToken.accrueInterest adds them at the next interaction): read from the chain
        pending = block - token.functions.accrualBlockNumber().call(block_identifier=block)
        rate = token.functions.supplyRatePerBlock().call(block_identifier=block) / 1e18
        assert book.collateral[:, j].sum() == pytest.approx(supplied["amount"].sum() * (1 + rate * pending), rel=1e-12)
    # the engine maps both columns to the one WBTC asset; the graph sums both into its edges
    prep = prepare(snap, venues={})
    (slot,) = [s for s in prep.slots if s.protocol == PROTOCOL]
    wbtc_index = list(prep.assets).index(wbtc)
    assert sorted(j for j, a in enumerate(slot.cols) if a == wbtc_index) == \
        sorted(list(book.reserves).index(c) for c in ctokens)
    # the graph's backed-by edge (comptroller -> WBTC) holds the collateral of both markets
    graph = build_graph(snap, fold_below_usd=0.0)
    market_node = f"market:{PROTOCOL}:{deployment['comptroller']}"
    backed = [d["usd"] for _, target, d in graph.out_edges(market_node, data=True)
              if target == f"asset:{wbtc}" and d["kind"] == "backed-by"]
    both = snap.positions[snap.positions["reserve"].isin(ctokens) & (snap.positions["side"] == "collateral")]
    assert backed == [pytest.approx(both["amount"].sum() * snap.price_of()[wbtc], rel=1e-9)]


def _liquidate_column(devnet, deployment, label: str, expect_debt: str, expect_collateral: str):
    """The rule's step for ``label``, executed for real on the markets its columns name; asserts the
    step repays ``expect_debt``'s market and seizes ``expect_collateral``'s, as the chain does."""
    w3 = devnet.w3
    snap = read_snapshot(w3, deployment)
    rules = CompoundV2Rules()
    (book,) = rules.books(snap)
    prices = book.params["oracle_price_usd"]
    account = account_address(label)
    i = list(book.accounts).index(account)
    assert rules.liquidatable(book, prices)[i] and rules.liquidatable_exact(book)[i]
    step = rules.liquidate(book, prices, np.arange(len(book.accounts)) == i)
    j, k = int(np.argmax(step.repaid[0] * prices)), int(np.argmax(step.seized[0] * prices))
    markets = deployment["markets"]
    assert (book.column_key(j), book.column_key(k)) == (markets[expect_debt]["cToken"],
                                                        markets[expect_collateral]["cToken"])
    repay = rules.max_repay_exact(book, i, j, k)
    debt_token, coll_token = _ctoken(w3, book.column_key(j)), _ctoken(w3, book.column_key(k))
    others = {c: (_ctoken(w3, c).functions.balanceOf(account).call(),
                  _ctoken(w3, c).functions.borrowBalanceStored(account).call())
              for c in book.reserves if c not in (book.column_key(j), book.column_key(k))}
    borrowed_before = debt_token.functions.borrowBalanceStored(account).call()
    held_before = coll_token.functions.balanceOf(account).call()
    executor = CompoundV2Executor(w3, deployment, w3.eth.accounts[7])
    result = executor.liquidate(account, book.column_key(j), book.column_key(k), repay)
    assert result.success, result.error
    seize, share = rules.seize_exact(at_chain_exchange_rate(w3, book, k, result.tx_hash), j, k, repay)
    assert result.repaid[book.assets[j]] == repay
    assert result.seized_ctokens[book.assets[k]] == seize and result.fee_ctokens[book.assets[k]] == share
    assert coll_token.functions.balanceOf(account).call() == held_before - seize
    # accrueInterest runs first: the borrow grows by the interest since the market's last accrual
    assert debt_token.functions.borrowBalanceStored(account).call() == pytest.approx(borrowed_before - repay,
                                                                                     rel=1e-4)
    # every other market (the same underlying's other one too) is untouched
    for c, before in others.items():
        assert (_ctoken(w3, c).functions.balanceOf(account).call(),
                _ctoken(w3, c).functions.borrowBalanceStored(account).call()) == before


def test_a_liquidation_seizes_in_each_market(chain_checkpoint, deployment):
    """WBTC −15%: compound-wbtc-1 (more in WBTC2) is seized in cWBTC2, compound-wbtc-3 in cWBTC."""
    devnet = chain_checkpoint
    executor = CompoundV2Executor(devnet.w3, deployment, devnet.w3.eth.accounts[7])
    executor.set_price(deployment["markets"]["WBTC"]["underlying"], devnet.scenario.assets["WBTC"].price_usd * 0.85)
    _liquidate_column(devnet, deployment, "compound-wbtc-1", "USDC", "WBTC2")
    _liquidate_column(devnet, deployment, "compound-wbtc-3", "USDC", "WBTC")


def test_a_liquidation_repays_in_each_market(chain_checkpoint, deployment):
    """WETH −20%: compound-wbtc-2 borrows in both WBTC markets; its larger borrow (WBTC) is repaid
    first, then (the close factor leaves it in shortfall) the other market's (WBTC2)."""
    devnet = chain_checkpoint
    executor = CompoundV2Executor(devnet.w3, deployment, devnet.w3.eth.accounts[7])
    executor.set_price(deployment["markets"]["WETH"]["underlying"], devnet.scenario.assets["WETH"].price_usd * 0.8)
    _liquidate_column(devnet, deployment, "compound-wbtc-2", "WBTC", "WETH")
    _liquidate_column(devnet, deployment, "compound-wbtc-2", "WBTC2", "WETH")
