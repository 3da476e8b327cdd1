"""Compound V2 rule arithmetic on hand-worked numbers (no chain).

Expected values are worked out by hand in the comments from Compound's formulas, not produced by
the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.base import LendingBook
from protocols.compound_v2 import exact
from protocols.compound_v2.rules import CompoundV2Rules

E18 = 10**18


def test_seize_tokens_hand_worked():
    # repay 1000 USDC (1e9 raw), incentive 1.08, USDC price 1e30 (1e(36-6)), WETH 3000e18, cWETH rate 2e26:
    # numerator 1.08e30, denominator 3000e18·2e26/1e18 = 6e29, ratio 1.8e18 -> 1.8e9 cTokens (18 cWETH = 0.36 WETH)
    assert exact.seize_tokens(10**9, 108 * 10**16, 10**30, 3000 * E18, 2 * 10**26) == 1_800_000_000
    # Compound keeps 2.8% of the cTokens; Venus IL 5% / 1.08 of them
    assert exact.protocol_seize_tokens(1_800_000_000, 28 * 10**15) == 50_400_000
    assert exact.protocol_seize_tokens(1_800_000_000, 5 * 10**16, 108 * 10**16) == 83_333_333
    # the largest repay whose seize fits 9e8 cTokens: 9e8 / 1.8 = 5e8 raw USDC
    assert exact.max_repay_for_balance(900_000_000, 108 * 10**16, 10**30, 3000 * E18, 2 * 10**26) == 500_000_000
    assert exact.max_close(5 * 10**17, 1_000_000_001) == 500_000_000


def test_account_liquidity_hand_worked():
    # 10 WETH as 5e10 cWETH units (rate 2e26), factor 0.8, price 3000e18 -> 24000 USD of collateral;
    # 20000 USDC debt (2e10 raw) at 1e30 -> 20000 USD: liquidity 4000e18, shortfall 0
    balances = np.array([[50_000_000_000, 0]], dtype=object)
    borrows = np.array([[0, 20_000_000_000]], dtype=object)
    entered = np.array([[True, True]])
    factor = np.array([8 * 10**17, 0], dtype=object)
    rate = np.array([2 * 10**26, 2 * 10**14], dtype=object)
    price = np.array([3000 * E18, 10**30], dtype=object)
    liquidity, shortfall = exact.account_liquidity(balances, borrows, entered, factor, rate, price)
    assert (liquidity[0], shortfall[0]) == (4000 * E18, 0)
    # not entered: the collateral does not count, the whole debt is shortfall
    liquidity, shortfall = exact.account_liquidity(balances, borrows, np.array([[False, True]]), factor, rate, price)
    assert (liquidity[0], shortfall[0]) == (0, 20000 * E18)
    total = exact.total_collateral(balances, entered, rate, price)
    assert total[0] == 30000 * E18


def _book() -> LendingBook:
    # columns: WETH (price 3000), USDC (price 1); three accounts
    collateral = np.array([[10.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    debt = np.array([[0.0, 20000.0], [0.0, 2900.0], [0.0, 0.0]])
    params = {"collateral_factor": np.array([0.8, 0.85]), "liquidation_threshold": np.array([0.8, 0.85]),
              "liquidation_bonus": np.array([0.08, 0.08]), "close_factor": np.array([0.5, 0.5]),
              "protocol_fee": np.array([0.028, 0.028]), "collateral_enabled": np.array([True, True]),
              "oracle_price_usd": np.array([3000.0, 1.0])}
    return LendingBook("compound-v2", "0xC", np.array(["a", "b", "c"], dtype=object), np.array(["WETH", "USDC"]),
                       collateral, debt, np.zeros(3, dtype=np.int64), params,
                       {"entered": np.ones((3, 2), dtype=bool), "profile": "compound"})


def test_float_rule_hand_worked():
    rules, book = CompoundV2Rules(), _book()
    prices = np.array([2400.0, 1.0])
    # a: 10·2400·0.8 = 19200 < 20000 -> liquidatable; b: 1920 < 2900 -> liquidatable; c: no debt
    assert rules.health_factor(book, prices)[0] == pytest.approx(0.96)
    assert rules.health_factor(book, prices)[2] == np.inf
    assert list(rules.liquidatable(book, prices)) == [True, True, False]
    step = rules.liquidate(book, prices)
    assert list(step.rows) == [0, 1]
    # a: repay 10000 USDC (close factor), seize 10000·1.08/2400 = 4.5 WETH, fee 2.8% of it
    assert step.repaid[0, 1] == pytest.approx(10000.0)
    assert step.seized[0, 0] == pytest.approx(4.5)
    assert step.fee[0, 0] == pytest.approx(4.5 * 0.028)
    # b: 1450 USDC would seize 0.6525 WETH ≤ 1 -> not capped
    assert step.seized[1, 0] == pytest.approx(1450 * 1.08 / 2400)
    # capped: at 1000 USD per WETH, b's close would seize 1.566 WETH > 1, so all 1 WETH for 1000/1.08 USDC
    capped = rules.liquidate(book, np.array([1000.0, 1.0]), mask=np.array([False, True, False]))
    assert list(capped.rows) == [1]
    assert capped.seized[0, 0] == pytest.approx(1.0)
    assert capped.repaid[0, 1] == pytest.approx(1000 / 1.08)
    after = rules.apply(book, step)
    assert after.debt[0, 1] == pytest.approx(10000.0) and after.collateral[0, 0] == pytest.approx(5.5)
    assert book.debt[0, 1] == 20000.0  # the input book is unchanged
    assert rules.bad_debt_usd(book, np.array([1000.0, 1.0]))[1] == pytest.approx(1900.0)


def test_venus_profile_rules():
    rules, book = CompoundV2Rules(), _book()
    book.extra.update(profile="venus-isolated", min_liquidatable_collateral_usd=5000.0)
    prices = np.array([2400.0, 1.0])
    # b has 2400 USD of collateral, under the 5000 minimum: liquidateBorrow is refused
    assert list(rules.liquidatable(book, prices)) == [True, False, False]
    # Venus IL: the protocol's share is share / incentive of the seized collateral
    step = rules.liquidate(book, prices)
    assert step.fee[0, 0] == pytest.approx(4.5 * 0.028 / 1.08)


def test_venus_seizes_only_entered_collateral():
    rules, base = CompoundV2Rules(), _book()
    # a third column, DAI: account a supplies 100000 DAI without entering that market; Compound may
    # seize it (the largest collateral), Venus isolated pools may not (preSeizeHook: MarketNotCollateral)
    widen = {k: np.append(v, v[1]) for k, v in base.params.items()}
    book = LendingBook(base.protocol, base.market, base.accounts, np.array(["WETH", "USDC", "DAI"]),
                       np.c_[base.collateral, [100000.0, 0.0, 0.0]], np.c_[base.debt, np.zeros(3)], base.category,
                       widen, {"entered": np.array([[True, True, False]] * 3), "profile": "compound"})
    prices = np.array([2400.0, 1.0, 1.0])
    assert rules.liquidatable(book, prices)[0]
    assert rules.liquidate(book, prices).seized[0, 2] == pytest.approx(10000 * 1.08)
    book.extra["profile"] = "venus-isolated"
    step = rules.liquidate(book, prices)
    assert step.seized[0, 2] == 0 and step.seized[0, 0] == pytest.approx(4.5)


# Comptroller.markets(cToken) as each fork's source declares it (the field names of its getter),
# written out here from the sources the profiles cite, independently of the profiles' indices
MARKETS_FIELDS = {
    "compound": ("isListed", "collateralFactorMantissa", "isComped"),
    "venus-isolated": ("isListed", "collateralFactorMantissa", "liquidationThresholdMantissa"),
    "venus-core": ("isListed", "collateralFactorMantissa", "isVenus", "liquidationThresholdMantissa",
                   "liquidationIncentiveMantissa", "poolId", "isBorrowAllowed"),
    "benqi": ("isListed", "collateralFactorMantissa", "isQied"),
    "moonwell": ("isListed", "collateralFactorMantissa"),
}


def test_every_fork_profile_reads_the_fields_its_markets_getter_returns():
    """Each profile's ``markets(address)`` layout has the fork's field count, and its indices pick
    the collateral factor, the liquidation threshold and the per-market incentive by name; the
    LiquidateBorrow data words it reads are repayAmount (2 or 0) and seizeTokens (4 or 1)."""
    from analyzer.multicall import parse_signature
    from protocols.compound_v2.profiles import PROFILES

    assert set(PROFILES) == set(MARKETS_FIELDS)
    for name, profile in PROFILES.items():
        fields = MARKETS_FIELDS[name]
        _, inputs, outputs = parse_signature(profile.markets_signature)
        assert inputs == ("address",) and len(outputs) == len(fields), name
        assert outputs[0] == "bool" and fields[profile.collateral_factor_index] == "collateralFactorMantissa", name
        threshold = profile.liquidation_threshold_index
        assert (threshold is None) == ("liquidationThresholdMantissa" not in fields), name
        assert threshold is None or fields[threshold] == "liquidationThresholdMantissa", name
        incentive = profile.liquidation_incentive_index
        assert (incentive is None) == ("liquidationIncentiveMantissa" not in fields), name
        assert incentive is None or fields[incentive] == "liquidationIncentiveMantissa", name
        for index in (profile.collateral_factor_index, threshold, incentive):
            assert index is None or outputs[index].startswith("uint"), name
        # LiquidateBorrow(liquidator, borrower, repayAmount, cTokenCollateral, seizeTokens): all in
        # the data (Compound and its forks), or liquidator/borrower indexed (Venus isolated pools)
        words = (profile.liquidate_repay_word, profile.liquidate_seize_word)
        assert words == ((0, 1) if name == "venus-isolated" else (2, 4)), name
