"""The package outside its checkout: a wheel installed into a fresh virtualenv works, and a protocol
plugin shipped as its own package (tests/plugin_fixture) is found through its entry point and used
by ``scan`` and ``simulate`` on a devnet, with no change to the core."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.chain import find_anvil
from analyzer.devnet.solc import compile_sources, solc_version, sources_hash
from benchmarks.synthetic import synthetic_snapshot
from tests.conftest import requires_anvil

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "plugin_fixture"
SHIPPED = ("pyproject.toml", "README.md", "analyzer", "protocols", "abis", "fixtures")


def test_the_toy_plugin_artifact_is_its_source_compiled():
    sources = {"ToyLending.sol": (FIXTURE / "toy_lending" / "ToyLending.sol").read_text()}
    committed = json.loads((FIXTURE / "toy_lending" / "ToyLending.json").read_text())
    assert committed["sources_sha256"] == sources_hash(sources) and committed["solc"] == solc_version()
    assert compile_sources(sources)["ToyLending"]["bytecode"] == committed["bytecode"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv outside the checkout with the wheel of this checkout and the toy plugin."""
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"
    source.mkdir()
    for name in SHIPPED:      # a copy, so that building leaves nothing in the checkout
        src = ROOT / name
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(src, source / name, ignore=ignore) if src.is_dir() else shutil.copy(src, source / name)
    shutil.copytree(FIXTURE, tmp / "plugin", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    wheels = tmp / "wheels"
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)], check=True, cwd=tmp)
    (wheel,) = wheels.glob("defi_contagion-*.whl")
    subprocess.run([*pip, "install", "--quiet", "--disable-pip-version-check", str(wheel), str(tmp / "plugin")],
                   check=True, cwd=tmp)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ANVIL_BIN=find_anvil(), XDG_CACHE_HOME=str(tmp / "cache"), PATH=f"{venv / 'bin'}:{env['PATH']}")
    run_dir = tmp / "run"
    run_dir.mkdir()
    return venv, env, run_dir


def _contagion(installed, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    venv, env, run_dir = installed
    proc = subprocess.run([str(venv / "bin" / "contagion"), *args], cwd=run_dir, env=env, capture_output=True,
                          text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_installed_wheel_runs_outside_the_checkout(installed):
    venv, env, run_dir = installed
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import analyzer, protocols; "
                            "print(analyzer.__file__); print(protocols.__file__)"],
                           cwd=run_dir, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert _contagion(installed, "--version").stdout.strip().startswith("contagion ")
    synthetic_snapshot(300, n_markets=2, n_assets=4, seed=1, receipt=True).write(run_dir / "snap")
    _contagion(installed, "simulate", "snap", "--shock", "TKN1=-30%", "--out", "sim")
    cascade = json.loads((run_dir / "sim" / "cascade.json").read_text())
    assert cascade["totals"]["liquidations"] > 0
    # nothing was written into the install folder: caches live under XDG_CACHE_HOME
    assert not list(venv.rglob(".cache"))


@pytest.mark.slow
@requires_anvil
def test_an_external_plugin_package_is_scanned_and_simulated_on_the_devnet(installed):
    venv, env, run_dir = installed
    listed = subprocess.run([str(venv / "bin" / "python"), "-c", "from protocols import plugins; print(*plugins())"],
                            cwd=run_dir, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert "toy-lending" in listed
    devnet = subprocess.Popen([str(venv / "bin" / "contagion"), "devnet", "up", "--devnet-scenario", str(FIXTURE / "toy.toml"),
                               "--protocols", "toy-lending", "--book-out", "book.json", "--no-cache"],
                              cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in devnet.stdout:      # the JSON document ends with a closing brace in column 0
            lines.append(line)
            if line.rstrip() == "}":
                break
        assert lines, devnet.stderr.read()
        url = json.loads("".join(lines))["rpc_url"]
        _contagion(installed, "scan", "--rpc", url, "--book", "book.json", "--protocols", "toy-lending",
                   "--out", "toy-snap")
        positions = __import__("pandas").read_parquet(run_dir / "toy-snap" / "positions.parquet")
        assert len(positions) == 6 and set(positions["protocol"]) == {"toy-lending"}
        # WETH -10%: a (10 WETH at 1,800 × 0.8 = 14,400 < 15,000) and c (7,200 < 7,900) fall under 1, b does not
        _contagion(installed, "simulate", "toy-snap", "--shock", "WETH=-10%", "--out", "toy-sim")
        cascade = json.loads((run_dir / "toy-sim" / "cascade.json").read_text())
        assert cascade["protocols"]["toy-lending"]["liquidations"] == 2
    finally:
        devnet.send_signal(signal.SIGTERM)
        devnet.wait(timeout=60)
