"""Fuzzing every file the tool reads: a mutated file gives a clean ContagionError or a valid result.

Never a traceback of another kind, never a partial output. Mutations: byte flips, truncation,
insertion of junk, type changes of TOML values, and corrupted Parquet/JSON inside a snapshot.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.books import load_book
from analyzer.devnet.scenario import SCENARIOS_DIR
from analyzer.devnet.scenario import load as load_scenario
from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.scan import read_accounts_file
from tests.test_model import small_snapshot

SCENARIO_TEXT = (SCENARIOS_DIR / "mainnet-like.toml").read_bytes()
FUZZ = settings(max_examples=500, print_blob=False, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        else:
            del data[at:at + draw(st.integers(min_value=1, max_value=40))]
    return bytes(data)


def accepts_or_refuses_cleanly(action) -> None:
    try:
        action()
    except ContagionError as exc:
        message = str(exc)
        assert message and "\n" not in message


@FUZZ
@given(data=mutated(SCENARIO_TEXT))
def test_mutated_scenario_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "scenario.toml"
    path.write_bytes(data)
    accepts_or_refuses_cleanly(lambda: load_scenario(path))


@FUZZ
@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=5),
                       st.lists(st.integers(), max_size=2)),
       field=st.sampled_from(["decimals", "price_usd", "iv"]))
def test_scenario_fields_of_the_wrong_type(tmp_path_factory, value, field):
    path = tmp_path_factory.mktemp("fuzz") / "scenario.toml"
    rendered = json.dumps(value) if value is not None and not isinstance(value, float) else "nan"
    text = SCENARIO_TEXT.decode().replace("decimals = 18\nprice_usd = 3000.0\niv = 0.65",
                                          {"decimals": f"decimals = {rendered}\nprice_usd = 3000.0\niv = 0.65",
                                           "price_usd": f"decimals = 18\nprice_usd = {rendered}\niv = 0.65",
                                           "iv": f"decimals = 18\nprice_usd = 3000.0\niv = {rendered}"}[field], 1)
    path.write_text(text)
    accepts_or_refuses_cleanly(lambda: load_scenario(path))


def _snapshot_dir(root: Path) -> Path:
    path = root / "snap"
    if not path.exists():
        small_snapshot().write(path)
    return path


@FUZZ
@given(member=st.sampled_from(["meta.json", "assets.parquet", "positions.parquet", "markets.parquet"]),
       data=st.data())
def test_mutated_snapshot_files(tmp_path_factory, member, data):
    source = _snapshot_dir(tmp_path_factory.getbasetemp())
    target = tmp_path_factory.mktemp("fuzz") / "snap"
    shutil.copytree(source, target)
    original = (target / member).read_bytes()
    (target / member).write_bytes(data.draw(mutated(original)))
    accepts_or_refuses_cleanly(lambda: Snapshot.read(target))


def test_a_string_that_is_not_utf8_in_a_snapshot_table_is_refused(tmp_path):
    """The case the fuzz found: a byte of an asset address turned into 0x80 (not UTF-8). Arrow
    reads the file without looking at the strings; the snapshot refuses it in one line."""
    target = tmp_path / "mutated"
    shutil.copytree(_snapshot_dir(tmp_path), target)
    data = bytearray((target / "assets.parquet").read_bytes())
    at = data.find(b"0x")
    assert at > 0
    data[at + 1] = 0x80
    (target / "assets.parquet").write_bytes(bytes(data))
    with pytest.raises(ContagionError, match="unreadable Parquet.*UTF8"):
        Snapshot.read(target)


@FUZZ
@given(lines=st.lists(st.one_of(st.text(max_size=50), st.from_regex(r"0x[0-9a-fA-F]{40}", fullmatch=True)),
                      max_size=8))
def test_account_lists(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "accounts.txt"
    path.write_text("\n".join(lines), errors="replace") if all("\x00" not in x for x in lines) else None
    if path.exists():
        accepts_or_refuses_cleanly(lambda: read_accounts_file(path))


@FUZZ
@given(payload=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=10))
def test_address_books(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("fuzz") / "book.json"
    path.write_text(json.dumps(payload))
    accepts_or_refuses_cleanly(lambda: load_book(path))


SHOCK_TEXT = b'''name = "weth-crash"
max_rounds = 20
tolerance = 1e-6
oracle_lag = 0
sell_through = 1.0
keeper_gas_usd = 5.0
[price]
A1 = "-30%"
[iv]
A1 = 0.25
[oracle]
A2 = "exogenous"
[[forced_sale]]
account = "0x00000000000000000000000000000000000000aa"
'''


@FUZZ
@given(data=mutated(SHOCK_TEXT))
def test_mutated_shock_scenarios(tmp_path_factory, data):
    from analyzer.scenarios import load_scenario

    path = tmp_path_factory.mktemp("fuzz") / "shock.toml"
    path.write_bytes(data)
    accepts_or_refuses_cleanly(lambda: load_scenario(path))


def test_the_cli_refuses_mutated_inputs_with_exit_2_and_writes_nothing(tmp_path):
    """Through the real command: a mutated scenario or snapshot gives exit 2, one line, no output."""
    import random
    import subprocess
    import sys

    from benchmarks.synthetic import synthetic_snapshot

    snapshot = synthetic_snapshot(300, n_markets=1, n_assets=4, seed=3).write(tmp_path / "snap")
    rng = random.Random(11)
    cases = []
    for i in range(8):
        bad = bytearray(SHOCK_TEXT)
        for _ in range(3):
            at = rng.randrange(len(bad))
            bad[at] = rng.choice(b'"=[]#x\\x00-9')
        (tmp_path / f"s{i}.toml").write_bytes(bytes(bad))
        cases.append(["simulate", str(snapshot), "--scenario", str(tmp_path / f"s{i}.toml"), "--out", str(tmp_path / f"o{i}")])
    broken = tmp_path / "broken"
    shutil.copytree(snapshot, broken)
    (broken / "positions.parquet").write_bytes((broken / "positions.parquet").read_bytes()[:200])
    cases.append(["simulate", str(broken), "--shock", "A1=-30%", "--out", str(tmp_path / "o-broken")])
    cases.append(["graph", str(broken), "--out", str(tmp_path / "o-graph")])
    cases.append(["simulate", str(snapshot), "--shock", "NOPE=-30%", "--out", str(tmp_path / "o-nope")])
    refused = 0
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True, timeout=300)
        out = Path(args[args.index("--out") + 1])
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode != 0:
            refused += 1
            assert proc.returncode == 2
            assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
            assert not out.exists(), f"{out} written although the input was refused"
        else:
            assert (out / "cascade.json").is_file()
    assert refused >= 3
