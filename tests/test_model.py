"""The snapshot: exact Parquet round trip, validation with clear errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.atomic import atomic_directory
from analyzer.errors import ContagionError
from analyzer.model import TABLES, Snapshot, raw_to_amount

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"


def small_snapshot(raws=(10**18, 2**256 - 1)) -> Snapshot:
    positions = [
        {"protocol": "aave-v3", "market": POOL, "account": f"0x{i:040x}", "asset": WETH, "side": "collateral",
         "amount": raw_to_amount(raw, 18), "raw": str(raw)} for i, raw in enumerate(raws)
    ]
    return Snapshot(
        meta={"chain_id": 1, "block_number": 19_000_000, "protocols": {"aave-v3": {"pool": POOL}}},
        assets=[{"address": WETH, "symbol": "WETH", "decimals": 18, "price_usd": 3000.0},
                {"address": USDC, "symbol": "USDC", "decimals": 6, "price_usd": 1.0}],
        markets=[{"protocol": "aave-v3", "market": POOL, "asset": WETH, "liquidation_threshold": 0.83,
                  "liquidation_bonus": 0.05, "params": json.dumps({"id": 0})}],
        positions=positions,
    )


def test_round_trip_is_exact_up_to_uint256_max(tmp_path):
    snap = small_snapshot()
    snap.write(tmp_path / "snap")
    back = Snapshot.read(tmp_path / "snap")
    assert back.positions["raw"].tolist() == ["1000000000000000000", str(2**256 - 1)]
    assert int(back.positions["raw"].iloc[1]) == 2**256 - 1
    for name in TABLES:
        pd.testing.assert_frame_equal(back.table(name), snap.table(name))
    assert back.meta["block_number"] == 19_000_000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**256 - 1), min_size=1, max_size=20, unique=True))
def test_any_uint256_survives_the_round_trip(tmp_path_factory, raws):
    path = tmp_path_factory.mktemp("snap") / "s"
    small_snapshot(raws).write(path)
    assert [int(r) for r in Snapshot.read(path).positions["raw"]] == raws


def test_raw_to_amount_is_correctly_rounded():
    assert raw_to_amount(1, 18) == 1e-18
    assert raw_to_amount(123456789, 6) == 123.456789
    assert raw_to_amount(2**256 - 1, 18) == float(2**256 - 1) / 1e18


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.positions.__setitem__("asset", "0x" + "ab" * 20), "not in the assets table"),
    (lambda s: s.positions.__setitem__("amount", -1.0), "amount must be finite and non-negative"),
    (lambda s: s.assets.__setitem__("price_usd", float("nan")), "missing or negative price_usd"),
    (lambda s: s.positions.__setitem__("side", "loan"), "side must be one of"),
    (lambda s: s.positions.__setitem__("raw", "12.5"), "raw must be a non-negative integer string"),
    (lambda s: s.positions.__setitem__("account", "0x1"), "duplicate key"),
    (lambda s: s.meta.pop("block_number"), "missing block_number"),
])
def test_validation_names_the_problem(mutate, message):
    snap = small_snapshot()
    mutate(snap)
    with pytest.raises(ContagionError, match=message):
        snap.validate()


def test_unknown_column_is_refused():
    with pytest.raises(ContagionError, match="unknown columns"):
        Snapshot(assets=[{"address": WETH, "symbol": "WETH", "decimals": 18, "price_usd": 1.0, "colour": "red"}])


def test_read_refuses_another_chain_or_block(tmp_path):
    small_snapshot().write(tmp_path / "s")
    with pytest.raises(ContagionError, match="snapshot of chain 1, expected chain 10"):
        Snapshot.read(tmp_path / "s", expect_chain_id=10)
    with pytest.raises(ContagionError, match="expected block 5"):
        Snapshot.read(tmp_path / "s", expect_block=5)


def test_read_of_a_corrupt_table_is_a_clear_error(tmp_path):
    small_snapshot().write(tmp_path / "s")
    (tmp_path / "s" / "positions.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ContagionError, match="positions.parquet: unreadable Parquet"):
        Snapshot.read(tmp_path / "s")


def test_a_failed_write_leaves_the_previous_snapshot_whole(tmp_path):
    target = tmp_path / "s"
    small_snapshot().write(target)
    before = sorted(p.name for p in target.iterdir())
    broken = small_snapshot()
    broken.positions.loc[0, "amount"] = -5.0
    with pytest.raises(ContagionError):
        broken.write(target)
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (Path(tmp) / "meta.json").write_text("{}")
        raise RuntimeError("crash in the middle of a write")
    assert sorted(p.name for p in target.iterdir()) == before
    assert Snapshot.read(target).meta["chain_id"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.tmp")]


def test_merge_refuses_different_blocks():
    a, b = small_snapshot(), small_snapshot()
    b.meta["block_number"] = 1
    with pytest.raises(ContagionError, match="different block_number"):
        a.merge(b)


def test_outputs_get_ordinary_permissions_not_mkstemps(tmp_path):
    import os

    from analyzer.atomic import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html></html>")
        snap = small_snapshot().write(tmp_path / "snap")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert snap.stat().st_mode & 0o777 == 0o755
    assert (snap / "meta.json").stat().st_mode & 0o777 == 0o644


def test_merge_keeps_what_each_protocol_knows_of_a_shared_asset():
    lending = small_snapshot()
    options = small_snapshot()
    options.assets.loc[options.assets["symbol"] == "WETH", "iv"] = 0.78
    lending.assets.loc[lending.assets["symbol"] == "USDC", "receipt_of"] = ""
    options.assets.loc[options.assets["symbol"] == "USDC", "receipt_of"] = "aave-v3:" + WETH
    merged = lending.merge(options).assets.set_index("symbol")
    assert len(merged) == 2
    assert merged.loc["WETH", "iv"] == 0.78
    assert merged.loc["USDC", "receipt_of"] == "aave-v3:" + WETH


def test_merging_at_once_is_merging_in_turn():
    parts = [small_snapshot() for _ in range(3)]
    parts[1].assets.loc[parts[1].assets["symbol"] == "WETH", "iv"] = 0.5
    parts[2].assets.loc[parts[2].assets["symbol"] == "WETH", "iv"] = 0.9
    parts[2].assets.loc[parts[2].assets["symbol"] == "USDC", "receipt_of"] = "aave-v3:" + WETH
    parts[1].positions["account"] = "0x" + "11" * 20     # another account's rows in the second part
    for k, part in enumerate(parts):
        part.meta["protocols"] = {"aave-v3": {f"market-{k}": {"pool": k}}, f"only-{k}": {"m": {}}}
    at_once = parts[0].merge(parts[1], parts[2])
    in_turn = parts[0].merge(parts[1]).merge(parts[2])
    assert at_once.meta == in_turn.meta and len(at_once.meta["protocols"]["aave-v3"]) == 3
    for name in ("assets", "markets", "positions", "accounts"):
        assert at_once.table(name).equals(in_turn.table(name)), name
    assert at_once.assets.set_index("symbol").loc["WETH", "iv"] == 0.5
    assert len(at_once.positions) > len(parts[0].positions)     # the second part's account is in
    bad = small_snapshot()
    bad.meta["block_number"] = 1
    with pytest.raises(ContagionError, match="different block_number"):
        parts[0].merge(parts[1], bad)


FLAT_JSON_TEXTS = [
    '{}', ' {} ', '{"a": 1}', '{"a":-0.5e-3,"b":true,"c":null,"d":false}', '{"a": ["0xab", "0xcd"]}', '{"a": []}',
    '{"é": "ü"}', '{"a": 1, "a": 2}', '\n{"a":\t"b"}\r',
    # not JSON objects, or JSON only by a route the flat grammar leaves to the parser
    '', '{', '{"a": 01}', '{"a": 1,}', '{"a": [,]}', '{"a": "\x01"}', '{"a": "\\n"}', '{"a": [1]}', '{"a": {}}',
    '[{}]', '{} {}', '{"a": NaN}', '{"a" 1}', '{a: 1}', "{'a': 1}", '{"a": .5}', '{"a": 1.}', '{"a": +1}',
    '\x0b{}', '{"a": "b"', '"{}"', '{"a": ["b",]}', '{"a": 1e}', '{"a": -}',
]


def parses_as_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FLAT_JSON_TEXTS) | st.text(alphabet='{}[]":,-.0123456789eEtrufalsn \t\n\x01ab\\', max_size=30))
def test_the_flat_json_fast_path_takes_only_json_objects(text):
    """validate's regex over params: whatever it matches json.loads reads as an object (the rest is
    parsed), so a snapshot's params are rejected exactly when they are not a JSON object."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from analyzer.model import FLAT_JSON_OBJECT

    matched = pc.match_substring_regex(pa.array([text]), FLAT_JSON_OBJECT)[0].as_py()
    assert not matched or parses_as_object(text)
    snap = small_snapshot()
    snap.markets.loc[0, "params"] = text
    if text and not parses_as_object(text):
        with pytest.raises(ContagionError, match="JSON object"):
            snap.validate()
    else:
        snap.validate()


