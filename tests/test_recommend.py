"""``contagion recommend`` on a hand-built Aave V3 book (tests/test_engine_closed_form.aave_snapshot).

Four WETH borrowers against USDC, one WETH/USDC constant-product pool; a -30% and a -20% WETH
shock. The checks re-simulate independently of the search: the recommended values are written
into the snapshot's market rows by hand and every scenario is run settled then shocked.
"""

from __future__ import annotations

import json

import pytest

from analyzer.engine.settle import settle_then_shock
from analyzer.errors import ContagionError
from analyzer.recommend import recommend
from analyzer.recommend.evaluate import liquidatable_now
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange
from tests.test_engine_closed_form import USDC, aave_snapshot

WETH = {"price": 2000.0, "lt": 0.80, "bonus": 0.05, "fee_bps": 1000}
BORROWERS = {"a1": 150_000.0, "a2": 140_000.0, "a3": 130_000.0}
SCENARIOS = [ShockScenario(name="weth-30", price_shocks={"WETH": -0.30}),
             ShockScenario(name="weth-20", price_shocks={"WETH": -0.20})]
BUDGET = 5_000.0


def book():
    accounts = {name: [("WETH", "collateral", 100.0), ("USDC", "debt", debt)] for name, debt in BORROWERS.items()}
    accounts["a4"] = [("WETH", "collateral", 50.0), ("USDC", "debt", 60_000.0)]
    return aave_snapshot({"USDC": USDC, "WETH": WETH}, accounts, pools={"WETH": (2_000.0, 4_000_000.0, 0.003)})


def by_hand(values: dict[str, float]):
    """The book with WETH's parameters written into its market row directly (not by the tuning)."""
    snapshot = book()
    row = snapshot.markets["asset"] == snapshot.address_of("WETH")
    for parameter, value in values.items():
        snapshot.markets.loc[row, parameter] = value
    return snapshot


def bad_debt(snapshot) -> dict[str, float]:
    return {s.name: settle_then_shock(snapshot, s).total_bad_debt_usd for s in SCENARIOS}


@pytest.fixture(scope="module")
def doc():
    return recommend(book(), SCENARIOS, BUDGET)


def test_the_recommended_parameters_keep_every_scenario_under_the_budget(doc):
    assert max(doc["bad_debt_before_usd"].values()) > BUDGET and doc["feasible"]
    values = {r["parameter"]: r["new_value"] for r in doc["recommendations"]}
    assert values and set(values) <= {"liquidation_threshold", "liquidation_bonus"}
    again = bad_debt(by_hand(values))
    assert all(v <= BUDGET for v in again.values()), again
    assert again == pytest.approx(doc["bad_debt_after_usd"], abs=1e-6)
    json.dumps(doc, allow_nan=False)


def test_no_recommended_step_can_be_undone(doc):
    values = {r["parameter"]: r["new_value"] for r in doc["recommendations"]}
    for rec in doc["recommendations"]:
        undone = {**values, rec["parameter"]: round(rec["new_value"] + rec["step"], 6)}   # one step back
        assert max(bad_debt(by_hand(undone)).values()) > BUDGET, rec["parameter"]


def test_liquidatable_now_is_every_account_whose_health_the_cut_takes_under_one(doc):
    lt = next(r["new_value"] for r in doc["recommendations"] if r["parameter"] == "liquidation_threshold")
    debts = {**BORROWERS, "a4": 60_000.0}
    weth = {name: 50.0 if name == "a4" else 100.0 for name in debts}
    expected = sorted(n for n in debts if weth[n] * 2000.0 * lt / debts[n] < 1.0 <= weth[n] * 2000.0 * 0.80 / debts[n])
    assert expected and [a[2] for a in doc["liquidatable_now"]["accounts"]] == expected
    assert doc["liquidatable_now"]["debt_usd"] == pytest.approx(sum(debts[n] for n in expected))
    threshold = next(r for r in doc["recommendations"] if r["parameter"] == "liquidation_threshold")
    assert threshold["liquidatable_now_accounts"] == len(expected)
    # the settle phase liquidates at least those accounts (their sales may take others with them)
    assert threshold["settle_accounts"] >= len(expected)
    assert threshold["settle_liquidated_usd"] >= 0.5 * doc["liquidatable_now"]["debt_usd"]


GRID = [0.01 * i for i in range(1, 96)]      # falls of 1% to 95%


def first_falls_over(snapshot, lines_usd: dict[str, tuple[float, bool]]) -> dict[str, float | None]:
    """Per line (USD, whether beyond the settled book's own bad debt): the first fall of :data:`GRID`
    whose settled-then-shocked bad debt exceeds it, one engine run per fall."""
    runs: dict[float, float] = {}

    def bad_debt_at(fall: float) -> float:
        if fall not in runs:
            shock = ShockScenario(name="grid", price_shocks={"WETH": -fall} if fall else {})
            runs[fall] = settle_then_shock(snapshot, shock).total_bad_debt_usd
        return runs[fall]

    return {name: next((f for f in GRID if bad_debt_at(f) - (bad_debt_at(0.0) if above else 0.0) > usd), None)
            for name, (usd, above) in lines_usd.items()}


