"""The dynamic-margin schedule (analyzer.recommend.margin) on a hand-built Aave V3 book against a
hand computation of where the loop ignites.

One WETH borrower on Aave V3 (3.0 rules: close factor 50% above health 0.95, 100% under it; bonus
5%), a zero-fee WETH/USDC constant-product pool (the USD that moves its price from P1 to P2 is
√k (√P1 − √P2)), and a dealer known only by its short gamma g (it sells g·P²/100 USD per 1% at
the level P). The loop ignites at the first fall x where (liquidation sales of the band + dealer
sales) / depth ≥ 1. A threshold cut that takes the borrower's health under 1 today liquidates half
its debt now (the settle phase), and its later liquidations are smaller and further down.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analyzer.model import Snapshot
from analyzer.recommend.margin import schedule
from analyzer.scenarios import ShockScenario
from tests.test_engine_closed_form import USDC, aave_snapshot

P0, X0, Y0 = 2000.0, 1_000.0, 2_000_000.0        # price, pool reserves (WETH, USDC)
LT, BONUS, STEP = 0.80, 0.05, 0.005
COLLATERAL, DEBT = 10.0, 14_000.0                 # WETH, USDC
GAMMA = -0.15                                     # dealer net gamma, WETH per USD
TARGET = 0.20


def book(gamma: float = GAMMA) -> Snapshot:
    weth = {"price": P0, "lt": LT, "bonus": BONUS, "fee_bps": 1000}
    s = aave_snapshot({"USDC": USDC, "WETH": weth}, {"b": [("WETH", "collateral", COLLATERAL), ("USDC", "debt", DEBT)]},
                      pools={"WETH": (X0, Y0, 0.0)})
    hedgers = pd.DataFrame({"protocol": "dealers", "market": "m", "asset": [s.address_of("WETH")], "net_delta": 0.0,
                            "net_gamma": gamma, "net_vega": 0.0, "hedge_position": 0.0})
    return Snapshot(meta=s.meta, assets=s.assets, markets=s.markets, accounts=s.accounts, positions=s.positions,
                    venues=s.venues, hedgers=hedgers)


def first_step_seized_usd(collateral: float, debt: float, lt: float, price: float) -> float:
    """USD the first keeper step seizes at ``price`` (0 when healthy): LiquidationLogic 3.0."""
    if debt <= 0 or collateral * price * lt >= debt:
        return 0.0
    health = collateral * price * lt / debt
    repaid = (0.5 if health > 0.95 else 1.0) * debt
    return min(repaid * (1 + BONUS), collateral * price)


def settle_by_hand(lt: float) -> tuple[float, float]:
    """The borrower after the cut to ``lt`` settles at today's price: (collateral, debt)."""
    health = COLLATERAL * P0 * lt / DEBT
    if health >= 1.0:
        return COLLATERAL, DEBT
    repaid = (0.5 if health > 0.95 else 1.0) * DEBT
    collateral, debt = COLLATERAL - repaid * (1 + BONUS) / P0, DEBT - repaid
    assert debt == 0 or collateral * P0 * lt / debt >= 1.0     # one keeper step settles it
    return collateral, debt


def ignition_by_hand(lt: float, k: float, max_fall: float = 0.5) -> float | None:
    collateral, debt = settle_by_hand(lt)
    root_k = math.sqrt(X0 * Y0)
    n = int(round(max_fall / 0.01))
    for j in range(n):
        x, x1 = j / 100, (j + 1) / 100
        level, lower = P0 * (1 - x), P0 * (1 - x1)
        band = max(first_step_seized_usd(collateral, debt, lt, lower) - first_step_seized_usd(collateral, debt, lt, level), 0.0)
        hedging = -k * GAMMA * level * level / 100
        depth = root_k * (math.sqrt(level) - math.sqrt(lower))
        if (band + hedging) / depth >= 1.0:
            return x
    return None


def steps_by_hand(k: float) -> int | None:
    for n in range(int(round(0.25 / STEP)) + 1):         # Aave tuning: at most 25 points below today
        ignition = ignition_by_hand(round(LT - n * STEP, 6), k)
        if ignition is None or ignition > TARGET:
            return n
    return None


@pytest.fixture(scope="module")
def table():
    return schedule(book(), "WETH", TARGET, ShockScenario(name="calm"), scales=(0.0, 0.5, 1.0, 1.5, 2.0))


