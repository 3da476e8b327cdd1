"""Settle, then shock (analyzer/engine/settle.py) against a cascade computed by hand in this file.

One Aave V3 account (100 WETH against 155,000 USDC) and one constant-product WETH/USDC pool (no
fee). A governance cut of WETH's liquidation threshold from 80% to 75% takes its health from 1.03
to 0.97: the settle phase liquidates half its debt at today's $2,000 and sells the collateral into
the pool; a -20% shock then finds a smaller position, liquidated without bad debt. Shocking the
tuned book as it stood instead seizes all 100 WETH at $1,600 and leaves bad debt.
"""

from __future__ import annotations

import pytest

from analyzer.engine import simulate
from analyzer.engine.settle import settle_then_shock
from analyzer.scenarios import ShockScenario
from tests.test_engine_closed_form import RULES, USDC, aave_snapshot

POOL_WETH, POOL_USDC = 5_000.0, 10_000_000.0
BONUS, FEE_SHARE = 1.05, 0.10           # liquidationBonus 10500 bps, liquidationProtocolFee 10% of the bonus part


def tuned_snapshot(lt: float):
    weth = {"price": 2000.0, "lt": lt, "bonus": BONUS - 1, "fee_bps": 1000}
    return aave_snapshot({"USDC": USDC, "WETH": weth},
                         {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 155_000.0)]},
                         pools={"WETH": (POOL_WETH, POOL_USDC, 0.0)})


def cascade_by_hand(collateral: float, debt: float, pool_weth: float, k: float, lt: float):
    """Rounds of (price, liquidate while the account is liquidatable, sell into x·y = k) by hand.
    Returns (collateral, debt, pool_weth, [(repaid USDC, seized WETH)])."""
    steps = []
    for _ in range(20):
        price = k / pool_weth ** 2
        sold = 0.0
        while collateral > 0 and debt > 0 and collateral * price * lt / debt < 1.0:
            health = collateral * price * lt / debt
            repaid = (0.5 if health > 0.95 else 1.0) * debt      # CLOSE_FACTOR_HF_THRESHOLD
            seized = repaid / price * BONUS
            if seized > collateral:                              # all collateral, debt reduced to match
                seized, repaid = collateral, collateral * price / BONUS
            fee = (seized - seized / BONUS) * FEE_SHARE
            collateral, debt, sold = collateral - seized, debt - repaid, sold + seized - fee
            steps.append((repaid, seized))
        if sold == 0.0:
            break
        pool_weth += sold
    return collateral, debt, pool_weth, steps


def test_a_threshold_cut_settles_at_todays_prices_before_the_shock_as_computed_by_hand():
    k = POOL_WETH * POOL_USDC
    # settle: today's price, the tuned threshold
    c1, d1, x1, settle_steps = cascade_by_hand(100.0, 155_000.0, POOL_WETH, k, 0.75)
    assert len(settle_steps) == 1 and settle_steps[0][0] == pytest.approx(77_500.0)
    settled_price = k / x1 ** 2
    # stress: arbitrage takes the pool to 80% of the settled price (k unchanged, no fee)
    x2 = (k / (0.8 * settled_price)) ** 0.5
    c2, d2, x3, stress_steps = cascade_by_hand(c1, d1, x2, k, 0.75)
    bad_debt = max(d2 - c2 * k / x3 ** 2, 0.0)

    result = settle_then_shock(tuned_snapshot(0.75), ShockScenario(price_shocks={"WETH": -0.20}), rules=RULES)
    weth = list(result.stress.symbols).index("WETH")
    assert result.settlement.accounts_liquidated == {"aave-v3": 1}
    assert result.settlement.liquidated_usd["aave-v3"] == pytest.approx(77_500.0, rel=1e-9)
    assert result.settlement.price_after[weth] == pytest.approx(settled_price, rel=1e-9)
    assert result.stress.price_after_shock[weth] == pytest.approx(0.8 * settled_price, rel=1e-9)
    repaid = [r.repaid_tokens[0].sum() for r in result.stress.rounds if r.repaid_tokens[0].sum() > 0]
    assert repaid == pytest.approx([s[0] for s in stress_steps], rel=1e-9)
    assert result.stress.rounds[-1].price_after[weth] == pytest.approx(k / x3 ** 2, rel=1e-9)
    assert bad_debt == 0.0 and result.total_bad_debt_usd == pytest.approx(0.0, abs=1e-6)

    # the same shock on the tuned book as it stood: everything seized at $1,600, bad debt left
    c, d, x, steps = cascade_by_hand(100.0, 155_000.0, (k / 1600.0) ** 0.5, k, 0.75)
    assert c == 0.0 and d == pytest.approx(155_000.0 - 160_000.0 / BONUS)
    plain = simulate(tuned_snapshot(0.75), ShockScenario(price_shocks={"WETH": -0.20}), rules=RULES)
    assert sum(plain.bad_debt_usd.values()) == pytest.approx(d, rel=1e-9)


def test_with_nothing_liquidatable_today_settling_changes_nothing():
    scenario = ShockScenario(price_shocks={"WETH": -0.20})
    settled = settle_then_shock(tuned_snapshot(0.80), scenario, rules=RULES)
    plain = simulate(tuned_snapshot(0.80), scenario, rules=RULES)
    assert settled.settlement.total_accounts == 0 and settled.settlement.total_liquidated_usd == 0.0
    assert settled.total_bad_debt_usd == pytest.approx(sum(plain.bad_debt_usd.values()), rel=1e-12)
    assert sum(plain.bad_debt_usd.values()) > 0      # the untuned book does lose money in this shock