@pytest.mark.parametrize("values", [{}, {"liquidation_threshold": 0.74}, {"liquidation_threshold": 0.71}])
def test_the_distances_to_cascade_are_the_first_falls_a_grid_of_engine_runs_finds_over_each_line(values):
    from analyzer.recommend.distance import TOLERANCE, falls

    snapshot = by_hand(values)
    found = falls(snapshot, SCENARIOS[0], snapshot.address_of("WETH"), BUDGET)
    grids = first_falls_over(snapshot, {"budget": (BUDGET, False), "first_bad_debt": (1.0, True)})
    for name, grid in grids.items():
        reported = found[f"distance_to_{name}"]
        if grid is None:       # 0.71 liquidates every borrower at today's prices: nothing is left to fall
            assert reported is None and values, name
            continue
        # the reported fall crosses the line, within the bisection's tolerance of the first that does
        assert reported is not None and grid - 0.01 <= -reported <= grid + TOLERANCE, (name, reported, grid)


def test_the_recommendations_move_the_fall_that_breaks_the_budget_beyond_the_worst_scenario(doc):
    for rec in doc["recommendations"]:
        assert rec["worst_scenario_fall"] == -0.30
        # today a -30% fall breaks the budget, and a smaller one does first; with the changes it
        # takes a larger fall than any scenario's (None: none within -95%)
        assert rec["distance_to_first_bad_debt_before"] > rec["distance_to_budget_before"] >= -0.30
        after = rec["distance_to_budget_after"]
        assert after is None or after < -0.30
        assert (rec["distance_to_first_bad_debt_after"] is None) == (after is None)


def test_a_change_the_configurator_would_refuse_is_an_error():
    market, weth = book().markets["market"].iloc[0], book().address_of("WETH")
    with pytest.raises(ContagionError, match="InvalidReserveParams"):   # 96% x 105% > 100%
        liquidatable_now(book(), [ParameterChange("aave-v3", market, weth, "liquidation_threshold", 0.96)])


SCENARIOS_TOML = """
[[scenario]]
name = "weth-30"
price = { WETH = "-30%" }

[[scenario]]
name = "weth-20"
price = { WETH = "-20%" }
"""


@pytest.mark.slow
def test_the_command_on_dask_writes_the_same_recommendations_and_the_report_section(doc, tmp_path, capsys):
    from analyzer.cli import main

    book().write(tmp_path / "snapshot")
    (tmp_path / "stress.toml").write_text(SCENARIOS_TOML)
    code = main(["recommend", str(tmp_path / "snapshot"), "--scenarios", str(tmp_path / "stress.toml"),
                 "--budget", str(BUDGET), "--workers", "1", "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "out" / "recommendations.json").read_text())
    assert written["changes"] == doc["changes"] and written["bad_debt_after_usd"] == pytest.approx(doc["bad_debt_after_usd"])
    assert (tmp_path / "out" / "figures" / "recommend_tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    section = (tmp_path / "out" / "recommend.html").read_text()
    assert "WETH" in section and "data:image/png;base64," in section
    assert main(["recommend", str(tmp_path / "snapshot"), "--scenarios", "nope.toml", "--budget", "1",
                 "--out", str(tmp_path / "bad")]) == 2
    assert capsys.readouterr().err.startswith("error: --scenarios")


def test_the_candidates_are_the_parameters_of_the_collateral_left_with_bad_debt():
    """A USDC-collateral account borrowing WETH gains from a WETH fall: USDC's parameters are
    tunable but no candidate; every dollar of bad debt is held against WETH."""
    from analyzer.recommend.evaluate import Evaluator
    from analyzer.recommend.run import collateral_rows
    from analyzer.recommend.search import Search, candidates, parameters_of

    accounts = {name: [("WETH", "collateral", 100.0), ("USDC", "debt", debt)] for name, debt in BORROWERS.items()}
    accounts["saver"] = [("USDC", "collateral", 300_000.0), ("WETH", "debt", 50.0)]
    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH}, accounts, pools={"WETH": (2_000.0, 4_000_000.0, 0.003)})
    weth, usdc = snapshot.address_of("WETH"), snapshot.address_of("USDC")
    parameters = parameters_of(snapshot)
    assert {k[2] for k in parameters} == {weth, usdc}
    today = Evaluator(snapshot, SCENARIOS).one([])
    assert max(today.bad_debt_usd.values()) > BUDGET
    for name, total in today.bad_debt_usd.items():
        assert {row[2] for row in today.bad_debt_collateral[name]} <= {weth}
        assert sum(today.bad_debt_collateral[name].values()) == pytest.approx(total)
    search = Search(parameters, {}, snapshot.symbol_of(), collateral_rows(snapshot))
    assert set(candidates(search, today, list(today.bad_debt_usd))) == {k for k in parameters if k[2] == weth}
