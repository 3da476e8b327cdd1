"""The contagion command: version, devnet up, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from analyzer import __version__
from analyzer.devnet.scenario import load
from tests.conftest import requires_anvil


def contagion(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_version():
    proc = contagion("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"contagion {__version__}"


@requires_anvil
def test_devnet_up_prints_rpc_url_and_address_book(tmp_path):
    book_path = tmp_path / "book.json"
    proc = contagion("devnet", "up", "--exit", "--protocols", "", "--book-out", str(book_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rpc_url"].startswith("http://127.0.0.1:")
    scenario = load("mainnet-like")
    assert sorted(out["address_book"]["tokens"]) == sorted(scenario.assets)
    assert json.loads(book_path.read_text()) == out["address_book"]


@pytest.mark.parametrize(("args", "fragment"), [
    (("devnet", "up", "--exit", "--devnet-scenario", "no-such-scenario"), "scenario no-such-scenario not found"),
    # --scenario is a shock scenario everywhere else: here it points to the devnet's flag
    (("devnet", "up", "--exit", "--scenario", "morpho"), "--devnet-scenario morpho"),
    (("demo", "--scenario", "morpho"), "--devnet-scenario morpho"),
    (("devnet", "up", "--exit", "--port", "80"), "--port must be within 1024..65535"),
    (("devnet", "up", "--exit", "--protocols", "aave-v9"), 'unknown protocol "aave-v9"'),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    assert_one_line_error(contagion(*args), fragment)


def test_bad_scenario_file_names_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[assets.WETH]\ndecimals = 18\nprice_usd = -3\n')
    assert_one_line_error(contagion("devnet", "up", "--exit", "--devnet-scenario", str(bad)), "assets.WETH.price_usd")
    bad.write_text("name = [unclosed\n")
    assert_one_line_error(contagion("devnet", "up", "--exit", "--devnet-scenario", str(bad)), "not valid TOML")


def test_a_scenario_section_no_installed_plugin_deploys_is_an_error_not_silently_dropped(tmp_path):
    # without the check a section whose plugin is absent (e.g. a venv lacking the uniswap-v4 entry
    # point) left its pools out of the devnet without a word
    scenario = tmp_path / "sections.toml"
    assets = 'name = "x"\n[assets.WETH]\ndecimals = 18\nprice_usd = 3000.0\n'
    scenario.write_text(assets + '[protocols.uniswap-v5]\npools = [{ asset = "WETH", quote = "USDC" }]\n')
    proc = contagion("devnet", "up", "--exit", "--protocols", "aave-v3", "--devnet-scenario", str(scenario))
    assert_one_line_error(proc, "[protocols.uniswap-v5]: no installed protocol plugin named 'uniswap-v5'")
    # a plugin that exists but deploys nothing on a devnet (a centralised exchange's book)
    scenario.write_text(assets + "[protocols.bybit]\ndepth = 1\n")
    proc = contagion("devnet", "up", "--exit", "--devnet-scenario", str(scenario))
    assert_one_line_error(proc, "[protocols.bybit]: the bybit plugin has no devnet part")


def test_unknown_flag_exits_2():
    proc = contagion("devnet", "up", "--no-such-flag")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
