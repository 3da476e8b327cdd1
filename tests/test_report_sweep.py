"""The stress sweep in the contagion report: a real sweep (analyzer.sweep, in-process) on a small
synthetic snapshot, attached to a run folder with one cascade, rendered to report.html and summary.md.

Expected numbers are read back from the sweep's own files (results.parquet, distance.parquet,
summary.json) with pandas and json, or computed here from results.parquet (losses above the
baseline, Monte Carlo quantiles), never taken from the report's data.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer.engine import simulate_to_dir
from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.report import write_report
from analyzer.scenarios import ShockScenario
from analyzer.sweep import spec_from_dict, sweep
from benchmarks.synthetic import synthetic_snapshot
from tests.test_report import parse, usd_text

SWEEP_SPEC = {"name": "report-test", "assets": ["TKN1", "TKN2"], "shocks": "-10%:-40%:15%", "batch_size": 8,
              "scenario": {"sell_through": 0.8},
              "systemic": {"shock": "-25%", "accounts": 3, "each_account": True},
              "montecarlo": {"paths": 4, "seed": 3, "assets": ["TKN1", "TKN2"],
                             "covariance": [[0.04, 0.01], [0.01, 0.02]]},
              # USDC is the synthetic snapshot's debt asset: its fall never leaves bad debt
              "distance": {"assets": ["TKN1", "TKN2", "USDC"], "tolerance": 0.02}}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder (snapshot/, one cascade) and, beside it, the sweep's output folder."""
    root = tmp_path_factory.mktemp("sweep-run")
    run_dir = root / "run"
    synthetic_snapshot(1500, n_assets=5, seed=4).write(run_dir / "snapshot")
    simulate_to_dir(run_dir / "snapshot", ShockScenario(name="tkn1-25", price_shocks={"TKN1": -0.25}), run_dir)
    # the sweep reads the snapshot folder as `contagion sweep` does
    sweep(Snapshot.read(run_dir / "snapshot"), spec_from_dict(SWEEP_SPEC), root / "sweep", progress=False)
    return run_dir


@pytest.fixture(scope="module")
def page(run):
    write_report(run, sweep_dir=run.parent / "sweep")
    html = (run / "report.html").read_text()
    return html, parse(html)


def sweep_files(run: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    out = run.parent / "sweep"
    return (pd.read_parquet(out / "results.parquet"), pd.read_parquet(out / "distance.parquet"),
            json.loads((out / "summary.json").read_text()))


def section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}">')
    return html[start:html.index("</section>", start)]


def test_heat_map_cells_are_the_grid_rows_of_results_parquet(run, page):
    _, cells = page
    results, _, _ = sweep_files(run)
    grid = results[results["kind"] == "grid"]
    assert len(grid) == 2 * 3 and grid["bad_debt_usd"].max() > 0
    for row in grid.itertuples():
        for column in ("liquidated_usd", "bad_debt_usd"):
            value, text = cells.cells[f"sweep.{column}.{row.assets}.{row.shock}"]
            assert float(value) == getattr(row, column)
            assert text == usd_text(getattr(row, column))
    for row in results[results["kind"] == "static"].itertuples():
        value, text = cells.cells[f"sweep.static.{row.assets}.{row.shock}"]
        assert float(value) == row.liquidated_usd and text == usd_text(row.liquidated_usd)


def test_heat_map_colour_deepens_with_the_value(run, page):
    html, _ = page
    results, _, _ = sweep_files(run)
    grid = results[results["kind"] == "grid"]
    top = grid.loc[grid["liquidated_usd"].idxmax()]
    cell = html[:html.index(f'data-key="sweep.liquidated_usd.{top.assets}.{top.shock}"')]
    assert cell[cell.rindex("<td"):].startswith('<td style="background: rgba(234, 88, 12, 0.780)"')
    zero = grid[grid["bad_debt_usd"] == 0].iloc[0]
    cell = html[:html.index(f'data-key="sweep.bad_debt_usd.{zero.assets}.{zero.shock}"')]
    assert cell[cell.rindex("<td"):].startswith('<td style="background: transparent"')


