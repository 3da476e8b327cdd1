"""A table given as columns (:data:`analyzer.model.Columns`, the lens readers' rows) is the table of
the same rows given as dicts, as the frame of dicts built it: columns, their order, dtypes and
every value (text exactly); a lens scan served from its cached chunks is the same snapshot."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.errors import ContagionError
from analyzer.model import TABLES, concat_tables, to_table
from analyzer.scan import ScanStats, scan
from analyzer.scan_chunks import ChunkCache
from protocols import plugins
from tests.conftest import requires_anvil

DEFAULTS = {"string": "", "float64": np.nan, "int64": 0, "bool": False}


def reference_table(name: str, rows: list[dict]) -> pd.DataFrame:
    """The frame of row dicts as the snapshot built it before columns (the reference twin):
    ``pd.DataFrame(rows)``, missing columns defaulted, text as ``str(value)`` ("" for None/NaN)."""
    schema = TABLES[name]
    frame = pd.DataFrame(rows)
    for col, dtype in schema.items():
        if col not in frame.columns:
            frame[col] = DEFAULTS[dtype] if len(frame) else pd.Series(dtype=dtype)
    frame = frame[list(schema)]
    for col, dtype in schema.items():
        if dtype == "string":
            frame[col] = frame[col].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                        else str(v)).astype("string")
        else:
            frame[col] = frame[col].astype(dtype)
    return frame.reset_index(drop=True)


def as_columns(rows: list[dict], keys) -> dict[str, list]:
    """The rows as columns (every row has ``keys``)."""
    return {key: [row[key] for row in rows] for key in keys}


def same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert [str(d) for d in got.dtypes] == [str(d) for d in want.dtypes]
    pd.testing.assert_frame_equal(got, want, check_exact=True)


TEXT = st.text(max_size=12)     # any text: non-ASCII, empty, digits
ADDRESS = st.sampled_from(["0x" + "ab" * 20, "0x5FbDB2315678afecb367f032d93F642f64180aa3", "0xC8E1f264b59AF8F923e5A1635D51758c7CE03ca3"])
POSITION = st.fixed_dictionaries({
    "protocol": st.sampled_from(["aave-v3", "compound-v2"]), "market": ADDRESS, "account": ADDRESS | TEXT,
    "asset": ADDRESS, "side": st.sampled_from(["collateral", "debt"]),
    "amount": st.floats(allow_nan=True, allow_infinity=False) | st.none() | st.integers(0, 2**40),
    "raw": st.integers(0, 2**256 - 1).map(str) | TEXT | st.none()})
ACCOUNT = st.fixed_dictionaries({"protocol": TEXT, "market": ADDRESS, "account": ADDRESS,
                                 "category": st.integers(0, 255), "params": TEXT | st.none()})


@settings(max_examples=60, deadline=None)
@given(st.lists(POSITION, max_size=30), st.lists(ACCOUNT, max_size=30))
def test_columns_are_the_table_of_the_same_rows_as_dicts(positions, accounts):
    for name, rows, keys in (("positions", positions, POSITION_KEYS), ("accounts", accounts, ACCOUNT_KEYS)):
        same(to_table(name, as_columns(rows, keys)), reference_table(name, rows))
        same(to_table(name, rows), reference_table(name, rows))


POSITION_KEYS = ("protocol", "market", "account", "asset", "side", "amount", "raw")   # reserve: left to its default

# any value a plugin may put in a row: text, numbers of every size, NaN, None, flags, bytes
ANY_VALUE = (TEXT | ADDRESS | st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
             | st.binary(max_size=4) | st.sampled_from([float("nan"), 2**63, 2**64, -2**63 - 1, 2**256 - 1]))


def table_rows(name: str):
    """Row dicts of table ``name``, each with some of its columns (the others: a gap in that row)."""
    columns = list(TABLES[name])
    return st.lists(st.dictionaries(st.sampled_from(columns), ANY_VALUE, max_size=len(columns)), max_size=8)


def outcome(convert):
    """The table ``convert()`` returns, or the error it raises (its type and message)."""
    try:
        return convert()
    except Exception as exc:  # noqa: BLE001 - the outcome compared is whatever is raised
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["markets", "assets", "positions", "options", "option_instruments"]).flatmap(
    lambda name: st.tuples(st.just(name), table_rows(name))))
def test_row_dicts_with_gaps_are_the_table_of_their_frame(name_rows):
    """Row dicts go column by column (:func:`analyzer.model._columns_of`): the table, or the error,
    is the one of the frame ``pd.DataFrame(rows)`` they made before (a key a row lacks is NaN there:
    a flag True, a number NaN, text "")."""
    name, rows = name_rows
    got, want = outcome(lambda: to_table(name, rows)), outcome(lambda: to_table(name, pd.DataFrame(rows)))
    if isinstance(want, pd.DataFrame):
        assert isinstance(got, pd.DataFrame), got
        same(got, want)
    else:
        assert got == want


def test_a_flag_missing_from_a_row_is_true_as_in_the_frame_of_rows():
    rows = [{"protocol": "p", "asset": "0xA", "isolated": False}, {"protocol": "p", "asset": "0xB"}]
    table = to_table("markets", rows)
    assert table["isolated"].tolist() == [False, True] and table["borrowable"].tolist() == [False, False]

ACCOUNT_KEYS = ("protocol", "market", "account", "category", "params")


def test_text_that_is_not_a_string_is_written_as_the_frame_of_dicts_writes_it():
    rows = [{"account": "0xA", "raw": 12, "side": "debt", "amount": 1.5},
            {"account": b"0xB", "raw": float("nan"), "side": None, "amount": None},
            {"account": "é", "raw": "7", "side": "collateral", "amount": 2}]
    same(to_table("positions", as_columns(rows, ("account", "raw", "side", "amount"))),
         reference_table("positions", rows))


def test_empty_columns_and_no_columns_are_the_empty_table():
    want = reference_table("positions", [])
    same(to_table("positions", {}), want)
    same(to_table("positions", {col: [] for col in TABLES["positions"]}), want)
    same(concat_tables("positions", [{}, [], {"raw": []}]), want)


def test_parts_of_either_shape_join_in_order():
    rows = [{"account": f"0x{i:02d}", "asset": "0xA", "side": "debt", "amount": i / 3, "raw": str(i)} for i in range(9)]
    keys = ("account", "asset", "side", "amount", "raw")
    parts = [as_columns(rows[:2], keys), as_columns(rows[2:4], keys), rows[4:6], [],
             as_columns(rows[6:7], keys[:-1]) | {"raw": ["6"]}, {"account": [rows[7]["account"]], "raw": ["7"]}, rows[8:]]
    want = reference_table("positions", [*rows[:7], {"account": "0x07", "raw": "7"}, rows[8]])
    same(concat_tables("positions", parts), want)
    assert parts[0]["raw"] == ["0", "1"]        # the readers' parts are left as they were


def test_columns_of_different_lengths_or_unknown_names_are_refused():
    with pytest.raises(ContagionError, match="different lengths"):
        to_table("positions", {"account": ["0xA"], "raw": []})
    with pytest.raises(ContagionError, match="unknown columns"):
        to_table("positions", {"acount": ["0xA"]})
    with pytest.raises(ContagionError, match="category"):
        to_table("accounts", {"category": [2**70]})


def test_a_chunk_of_columns_comes_back_from_the_cache_as_it_went_in(tmp_path):
    chunk = {"positions": {"account": ["0xA", "0xB"], "amount": [0.1, float("inf")], "raw": ["1", "2" * 78]},
             "accounts": {"account": [], "category": []}}
    cache = ChunkCache(tmp_path)
    cache.put("positions-x", chunk)
    back = cache.get("positions-x")
    assert back == chunk
    same(to_table("positions", back["positions"]), to_table("positions", chunk["positions"]))


@requires_anvil
def test_a_lens_scan_from_its_cached_chunks_is_the_same_snapshot(devnet, tmp_path):
    """Through the lens (columns), read then again from the cache: the same tables row for row,
    and the Multicall3 reading's (row dicts) up to order."""
    from tests.test_scan import tables_equal

    lenders = [p for name, p in plugins().items() if name in ("aave-v3", "compound-v2", "comet")]
    block = devnet.w3.eth.block_number
    first, again = ScanStats(), ScanStats()
    read = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, oracle_paths=False, stats=first)
    cached = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, oracle_paths=False, stats=again)
    assert first.chunks_read > 0 and again.chunks_read == 0
    for name in TABLES:
        same(cached.table(name), read.table(name))
    tables_equal(read, scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=None, oracle_paths=False,
                            use_lens=False))
    assert len(read.positions) > 300