def test_the_flat_json_fast_path_matches_what_plugins_write():
    import pyarrow as pa
    import pyarrow.compute as pc

    from analyzer.model import FLAT_JSON_OBJECT

    written = ['{"collateral_off": [], "user_configuration": "140737488355330"}',
               '{"principal": "-12", "assets_in": 3, "is_liquidatable": false}',
               json.dumps({"entered": ["0x" + "ab" * 20, "0x" + "cd" * 20]}), json.dumps({"x": 0.0, "y": "z"})]
    assert pc.match_substring_regex(pa.array(written), FLAT_JSON_OBJECT).to_pylist() == [True] * len(written)
    assert all(json.loads(t) for t in written)


NUMBERS = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-2**64, 2**64) | st.booleans() | st.none()
           | st.sampled_from(["1.5", "x", "", "7"]))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["float64", "int64", "bool"]), st.lists(NUMBERS, max_size=6),
       st.sampled_from(["float", "int", "bool", "mixed"]))
def test_number_columns_are_what_pandas_makes_of_them(dtype, values, kind):
    """A reader's column of numbers as the table's dtype: the values (or the error) pandas'
    ``astype`` gives, whether the fast path (Python numbers of the column's own kind) takes it or not."""
    import numpy as np

    from analyzer.model import _number_column
    if kind != "mixed":     # mostly one kind of value, as readers give them
        values = [v for v in values if type(v).__name__ == kind]
    try:
        want = pd.Series(values).astype(dtype).to_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        with pytest.raises(type(exc)):
            _number_column(values, dtype)
        return
    got = _number_column(values, dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))     # bit for bit (NaN, -0.0)


def test_a_snapshot_of_typed_tables_is_the_snapshot_of_them():
    """``Snapshot.of_tables`` of tables made by ``to_table``: the same tables a Snapshot makes."""
    from analyzer.model import to_table

    snap = small_snapshot()
    tables = {"assets": to_table("assets", snap.assets.to_dict("records")),
              "positions": to_table("positions", snap.positions.to_dict("records"))}
    fast = Snapshot.of_tables({"chain_id": 1, "block_number": 1}, tables)
    slow = Snapshot(meta={"chain_id": 1, "block_number": 1}, **tables)
    for name in TABLES:
        pd.testing.assert_frame_equal(fast.table(name), slow.table(name))
    assert fast.meta == slow.meta
    fast.validate()
