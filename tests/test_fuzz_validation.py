"""Bad input at every boundary: one ``error:`` line, exit status 2, nothing written, no hang.

Each case below is one that ended in a traceback, a hang or an out-of-memory kill in round one
(issue 26). The CLI runs in-process (``analyzer.cli.main``) so that the cases stay quick.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from protocols.uniswap_v3.venue import UniswapV3Venue
from tests.test_model import USDC, WETH, small_snapshot


def run(capsys, *args: str) -> str:
    """The CLI's stderr for a refused command (asserted: status 2, one error line, no traceback)."""
    status = main(list(args))
    err = capsys.readouterr().err
    assert status == 2, (args, status, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    return lines[-1]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture
def snapshot_dir(tmp_path) -> Path:
    return small_snapshot().write(tmp_path / "snapshot")


def test_an_output_folder_that_holds_the_current_folder_is_refused(capsys, monkeypatch, snapshot_dir):
    """`contagion graph snapshot` run beside the snapshot writes "beside the snapshot": the current
    folder, which a run cannot replace whole; refused (one line, naming --out), nothing written."""
    monkeypatch.chdir(snapshot_dir.parent)
    before = files_under(snapshot_dir.parent)
    assert "is the current folder or holds it" in run(capsys, "graph", "snapshot")
    assert "--out" in run(capsys, "simulate", "snapshot", "--shock", "TKN1=-30%", "--out", "..")
    assert files_under(snapshot_dir.parent) == before


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "spaces"), ("ftp://node.example", "unsupported scheme"), ("http://", "no host"),
    ("http://127.0.0.1:99999", "port"), ("http://127.0.0.1:0", "port"), ("127.0.0.1:8545", "scheme"),
    ("http://user:hunter2secret@[::1", "not a URL"),
])
def test_malformed_rpc_urls_are_one_line_and_redacted(capsys, tmp_path, url, says):
    for option in ("--rpc", "--fork-url"):
        line = run(capsys, "scan", option, url, "--out", str(tmp_path / "out"))
        assert says in line and "hunter2secret" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("table", "column", "value", "says"), [
    ("markets", "params", "{not json", "JSON object"),
    ("markets", "params", "[1, 2]", "JSON object"),
    ("accounts", "category", 2 ** 62, "category"),
    ("markets", "category", -1, "category"),
])
def test_snapshot_columns_out_of_range_are_refused(tmp_path, table, column, value, says):
    snap = small_snapshot()
    if table == "accounts":
        snap.accounts = snap.accounts.__class__([{"protocol": "aave-v3", "market": "0x1", "account": "0x2",
                                                  "category": 0, "params": "{}"}])
    frame = snap.table(table).copy()
    frame[column] = [value] * len(frame)
    setattr(snap, table, frame)
    with pytest.raises(ContagionError, match=says):
        snap.write(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_timestamp_that_is_not_a_number_is_refused(tmp_path, snapshot_dir):
    meta = json.loads((snapshot_dir / "meta.json").read_text())
    (snapshot_dir / "meta.json").write_text(json.dumps(dict(meta, block_timestamp="yesterday")))
    with pytest.raises(ContagionError, match="block_timestamp must be a non-negative integer"):
        Snapshot.read(snapshot_dir)


@pytest.mark.parametrize("spacing", [0, -1, 16384])
def test_a_pool_with_an_impossible_tick_spacing_is_refused_not_looped_on(spacing):
    params = {"token0": WETH, "token1": USDC, "decimals0": 18, "decimals1": 6, "fee": 500, "tick_spacing": spacing,
              "sqrt_price_x96": str(2 ** 96 // 10 ** 6), "tick": -276325, "liquidity": str(10 ** 18), "ticks": []}
    with pytest.raises(ContagionError, match="tick_spacing must be within 1..16383"):
        UniswapV3Venue(WETH, USDC, params)


def test_a_shock_grid_too_large_is_refused_with_its_size(capsys, tmp_path, snapshot_dir):
    line = run(capsys, "sweep", str(snapshot_dir), "--shocks=1%:-99%:1e-10%", "--out", str(tmp_path / "sweep"))
    assert "1,000,000,000,001 shock sizes" in line and "limit is 10,000" in line
    assert not (tmp_path / "sweep").exists() and not list(tmp_path.glob(".sweep*"))


def test_monte_carlo_beyond_the_limit_and_bad_seeds_are_refused(capsys, tmp_path, snapshot_dir):
    spec = tmp_path / "spec.toml"
    for body, says in [("paths = 10000000", "10,000,000 paths; the limit is"), ("seed = -1", "seed must be"),
                       ('paths = "many"', "paths must be a positive integer"),
                       ("covariance = [[1.0, 0.0], [0.0]]", "covariance must be a 2×2 table")]:
        covariance = "" if "covariance" in body else "covariance = [[0.01, 0.0], [0.0, 0.01]]\n"
        spec.write_text(f'[montecarlo]\nassets = ["WETH", "USDC"]\n{covariance}{body}\n')
        assert says in run(capsys, "sweep", str(snapshot_dir), "--spec", str(spec), "--out", str(tmp_path / "sweep"))
    assert not (tmp_path / "sweep").exists() and not list(tmp_path.glob(".sweep*"))


@pytest.mark.parametrize(("shock", "says"), [
    ("WETH=+1e6%", "a rise must stay below +10000%"), ("WETH=-100%", "cannot fall by 100%"),
    ("WETH=1e400", "not a finite number"),
])
def test_price_shocks_get_the_message_of_their_direction(capsys, tmp_path, snapshot_dir, shock, says):
    assert says in run(capsys, "simulate", str(snapshot_dir), "--shock", shock, "--out", str(tmp_path / "sim"))
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize("value", ["nan", "inf", '"-inf%"'])
def test_non_finite_scenario_values_are_refused_before_anything_is_written(capsys, tmp_path, snapshot_dir, value):
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"[price]\nWETH = {value}\n")
    assert "finite" in run(capsys, "simulate", str(snapshot_dir), "--scenario", str(scenario), "--out", str(tmp_path / "sim"))
    assert not (tmp_path / "sim").exists()


def test_output_paths_that_cannot_be_folders_are_refused(capsys, tmp_path, snapshot_dir):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    before = files_under(tmp_path)
    assert "is not a folder" in run(capsys, "simulate", str(snapshot_dir), "--shock", "WETH=-20%", "--out", str(a_file))
    assert "is not a folder" in run(capsys, "graph", str(snapshot_dir), "--out", str(a_file / "sub"))
    if os.geteuid() != 0:   # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "not writable" in run(capsys, "sweep", str(snapshot_dir), "--out", str(locked / "sweep"))
    assert files_under(tmp_path) - before <= {tmp_path / "locked"}


FAKE_NODE = """#!{python}
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open({calls!r}, "a") as calls:
            calls.write(request["method"] + "\\n")
        result = "Geth/v1.13.14-stable/linux-amd64/go1.21.6" if request["method"] == "web3_clientVersion" else "0x1"
        body = json.dumps({{"jsonrpc": "2.0", "id": request["id"], "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.mark.parametrize("args", [["--exit"], ["--exit", "--state-out", "state.json"]])
def test_devnet_up_refuses_a_binary_that_is_not_anvil_before_any_cheat(capsys, monkeypatch, tmp_path, args):
    """Cached devnet or not, with --state-out or not: the client is checked before anything is sent."""
    import sys

    calls = tmp_path / "calls.txt"
    fake = tmp_path / "anvil"
    fake.write_text(FAKE_NODE.format(python=sys.executable, calls=str(calls)))
    fake.chmod(0o755)
    monkeypatch.setenv("ANVIL_BIN", str(fake))
    monkeypatch.chdir(tmp_path)
    assert "answers as Geth" in run(capsys, "devnet", "up", *args)
    sent = set(calls.read_text().split()) if calls.exists() else set()
    assert sent <= {"web3_clientVersion"}, sent
    assert not (tmp_path / "state.json").exists()


def test_sweep_uses_the_venue_models_of_its_spec_scenario(tmp_path):
    """A snapshot without a venue for TKN1: the sweep runs only with [scenario.venues.TKN1], and a
    shallower model there liquidates more (the spec's model is the one used)."""
    import pandas as pd

    from analyzer.sweep import sweep_to_dir
    from benchmarks.synthetic import synthetic_snapshot

    snap = synthetic_snapshot(n_positions=300, n_markets=2, n_assets=5, seed=3)
    tkn1 = snap.address_of("TKN1")
    snap.venues = snap.venues[snap.venues["asset"] != tkn1].reset_index(drop=True)
    snapshot_dir = snap.write(tmp_path / "snapshot")
    spec = {"assets": ["TKN1"], "shocks": ["-30%"], "static": False}
    with pytest.raises(ContagionError, match="no price-impact venue for TKN1"):
        sweep_to_dir(snapshot_dir, dict(spec), tmp_path / "none")
    liquidated = {}
    for depth in (1e9, 1e2):
        venues = {"TKN1": {"model": "linear", "depth_1pct": depth}}
        sweep_to_dir(snapshot_dir, dict(spec, scenario={"venues": venues}), tmp_path / f"d{depth:g}")
        table = pd.read_parquet(tmp_path / f"d{depth:g}" / "results.parquet")
        liquidated[depth] = float(table.filter(like="liquidated").select_dtypes("number").sum().sum())
    assert liquidated[1e2] > liquidated[1e9] > 0


def test_inputs_the_scale_fuzz_found(capsys, tmp_path, snapshot_dir):
    """benchmarks.fuzz at 5,000 cases: a 300-letter host name, a history that is not a file name,
    a covariance entry beyond float64."""
    assert "not a valid host name" in run(capsys, "scan", "--rpc", f"wss://{'a' * 300}:1", "--out", str(tmp_path / "o"))
    spec = tmp_path / "spec.toml"
    for body in ('history = 5', 'history = ["a"]', 'assets = ["TKN1"]\ncovariance = [[1180591620717411303424]]'):
        spec.write_text(f"[montecarlo]\n{body}\n")
        message = run(capsys, "sweep", str(snapshot_dir), "--spec", str(spec), "--out", str(tmp_path / "o"))
    assert "a drawn move overflows" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (("recommend", "SNAP", "--scenarios", "demo", "--budget", "lots"), "Invalid value for '--budget'"),
    (("simulate",), "Missing argument 'snapshot'"),
    (("sweep", "SNAP", "--bogus"), "No such option: --bogus"),
    (("scan", "--rpc", "http://alice:hunter2pw@127.0.0.1:1", "--block", "yesterday"), "Invalid value for '--block'"),
    (("devnet", "up", "--port", "x"), "Invalid value for '--port'"),
])
def test_a_usage_error_is_one_error_line_too(capsys, tmp_path, snapshot_dir, args, message):
    """Click's own refusals (a wrong type, a missing argument, an unknown option) follow the same
    contract as ours: one ``error:`` line naming the option, status 2, nothing written."""
    before = files_under(tmp_path)
    status = main([str(snapshot_dir) if a == "SNAP" else a for a in args])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0] and "--help" in lines[0] and "hunter2pw" not in lines[0], lines
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("ratio_to", ['{ x = 1 }', '["WETH"]', '3', '"WSTETH_IS_NOT_HERE"'])
def test_a_devnet_scenario_ratio_to_that_is_not_an_asset_name_is_refused(capsys, tmp_path, ratio_to):
    """The scale fuzz's devnet case: ``ratio_to`` of a table raised TypeError (unhashable dict)."""
    bad = tmp_path / "devnet.toml"
    bad.write_text(f'name = "x"\n[assets.WETH]\ndecimals = 18\nprice_usd = 3000.0\n'
                   f'[assets.wstETH]\ndecimals = 18\nprice_usd = 3500.0\nratio_to = {ratio_to}\n')
    line = run(capsys, "devnet", "up", "--exit", "--devnet-scenario", str(bad), "--protocols", "aave-v3")
    assert "assets.wstETH.ratio_to" in line, line


def test_recommend_refuses_more_scenarios_than_its_limit_with_the_number(capsys, tmp_path, snapshot_dir):
    from analyzer.recommend.run import MAX_SCENARIOS

    many = tmp_path / "many.toml"
    many.write_text("".join(f'[[scenario]]\nname = "s{i}"\n[scenario.price]\nTKN1 = "-10%"\n'
                            for i in range(MAX_SCENARIOS + 1)))
    line = run(capsys, "recommend", str(snapshot_dir), "--scenarios", str(many), "--budget", "0",
               "--out", str(tmp_path / "out"))
    assert f"{MAX_SCENARIOS + 1:,} scenarios; the limit is {MAX_SCENARIOS}" in line, line
    assert not (tmp_path / "out").exists()
