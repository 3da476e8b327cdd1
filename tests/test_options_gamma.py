"""Options open interest from the venues, and the dealer gamma map, against an independent
Black-Scholes computation written here with ``math`` (no code of analyzer.options)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.options.gammamap import DEFAULT_GRID, gamma_map
from analyzer.options.imports import import_options
from tests.optionsbook import write_weth_book

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "options" / "samples"
DERIBIT_ETH = [SAMPLES / "deribit-ETH-get_instruments.json", SAMPLES / "deribit-ETH-get_book_summary_by_currency.json"]


def _phi(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _independent_rows() -> list[dict]:
    """Deribit's ETH sample, read straight from the JSON: dealer long calls, short puts."""
    spec = {r["instrument_name"]: r for r in json.loads(DERIBIT_ETH[0].read_text())["result"]}
    rows = []
    for r in json.loads(DERIBIT_ETH[1].read_text())["result"]:
        s = spec[r["instrument_name"]]
        years = (s["expiration_timestamp"] - r["creation_timestamp"]) / 1000 / (365 * 86400)
        sign = 1.0 if s["option_type"] == "call" else -1.0
        rows.append({"strike": s["strike"], "expiry": s["expiration_timestamp"] // 1000, "years": years,
                     "forward": r["underlying_price"], "iv": r["mark_iv"] / 100, "q": sign * r["open_interest"]})
    return rows


def _exposures(row: dict, move: float = 0.0) -> tuple[float, float, float]:
    f, k, t, v, q = row["forward"] * (1 + move), row["strike"], row["years"], row["iv"], row["q"]
    d1 = (math.log(f / k) + v * v * t / 2) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    gamma = _phi(d1) / (f * v * math.sqrt(t))
    vanna = -_phi(d1) * d2 / v
    charm = _phi(d1) * d2 / (2 * t)
    return q * gamma * f * f / 100, q * vanna * f / 100, q * charm * f / 365


@pytest.fixture(scope="module")
def eth_snapshot(tmp_path_factory) -> Snapshot:
    return import_options(DERIBIT_ETH, tmp_path_factory.mktemp("opt") / "snap")


def test_the_sample_files_are_large_and_marked_as_samples():
    for path in SAMPLES.glob("*.json"):
        assert "SAMPLE" in json.loads(path.read_text())["_sample"]
    assert len(json.loads(DERIBIT_ETH[0].read_text())["result"]) >= 500
    assert len({r["expiration_timestamp"] for r in json.loads(DERIBIT_ETH[0].read_text())["result"]}) >= 5


def test_gex_vanna_charm_by_strike_and_expiry_equal_an_independent_black_scholes(eth_snapshot):
    rows = _independent_rows()
    by_strike: dict[float, np.ndarray] = {}
    by_expiry: dict[int, np.ndarray] = {}
    for row in rows:
        e = np.array(_exposures(row))
        by_strike[row["strike"]] = by_strike.get(row["strike"], 0) + e
        by_expiry[row["expiry"]] = by_expiry.get(row["expiry"], 0) + e
    result = gamma_map(eth_snapshot)
    assert len(result.by_strike) == len(by_strike) and len(result.by_expiry) == len(by_expiry)
    cols = ["gex_usd_per_pct", "vanna_usd_per_vol_pt", "charm_usd_per_day"]
    for row in result.by_strike.itertuples():
        assert np.array([getattr(row, c) for c in cols]) == pytest.approx(by_strike[row.strike], rel=1e-9, abs=1e-6)
    for row in result.by_expiry.itertuples():
        assert np.array([getattr(row, c) for c in cols]) == pytest.approx(by_expiry[row.expiry], rel=1e-9, abs=1e-6)
    total = sum(by_strike.values())
    assert result.summary.iloc[0][cols].to_numpy(float) == pytest.approx(total, rel=1e-9)


def test_the_flip_level_lies_within_one_grid_step_of_an_independent_root(eth_snapshot):
    rows = _independent_rows()

    def total_gex(move: float) -> float:
        return sum(_exposures(r, move)[0] for r in rows)

    # independent: scan in 0.25% steps for sign changes, bisect the one nearest today's spot
    moves = np.arange(-0.5, 0.5001, 0.0025)
    values = [total_gex(m) for m in moves]
    brackets = [(moves[i], moves[i + 1]) for i in range(len(moves) - 1) if values[i] * values[i + 1] < 0]
    assert brackets, "the sample book should change gamma sign within ±50%"
    lo, hi = min(brackets, key=lambda b: abs(b[0] + b[1]))
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total_gex(lo) * total_gex(mid) > 0 else (lo, mid)
    summary = gamma_map(eth_snapshot).summary.iloc[0]
    spot = summary["spot_usd"]
    step = (DEFAULT_GRID[1] - DEFAULT_GRID[0]) * spot
    forward_mid = np.median([r["forward"] for r in rows if r["years"] == min(x["years"] for x in rows)])
    assert spot == pytest.approx(forward_mid)
    assert abs(summary["flip_usd"] - spot * (1 + lo)) <= step