def test_the_ignition_fall_today_is_the_hand_computed_one(table):
    for row in table["rows"]:
        assert row["ignition_fall_today"] == pytest.approx(ignition_by_hand(LT, row["gamma_scale"])) \
            if ignition_by_hand(LT, row["gamma_scale"]) is not None else row["ignition_fall_today"] is None, row
    today = next(r for r in table["rows"] if r["gamma_scale"] == 1.0)
    assert today["ignition_fall_today"] is not None and today["ignition_fall_today"] < TARGET


def test_each_row_schedules_the_smallest_cut_that_moves_ignition_beyond_the_target(table):
    expected = {k: steps_by_hand(k) for k in (0.0, 0.5, 1.0, 1.5, 2.0)}
    # the table spans the three cases: no cut needed, a cut, out of reach of any cut
    assert 0 in expected.values() and None in expected.values() and any(v for v in expected.values())
    for row in table["rows"]:
        n = expected[row["gamma_scale"]]
        assert row["threshold_steps"] == n, row
        if n is None:
            continue
        (threshold,) = row["thresholds"]
        assert threshold["today"] == LT and threshold["scheduled"] == pytest.approx(LT - n * STEP)
        scheduled = ignition_by_hand(LT - n * STEP, row["gamma_scale"])
        assert (row["ignition_fall_scheduled"] is None) == (scheduled is None)
        if scheduled is not None:
            assert row["ignition_fall_scheduled"] == pytest.approx(scheduled)


def test_the_concentrations_are_peak_flow_over_depth_within_the_target(table):
    root_k = math.sqrt(X0 * Y0)
    for row in table["rows"]:
        k, gamma, leverage = row["gamma_scale"], 0.0, 0.0
        for j in range(int(round(TARGET / 0.01)) + 1):
            level, lower = P0 * (1 - j / 100), P0 * (1 - (j + 1) / 100)
            depth = root_k * (math.sqrt(level) - math.sqrt(lower))
            gamma = max(gamma, -k * GAMMA * level * level / 100 / depth)
            band = first_step_seized_usd(COLLATERAL, DEBT, LT, lower) - first_step_seized_usd(COLLATERAL, DEBT, LT, level)
            leverage = max(leverage, max(band, 0.0) / depth)
        assert row["concentration"]["gamma"] == pytest.approx(gamma, rel=1e-6)
        assert row["concentration"]["leverage"] == pytest.approx(leverage, rel=1e-6)


def test_the_what_if_moves_ignition_beyond_the_target_and_the_engine_agrees(table):
    what = table["what_if"]
    assert what is not None and what["changes"]
    assert what["ignition_fall_today"] < TARGET
    assert what["ignition_fall_scheduled"] is None or what["ignition_fall_scheduled"] > TARGET
    # the same shock on the engine: the scheduled threshold leaves a smaller final fall
    assert what["final_fall_scheduled"] < what["final_fall_today"]


def test_the_command_writes_the_schedule_into_recommendations_json_and_the_section(tmp_path, capsys):
    import json

    from analyzer.cli import main

    book().write(tmp_path / "snapshot")
    (tmp_path / "stress.toml").write_text('[[scenario]]\nname = "weth-20"\nprice = { WETH = "-20%" }\n')
    code = main(["recommend", str(tmp_path / "snapshot"), "--scenarios", str(tmp_path / "stress.toml"),
                 "--budget", "1e9", "--margin", "WETH", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    (written,) = json.loads((tmp_path / "out" / "recommendations.json").read_text())["dynamic_margin"]
    assert written["target_fall"] == TARGET      # the scenario's fall of WETH
    today = next(r for r in written["rows"] if r["gamma_scale"] == 1.0)
    assert today["threshold_steps"] == steps_by_hand(1.0)
    section = (tmp_path / "out" / "recommend.html").read_text()
    assert "Dynamic margin: WETH" in section and f"{LT - steps_by_hand(1.0) * STEP:.2%}" in section
    capsys.readouterr()
    assert main(["recommend", str(tmp_path / "snapshot"), "--scenarios", str(tmp_path / "stress.toml"),
                 "--budget", "1", "--margin-target", "0.3", "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.startswith("error: --margin-target needs --margin")
