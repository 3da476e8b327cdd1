"""The Comet rule on a hand-built book, against figures worked out by hand from Comet.sol.

One market: USDC base (column 0) and WETH collateral (column 1) with borrowCollateralFactor 0.83,
liquidateCollateralFactor 0.90, liquidationFactor 0.95, storeFrontPriceFactor 0.6.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.base import LendingBook
from protocols.comet import exact
from protocols.comet.rules import CometRules


def book(weth: list[float], debt_usdc: list[float], supplied_usdc: list[float] | None = None) -> LendingBook:
    n = len(weth)
    collateral = np.zeros((n, 2))
    collateral[:, 1] = weth
    collateral[:, 0] = supplied_usdc or [0.0] * n
    debt = np.zeros((n, 2))
    debt[:, 0] = debt_usdc
    return LendingBook(
        protocol="comet", market="0xComet", accounts=np.array([f"a{i}" for i in range(n)], dtype=object),
        assets=np.array(["USDC", "WETH"], dtype=object), collateral=collateral, debt=debt,
        category=np.zeros(n, dtype=np.int64),
        params={"borrow_collateral_factor": np.array([0.0, 0.83]),
                "liquidate_collateral_factor": np.array([0.0, 0.90]),
                "liquidation_factor": np.array([0.0, 0.95]), "collateral_enabled": np.array([False, True])},
        extra={"base_column": 0, "store_front_price_factor": 0.6, "target_reserves": 5e6, "reserves": 1e6,
               "protocol_collateral": np.zeros(2)})


def test_liquidatable_uses_the_liquidate_collateral_factor():
    rules = CometRules()
    # 10 WETH and 17,000 USDC of debt: covered 10 × p × 0.9 -> 18,000 at 2,000 (safe), 16,200 at 1,800
    b = book([10.0, 10.0, 0.0], [17_000.0, 0.0, 0.0], supplied_usdc=[0.0, 0.0, 5_000.0])
    assert rules.liquidatable(b, np.array([1.0, 2000.0])).tolist() == [False, False, False]
    assert rules.liquidatable(b, np.array([1.0, 1800.0])).tolist() == [True, False, False]
    assert rules.health_factor(b, np.array([1.0, 1800.0]))[0] == pytest.approx(16_200 / 17_000)
    assert np.isinf(rules.health_factor(b, np.array([1.0, 1800.0]))[1:]).all()


def test_absorb_pays_the_larger_of_debt_and_credit_from_reserves():
    rules = CometRules()
    b = book([10.0, 10.0], [17_000.0, 17_000.0])
    # at 1,800: credit 10 × 1,800 × 0.95 = 17,100 > debt: reserves pay 17,100, 100 left as a supply
    # at 1,500 (second book): credit 14,250 < debt 17,000: reserves pay the debt, 2,750 is bad debt
    step = rules.liquidate(b, np.array([1.0, 1800.0]))
    assert step.absorbed_by_protocol and step.rows.tolist() == [0, 1]
    assert step.seized[:, 1].tolist() == [10.0, 10.0] and step.repaid[:, 0].tolist() == [17_000.0, 17_000.0]
    assert step.reserves_change_usd == pytest.approx(-2 * 17_100)
    after = rules.apply(b, step)
    assert after.debt.sum() == 0 and after.collateral[:, 1].sum() == 0
    assert after.collateral[:, 0].tolist() == pytest.approx([100.0, 100.0])
    assert after.extra["reserves"] == pytest.approx(1e6 - 34_200)
    assert after.extra["protocol_collateral"].tolist() == [0.0, 20.0]
    assert b.debt.sum() == 34_000  # the input book is unchanged

    deep = rules.liquidate(b, np.array([1.0, 1500.0]))
    assert deep.reserves_change_usd == pytest.approx(-2 * 17_000)
    assert rules.apply(b, deep).collateral[:, 0].tolist() == [0.0, 0.0]
    assert rules.bad_debt_usd(b, np.array([1.0, 1500.0])).tolist() == pytest.approx([17_000 - 14_250] * 2)


def test_mask_restricts_the_absorbed_accounts():
    rules = CometRules()
    b = book([10.0, 10.0], [17_000.0, 17_000.0])
    step = rules.liquidate(b, np.array([1.0, 1800.0]), mask=np.array([False, True]))
    assert step.rows.tolist() == [1]


def test_store_front_price_and_exact_quote():
    rules = CometRules()
    b = book([1.0], [0.0])
    # discount = 0.6 × (1 − 0.95) = 3%: 1,940 USDC per WETH at an oracle price of 2,000
    assert rules.store_front_price(b, np.array([1.0, 2000.0]))[1] == pytest.approx(1940.0)
    assert rules.quote_collateral(b, np.array([1.0, 2000.0]), 1, 1940.0) == pytest.approx(1.0)
    # integer path: 1,940 USDC (6 decimals) buys exactly 1 WETH (18 decimals)
    assert exact.quote_collateral(1940 * 10**6, 2000 * 10**8, 10**8, 10**18, 10**6, 95 * 10**16, 6 * 10**17) == 10**18


def test_exact_absorb_rounds_as_comet():
    # borrow principal rounds up, supply principal down (CometCore.principalValueBorrow / Supply)
    assert exact.principal_value(-1, 10**15 + 1, 10**15 + 1) == -1
    assert exact.principal_value(999, 10**15 * 2, 10**15) == 499
    state = exact.CometState(
        supply_index=10**15, borrow_index=10**15, total_supply_base=100_000 * 10**6,
        total_borrow_base=17_000 * 10**6, base_balance=83_000 * 10**6 + 10**12, base_price=10**8, base_scale=10**6,
        asset_scale=[10**18], asset_price=[1800 * 10**8], liquidate_collateral_factor=[9 * 10**17],
        liquidation_factor=[95 * 10**16], principal={"a": -17_000 * 10**6}, collateral={"a": [10 * 10**18]})
    before = state.reserves()
    assert before == 10**12
    assert state.absorb("a") == 17_100 * 10**6
    assert state.reserves() - before == -17_100 * 10**6
    assert state.principal["a"] == 100 * 10**6 and state.total_borrow_base == 0
    with pytest.raises(ValueError):
        state.absorb("a")