def test_a_positioning_file_overrides_the_convention_and_is_named(tmp_path):
    summary = json.loads(DERIBIT_ETH[1].read_text())["result"]
    chosen = summary[0]["instrument_name"]
    csv = tmp_path / "flow.csv"
    csv.write_text(f"venue,instrument,customer_net\nderibit,{chosen},12.5\n")
    snapshot = import_options(DERIBIT_ETH, tmp_path / "snap", positioning=csv)
    inst = snapshot.option_instruments.set_index("instrument")
    assert inst.loc[chosen, "dealer_position"] == -12.5
    assert inst.loc[chosen, "positioning"] == "file:flow.csv"
    other = inst.drop(chosen)
    expected = np.where(other["kind"] == "call", other["open_interest"], -other["open_interest"])
    assert (other["dealer_position"].to_numpy() == expected).all()
    assert set(other["positioning"]) == {"convention:calls-long-puts-short"}


def test_import_joins_an_existing_snapshot_on_its_wrapped_asset(tmp_path, eth_snapshot):
    from benchmarks.synthetic import synthetic_snapshot

    base = synthetic_snapshot(60, n_markets=1, n_assets=3, seed=1)
    assets = base.assets.copy()
    assets.loc[1, "symbol"] = "WETH"
    Snapshot(meta=base.meta, assets=assets, markets=base.markets, accounts=base.accounts, positions=base.positions,
             venues=base.venues).write(tmp_path / "snap")
    joined = import_options(DERIBIT_ETH, tmp_path / "snap")
    assert set(joined.option_instruments["asset"]) == {assets.loc[1, "address"]}
    assert len(joined.positions) == len(base.positions)
    assert joined.assets.loc[1, "iv"] == assets.loc[1, "iv"]      # the snapshot's own IV is kept
    rows = _independent_rows()      # a new underlying: the mark IV nearest the money, first expiry >= 7 days
    first = min(r["years"] for r in rows if r["years"] >= 7 / 365)
    atm = min((r for r in rows if r["years"] == first), key=lambda r: abs(math.log(r["strike"] / r["forward"])))
    assert eth_snapshot.assets.loc[0, "iv"] == atm["iv"]


