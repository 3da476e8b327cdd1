"""Sweep specs, Monte Carlo shocks, systemic importance, distance to cascade and the results table,
checked against direct engine runs and independent computations (in-process, no Dask)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analyzer.engine import simulate
from analyzer.engine.prepare import prepare
from analyzer.errors import ContagionError
from analyzer.scenarios import ForcedSale, ShockScenario
from analyzer.sweep import parse_shock_range, spec_from_cli, spec_from_dict, sweep, sweep_to_dir
from analyzer.sweep.grid import expand
from analyzer.sweep.montecarlo import draw_shocks, estimate_covariance
from analyzer.sweep.systemic import largest_borrowers
from benchmarks.synthetic import synthetic_snapshot


@pytest.fixture(scope="module")
def snapshot():
    return synthetic_snapshot(1500, n_assets=5, seed=4)


@pytest.fixture(scope="module")
def prepared(snapshot):
    return prepare(snapshot)


@pytest.fixture(scope="module")
def swept(snapshot, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = spec_from_dict({"assets": ["TKN1", "TKN2"], "shocks": "-10%:-40%:15%", "batch_size": 5,
                           "scenario": {"sell_through": 0.8},
                           "systemic": {"shock": "-25%", "accounts": 2, "each_account": True},
                           "distance": {"assets": ["TKN1", "TKN2"], "tolerance": 0.02}})
    summary = json.loads(sweep(snapshot, spec, out, progress=False).read_text())
    return pd.read_parquet(out / "results.parquet"), summary


def test_shock_range_is_inclusive_and_exact():
    assert parse_shock_range("-10%:-50%:5%", "t") == [round(-0.10 - 0.05 * i, 12) for i in range(9)]
    assert parse_shock_range("-0.1:-0.3:-0.1", "t") == [-0.1, -0.2, -0.3]
    assert parse_shock_range(["-20%", -0.5], "t") == [-0.2, -0.5]
    with pytest.raises(ContagionError, match="START:STOP:STEP"):
        parse_shock_range("-10%:-50%", "t")
    with pytest.raises(ContagionError, match="out of range"):
        parse_shock_range("-50%:-100%:50%", "t")


def test_cli_shorthands_overlay_the_spec():
    spec = spec_from_cli(assets="WETH, WBTC", shocks="-10%:-30%:10%", paths=50, seed=7)
    assert spec.assets == ["WETH", "WBTC"] and spec.shocks == [-0.1, -0.2, -0.3]
    assert spec.montecarlo == {"paths": 50, "seed": 7}


def test_spec_errors_name_the_field(snapshot):
    with pytest.raises(ContagionError, match="unknown key 'shock'"):
        spec_from_dict({"shock": "-10%"})
    with pytest.raises(ContagionError, match=r"\[scenario\].*sell_through"):
        spec_from_dict({"scenario": {"sell_through": 2.0}})
    with pytest.raises(ContagionError, match=r"\[scenario\] sets price"):
        spec_from_dict({"scenario": {"price": {"TKN1": "-10%"}}})
    with pytest.raises(ContagionError, match='asset "WETHH" is not in the snapshot'):
        expand(spec_from_dict({"assets": ["WETHH"]}), snapshot)


def test_results_match_direct_engine_runs(swept, prepared):
    table, _ = swept
    for _, row in table[table["kind"].isin(["grid", "static", "systemic_protocol"])].iterrows():
        sales = [ForcedSale(a, p) for a, p in json.loads(row["forced_sales"])]
        result = simulate(prepared, ShockScenario(price_shocks=json.loads(row["price_shocks"]), forced_sales=sales,
                                                  price_impact=bool(row["price_impact"]), sell_through=0.8))
        assert row["liquidated_usd"] == pytest.approx(sum(result.liquidated_usd.values()), rel=1e-12, abs=1e-9)
        assert row["bad_debt_usd:aave-v3"] == pytest.approx(result.bad_debt_usd["aave-v3"], rel=1e-12, abs=1e-9)
        assert row["rounds"] == len(result.rounds) and row["stop_reason"] == result.stop_reason


def test_static_rows_do_not_move_prices_beyond_the_shock(swept, snapshot):
    table, _ = swept
    static = table[table["kind"] == "static"]
    assert len(static) == 2 * 3 and not static["price_impact"].any()
    np.testing.assert_allclose(static["worst_move"], static["shock"], rtol=1e-12)
    cascaded = table[table["kind"] == "grid"].set_index(["assets", "shock"])["worst_move"]
    assert (cascaded <= static.set_index(["assets", "shock"])["worst_move"] + 1e-12).all()


def test_heatmap_is_the_grid_rows(swept):
    table, summary = swept
    heat = summary["heatmap"]
    assert heat["assets"] == ["TKN1", "TKN2"] and heat["shocks"] == [-0.1, -0.25, -0.4]
    for i, asset in enumerate(heat["assets"]):
        for j, shock in enumerate(heat["shocks"]):
            row = table[(table["kind"] == "grid") & (table["assets"] == asset) & (table["shock"] == shock)]
            assert heat["liquidated_usd"][i][j] == row["liquidated_usd"].item()
            assert heat["bad_debt_usd"][i][j] == row["bad_debt_usd"].item()
            static = table[(table["kind"] == "static") & (table["assets"] == asset) & (table["shock"] == shock)]
            assert heat["static_liquidated_usd"][i][j] == static["liquidated_usd"].item()


def test_largest_borrowers_by_debt_usd(snapshot):
    price = dict(zip(snapshot.assets["address"], snapshot.assets["price_usd"], strict=True))
    debt: dict[str, float] = {}
    for account, asset, side, amount in snapshot.positions[["account", "asset", "side", "amount"]].itertuples(index=False):
        if side == "debt":
            debt[account] = debt.get(account, 0.0) + amount * price[asset]
    expected = sorted(debt.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    top = largest_borrowers(snapshot, 3)
    assert top["account"].tolist() == [a for a, _ in expected]
    np.testing.assert_allclose(top["debt_usd"], [d for _, d in expected], rtol=1e-12)


def test_systemic_ranking_orders_losses_above_baseline(swept):
    table, summary = swept
    ranking = summary["systemic"]
    assert [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    assert {r["kind"] for r in ranking} == {"asset", "protocol", "account"}
    losses = [r["losses_usd"] for r in ranking]
    assert losses == sorted(losses, reverse=True)
    base = table[table["kind"] == "baseline"].iloc[0]
    for r in ranking:
        row = table[table["scenario_id"] == r["scenario_id"]].iloc[0]
        assert r["losses_usd"] == pytest.approx(row["liquidated_usd"] + row["bad_debt_usd"]
                                                - base["liquidated_usd"] - base["bad_debt_usd"])
    protocol = next(r for r in ranking if r["kind"] == "protocol")
    assert protocol["name"] == "aave-v3"
    # a systemic asset shock is the same scenario as the grid point of the same size
    shock = table[(table["kind"] == "systemic_asset") & (table["assets"] == "TKN1")].iloc[0]
    point = table[(table["kind"] == "grid") & (table["assets"] == "TKN1") & (table["shock"] == -0.25)].iloc[0]
    assert shock["liquidated_usd"] == point["liquidated_usd"] and shock["bad_debt_usd"] == point["bad_debt_usd"]


def test_distance_to_cascade_brackets_the_first_bad_debt(swept, prepared):
    _, summary = swept
    assert [d["asset"] for d in summary["distance"]] != []
    for entry in summary["distance"]:
        assert entry["found"], entry
        safe, failing = entry["bracket"]
        assert abs(failing - safe) <= 0.02 and failing == entry["shock"]
        at = {move: sum(simulate(prepared, ShockScenario(price_shocks={entry["asset"]: move},
                                                          sell_through=0.8)).bad_debt_usd.values())
              for move in (safe, failing)}
        assert at[failing] > 1.0 >= at[safe]


def test_montecarlo_is_seeded_and_follows_the_covariance():
    cov = [[0.04, 0.012], [0.012, 0.09]]
    config = {"paths": 20_000, "seed": 5, "assets": ["A", "B"], "covariance": cov}
    draws = draw_shocks(config)
    assert draws == draw_shocks(config) and draws != draw_shocks(dict(config, seed=6))
    log_returns = np.log1p(np.array([[d["A"], d["B"]] for d in draws]))
    np.testing.assert_allclose(np.cov(log_returns, rowvar=False), cov, atol=0.004)
    with pytest.raises(ContagionError, match="positive semi-definite"):
        draw_shocks({"paths": 2, "assets": ["A", "B"], "covariance": [[1.0, 2.0], [2.0, 1.0]]})


def test_covariance_estimated_from_a_price_history(tmp_path):
    csv = tmp_path / "prices.csv"
    csv.write_text("date,WETH,WBTC\n2024-01-01,100,200\n2024-01-02,110,190\n2024-01-03,99,209\n")
    symbols, cov = estimate_covariance(csv, horizon=2)
    r1 = [math.log(110 / 100), math.log(99 / 110)]
    r2 = [math.log(190 / 200), math.log(209 / 190)]
    m1, m2 = sum(r1) / 2, sum(r2) / 2
    expected = [[sum((a - m1) ** 2 for a in r1), sum((a - m1) * (b - m2) for a, b in zip(r1, r2, strict=True))],
                [0.0, sum((b - m2) ** 2 for b in r2)]]
    expected[1][0] = expected[0][1]
    assert symbols == ["WETH", "WBTC"]
    np.testing.assert_allclose(cov, 2 * np.array(expected), rtol=1e-12)   # ddof = 1 with two returns
    with pytest.raises(ContagionError, match='no price column "CRV"'):
        estimate_covariance(csv, ["CRV"])


def test_sweep_to_dir_reads_a_snapshot_folder_and_a_toml_spec(snapshot, tmp_path):
    snapshot.write(tmp_path / "snap")
    (tmp_path / "prices.csv").write_text("date,TKN1,TKN2\n1,10,20\n2,9,21\n3,9.5,19\n4,8,18\n")
    (tmp_path / "spec.toml").write_text('assets = ["TKN1"]\nshocks = ["-30%"]\nstatic = false\n'
                                        '[montecarlo]\npaths = 3\nseed = 1\nhistory = "prices.csv"\n')
    path = sweep_to_dir(tmp_path / "snap", tmp_path / "spec.toml", tmp_path / "out")
    summary = json.loads(path.read_text())
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert table["kind"].tolist() == ["baseline", "grid", "montecarlo", "montecarlo", "montecarlo"]
    assert summary["montecarlo"]["paths"] == 3 and summary["name"] == "spec"
    with pytest.raises(ContagionError, match="--workers 0"):
        sweep_to_dir(tmp_path / "snap", tmp_path / "spec.toml", tmp_path / "out", workers=0)


def test_expansion_gives_stable_ids_and_every_kind(snapshot):
    spec = spec_from_dict({"assets": ["TKN1", "TKN2"], "shocks": [-0.1, -0.2], "joint": True,
                           "joint_move": [{"name": "pair", "price": {"TKN1": "-30%", "TKN2": "-20%"}}],
                           "montecarlo": {"paths": 3, "seed": 2, "assets": ["TKN3"], "covariance": [[0.01]]},
                           "systemic": {"accounts": 1}})
    rows = expand(spec, snapshot)
    assert [r["scenario_id"] for r in rows] == list(range(len(rows)))
    assert [r["kind"] for r in rows] == ["baseline"] + ["grid"] * 4 + ["static"] * 4 + ["joint"] * 3 \
        + ["montecarlo"] * 3 + ["systemic_asset"] * 2 + ["systemic_protocol"]
    assert rows[9]["price_shocks"] == {"TKN1": -0.1, "TKN2": -0.1}
    assert rows[11]["label"] == "pair" and rows[11]["price_shocks"] == {"TKN1": -0.3, "TKN2": -0.2}
    assert [r["price_shocks"] for r in rows[12:15]] == draw_shocks(spec.montecarlo)
    assert rows[-1]["forced_sales"] == [[largest_borrowers(snapshot, 1)["account"].item(), "aave-v3"]]
    assert expand(spec, snapshot) == rows