def test_ranking_is_summary_losses_largest_first(run, page):
    html, cells = page
    results, _, summary = sweep_files(run)
    ranked = sorted(summary["systemic"], key=lambda r: (-r["losses_usd"], r["scenario_id"]))
    assert len(ranked) >= 6 and {r["kind"] for r in ranked} == {"asset", "protocol", "account"}
    # the rows top to bottom, as a reader sees them
    shown = re.findall(r'<tr><td>(\d+)</td><td class="text">\w+</td><td class="text" '
                       r'data-key="sweep\.ranking\.\d+\.name">([^<]*)</td>', section(html, "sweep"))
    assert shown == [(str(i), r["name"]) for i, r in enumerate(ranked, start=1)]
    # losses caused, independently: the systemic row's liquidated + bad debt above the baseline's
    base = results[results["kind"] == "baseline"].iloc[0]
    for i, r in enumerate(ranked, start=1):
        row = results[results["scenario_id"] == r["scenario_id"]].iloc[0]
        expected = row["liquidated_usd"] + row["bad_debt_usd"] - base["liquidated_usd"] - base["bad_debt_usd"]
        value, text = cells.cells[f"sweep.ranking.{i}.losses_usd"]
        assert float(value) == pytest.approx(expected, rel=1e-12) and text == usd_text(float(value))
        assert float(cells.cells[f"sweep.ranking.{i}.bad_debt_usd"][0]) == row["bad_debt_usd"]


def test_distance_table_shows_each_assets_smallest_shock(run, page):
    html, cells = page
    _, distance, _ = sweep_files(run)
    assert set(distance["asset"]) == {"TKN1", "TKN2", "USDC"}
    for row in distance.itertuples():
        value, text = cells.cells[f"sweep.distance.{row.asset}.shock"]
        if row.found:
            assert float(value) == row.shock and text == f"{100 * row.shock:.2f}%"
        else:
            assert row.asset == "USDC" and value == "null" and text == "none within bracket"
    # nearest to a cascade first, the asset without one last
    table = section(html, "sweep")[section(html, "sweep").index('id="sweep-distance"'):]
    found = distance[distance["found"]].sort_values("shock", ascending=False)
    positions = [table.index(f'data-key="sweep.distance.{a}.shock"') for a in [*found["asset"], "USDC"]]
    assert positions == sorted(positions)


def test_montecarlo_quantiles_of_the_paths(run, page):
    _, cells = page
    results, _, _ = sweep_files(run)
    paths = results[results["kind"] == "montecarlo"]
    assert len(paths) == 4
    for column in ("liquidated_usd", "bad_debt_usd"):
        values = paths[column].to_numpy(float)
        for name, expected in (("mean", values.mean()), ("p50", np.quantile(values, 0.5)),
                               ("p95", np.quantile(values, 0.95)), ("p99", np.quantile(values, 0.99))):
            assert float(cells.cells[f"sweep.montecarlo.{column}.{name}"][0]) == pytest.approx(expected, rel=1e-12)


def test_section_nav_figure_and_snapshot_match(run, page):
    html, cells = page
    assert '<a href="#sweep">Stress sweep</a>' in html
    body = section(html, "sweep")
    assert 'class="empty"' not in body and "on this run's snapshot" in body and 'class="warning"' not in body
    assert "figures/sweep_curves.png" in body
    head = (run / "figures" / "sweep_curves.png").read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24])[0] > 300
    embedded = json.loads(cells.scripts["report-data"])
    assert embedded["sweep"]["name"] == "report-test"


def test_summary_has_top_five_and_the_distance_table(run, page):
    _, distance, summary = sweep_files(run)
    text = (run / "summary.md").read_text()
    ranked = sorted(summary["systemic"], key=lambda r: -r["losses_usd"])
    for r in ranked[:5]:
        assert f"| {r['rank']} | {r['kind']} | {r['name']} | {usd_text(r['losses_usd'])} |" in text
    assert f"| {ranked[5]['rank']} | {ranked[5]['kind']} | {ranked[5]['name']} |" not in text
    for row in distance.itertuples():
        shown = f"{100 * row.shock:.2f}%" if row.found else "none within bracket"
        assert f"| {row.asset} | {shown} |" in text


