"""Fuzzing every file the tool reads: a mutated file gives a clean ContagionError or a valid result.

Never a traceback of another kind, never a partial output. Mutations: byte flips, truncation,
insertion of junk, type changes of TOML values, and corrupted Parquet/JSON inside a snapshot.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.devnet.scenario import SCENARIOS_DIR
from analyzer.devnet.scenario import load as load_scenario
from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.scan import read_accounts_file
from analyzer.scanning import load_book
from tests.test_model import small_snapshot

SCENARIO_TEXT = (SCENARIOS_DIR / "mainnet-like.toml").read_bytes()
FUZZ = settings(max_examples=300, print_blob=False, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
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