@pytest.mark.parametrize("content, message", [
    ("not json", "not a JSON venue response"),
    ('{"jsonrpc": "2.0", "result": []}', "not a response of a known options venue"),
    ('{"jsonrpc": "2.0", "result": [{"instrument_name": "ETH-7DEC26-3000-C", "open_interest": "x", "mark_iv": 1,'
     ' "underlying_price": 3000, "creation_timestamp": 1}]}', "open_interest must be a number"),
])
def test_bad_response_files_are_one_line_errors_and_write_nothing(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ContagionError, match=message):
        import_options([DERIBIT_ETH[0], bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


BYBIT_ETH = [SAMPLES / "bybit-ETH-instruments-info.json", SAMPLES / "bybit-ETH-tickers.json"]


@pytest.mark.parametrize("venue, damage, message", [
    ("deribit", lambda summary, listed: summary["result"].insert(1, 7), "every result row must be an object"),
    ("deribit", lambda summary, listed: summary.update(usOut="soon"), "usOut must be a number"),
    ("bybit", lambda summary, listed: summary["result"]["list"].insert(1, [1]), "every row of result.list must be an object"),
    ("bybit", lambda summary, listed: listed["result"]["list"][0].update(optionsType=["Call"]), "optionsType must be Call|Put"),
])
def test_response_rows_of_the_wrong_type_are_refused_by_name(tmp_path, venue, damage, message):
    """The scale fuzz's options cases: a row that is not an object, a field of the wrong type."""
    files = DERIBIT_ETH if venue == "deribit" else BYBIT_ETH
    listed, summary = (json.loads(f.read_text()) for f in files)
    damage(summary, listed)
    paths = [tmp_path / "listed.json", tmp_path / "summary.json"]
    for path, payload in zip(paths, (listed, summary), strict=True):
        path.write_text(json.dumps(payload))
    with pytest.raises(ContagionError, match=message):
        import_options(paths, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _serve(folder: Path, routes: dict[str, Path]):
    """A loopback HTTP server answering GET path -> the file's bytes (any query)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            body = routes[path].read_bytes() if path in routes else b"{}"
            self.send_response(200 if path in routes else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fetch_from_a_server_in_the_venues_format_equals_importing_the_files(tmp_path):
    from analyzer.options.imports import fetch_options

    routes = {"/api/v2/public/get_instruments": DERIBIT_ETH[0],
              "/api/v2/public/get_book_summary_by_currency": DERIBIT_ETH[1],
              "/v5/market/instruments-info": SAMPLES / "bybit-ETH-instruments-info.json",
              "/v5/market/tickers": SAMPLES / "bybit-ETH-tickers.json"}
    server = _serve(tmp_path, routes)
    try:
        port = server.server_address[1]
        fetch_options("deribit", "ETH", tmp_path / "fetched", url=f"http://127.0.0.1:{port}/api/v2")
        fetched = fetch_options("bybit", "ETH", tmp_path / "fetched", url=f"http://127.0.0.1:{port}")
        with pytest.raises(ContagionError, match="deribit: http://127.0.0.1"):
            fetch_options("deribit", "ETH", tmp_path / "other", url=f"http://127.0.0.1:{port}/wrong")
    finally:
        server.shutdown()
    imported = import_options([*DERIBIT_ETH, SAMPLES / "bybit-ETH-instruments-info.json",
                               SAMPLES / "bybit-ETH-tickers.json"], tmp_path / "imported")
    for name in ("assets", "option_instruments"):
        a = fetched.table(name).sort_values(list(fetched.table(name).columns[:2])).reset_index(drop=True)
        b = imported.table(name).sort_values(list(imported.table(name).columns[:2])).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "other").exists()


def test_a_refused_fetch_saves_no_response(tmp_path):
    """The venue answers, but its book summary is not a valid one: the fetch is refused and
    --save-responses gets nothing (a refusal writes no output)."""
    from analyzer.options.imports import fetch_options

    bad = tmp_path / "summary.json"
    summary = json.loads(DERIBIT_ETH[1].read_text())
    summary["result"][0]["open_interest"] = "many"
    bad.write_text(json.dumps(summary))
    server = _serve(tmp_path, {"/api/v2/public/get_instruments": DERIBIT_ETH[0],
                               "/api/v2/public/get_book_summary_by_currency": bad})
    try:
        with pytest.raises(ContagionError, match="open_interest must be a number"):
            fetch_options("deribit", "ETH", tmp_path / "snap", url=f"http://127.0.0.1:{server.server_address[1]}/api/v2",
                          save_to=tmp_path / "raw")
    finally:
        server.shutdown()
    assert not (tmp_path / "raw").exists() and not (tmp_path / "snap").exists()


def test_simulate_with_imported_dealers_names_them_in_the_contagion_matrix(tmp_path):
    """Dealers short every option (customers long all OI, from a positioning file) sell into a fall."""
    import subprocess
    import sys

    write_weth_book(tmp_path / "snap", 400, seed=7)
    summary = json.loads(DERIBIT_ETH[1].read_text())["result"]
    flow = tmp_path / "flow.csv"
    flow.write_text("venue,instrument,customer_net\n" +
                    "".join(f"deribit,{r['instrument_name']},{r['open_interest']}\n" for r in summary))
    cli = [sys.executable, "-m", "analyzer.cli"]
    done = subprocess.run([*cli, "options", "import", *map(str, DERIBIT_ETH), "--out", str(tmp_path / "snap"),
                           "--positioning", str(flow)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*cli, "simulate", str(tmp_path / "snap"), "--shock", "WETH=-15%", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    cascade = json.loads((tmp_path / "run" / "cascade.json").read_text())
    sources = cascade["contagion"]["sources"]
    assert "hedging:deribit" in sources
    caused = cascade["contagion"]["usd"][sources.index("hedging:deribit")]
    assert sum(caused) > 0          # short-gamma dealers' sales liquidated someone


def test_the_committed_samples_are_what_their_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES.parent / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    written = sorted(p.name for p in tmp_path.glob("*.json"))
    assert written == sorted(p.name for p in SAMPLES.glob("*.json"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), f"{name} is stale: rerun make_samples.py"