def test_a_sweep_folder_inside_the_run_is_found_and_none_is_said(run, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "cascade.json", alone / "cascade.json")
    html = write_report(alone).read_text()
    assert "No stress sweep in this run" in section(html, "sweep")
    assert "Stress sweep" not in (alone / "summary.md").read_text()
    shutil.copytree(run.parent / "sweep", alone / "sweep")
    cells = parse(write_report(alone).read_text()).cells
    results, _, _ = sweep_files(run)
    row = results[results["kind"] == "grid"].iloc[-1]
    assert float(cells[f"sweep.liquidated_usd.{row['assets']}.{row['shock']}"][0]) == row["liquidated_usd"]


def test_a_sweep_of_another_snapshot_is_flagged(run, tmp_path):
    shutil.copytree(run.parent / "sweep", tmp_path / "sweep")
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    summary["snapshot_key"] = "0" * 64
    (tmp_path / "sweep" / "summary.json").write_text(json.dumps(summary))
    shutil.copytree(run / "snapshot", tmp_path / "snapshot")
    shutil.copy(run / "cascade.json", tmp_path / "cascade.json")
    html = write_report(tmp_path).read_text()
    assert 'class="warning">This sweep ran on another snapshot' in section(html, "sweep")


def _set(path: list, value):
    def mutate(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


@pytest.mark.parametrize(("mutate", "message"), [
    (_set(["schema"], "defi-contagion/cascade"), r"summary.json: schema 'defi-contagion/cascade' version 1"),
    (_set(["schema_version"], 2), r"summary.json: schema .* version 2 \(this report reads"),
    (_set(["heatmap", "liquidated_usd", 0, 1], "lots"),
     r"summary.json: heatmap.liquidated_usd\[0\]\[1\] must be a number, got 'lots'"),
    (lambda d: d["heatmap"]["bad_debt_usd"].pop(), r"summary.json: heatmap.bad_debt_usd must have 2 rows"),
    (_set(["systemic", 0, "rank"], "1"), r"summary.json: systemic\[0\].rank must be an integer, got '1'"),
    (_set(["systemic", 1, "losses_usd"], True), r"summary.json: systemic\[1\].losses_usd must be a number"),
    (_set(["distance", 0, "found"], "yes"), r"summary.json: distance\[0\].found must be true or false"),
    (_set(["distance", 2, "bracket"], [0.0]), r"summary.json: distance\[2\].bracket must have 2 entries"),
    (lambda d: d.pop("systemic"), r"summary.json: missing field systemic"),
    (_set(["montecarlo", "paths"], "4"), r"summary.json: montecarlo.paths must be an integer"),
    (_set(["curves"], {}), r"summary.json: curves must be a list"),
])
def test_a_malformed_summary_names_the_file_and_field(run, tmp_path, mutate, message):
    summary = json.loads((run.parent / "sweep" / "summary.json").read_text())
    mutate(summary)
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "summary.json").write_text(json.dumps(summary))
    shutil.copy(run / "cascade.json", tmp_path / "cascade.json")
    with pytest.raises(ContagionError, match=message) as caught:
        write_report(tmp_path)
    assert "\n" not in str(caught.value) and str(tmp_path / "sweep" / "summary.json") in str(caught.value)
    assert not (tmp_path / "report.html").exists()


def test_cli_sweep_folder_missing_is_a_one_line_error(run, tmp_path):
    missing = tmp_path / "no-such-sweep"
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", "report", str(run), "--sweep", str(missing)],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --sweep ") and str(missing) in lines[0]
    with pytest.raises(ContagionError, match="no summary.json"):
        write_report(run, sweep_dir=tmp_path)  # a folder, but not a sweep's


def test_the_sweep_section_renders_in_chromium(run, page, tmp_path):
    from tests.test_report_browser import open_in_chromium

    with open_in_chromium(run / "report.html", tmp_path / "profile") as (tab, problems):
        tab.click('nav a[href="#sweep"]')
        assert tab.locator("#sweep-liquidated_usd").is_visible() and tab.locator("#sweep-ranking").is_visible()
        assert tab.evaluate("document.querySelector('#sweep img').naturalWidth") > 300
        tab.click("#sweep details > summary")
        _, distance, _ = sweep_files(run)
        first = distance.iloc[0]  # distance.parquet: nearest to a cascade first, as the page shows it
        assert tab.locator("#sweep-distance tbody tr").first.inner_text().split("\t")[:2] == \
            [first["asset"], f"{100 * first['shock']:.2f}%"]
    assert problems == []
