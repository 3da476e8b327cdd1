"""Row keys as integers (analyzer/rowkeys.py): two rows get the same code exactly when pandas
holds their keys equal (``DataFrame.duplicated``, ``groupby(dropna=False)``: NA equal to NA and to
nothing else), whatever the columns are made of: Arrow text in chunks (a chunk of one repeated
value included), Python objects with None and NaN, integers; and ``Snapshot.validate`` names the
same duplicate as before, in every table."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analyzer.rowkeys as rowkeys
from analyzer.errors import ContagionError
from analyzer.model import KEYS, Snapshot
from analyzer.rowkeys import column_codes, column_hashes, has_duplicate_keys, row_codes

TEXTS = ["", "a", "b", "0x" + "ab" * 20, "é", "aave-v3"]     # few values: rows repeat often


def arrow_column(values: list, cuts: list[int]) -> pd.arrays.ArrowStringArray:
    """``values`` as Arrow text in chunks cut at ``cuts`` (empty chunks where cuts repeat)."""
    bounds = [0, *sorted(min(c, len(values)) for c in cuts), len(values)]
    chunks = [pa.array(values[a:b], type=pa.large_string()) for a, b in zip(bounds, bounds[1:], strict=False)]
    return pd.arrays.ArrowStringArray(pa.chunked_array(chunks, type=pa.large_string()))


@st.composite
def key_frames(draw):
    """A frame of 0..40 rows and 1..7 key columns, each of one kind: Arrow text in chunks (runs of
    one value among them), Python objects (None and NaN included), int64."""
    rows = draw(st.integers(0, 40))
    columns = {}
    for index in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["arrow", "arrow-na", "runs", "objects", "int"]))
        cuts = draw(st.lists(st.integers(0, rows), max_size=4))
        if kind == "int":
            values = draw(st.lists(st.integers(-2, 2) | st.sampled_from([2**62, -2**63]), min_size=rows, max_size=rows))
            columns[f"k{index}"] = np.array(values, dtype=np.int64)
        elif kind == "objects":
            values = draw(st.lists(st.sampled_from([*TEXTS, None, np.nan]), min_size=rows, max_size=rows))
            columns[f"k{index}"] = pd.array(values, dtype=object)
        elif kind == "runs":    # whole chunks of one value, as a reader's protocol and market columns
            bounds = [0, *sorted(cuts), rows]
            values = [draw(st.sampled_from(TEXTS)) for a, b in zip(bounds, bounds[1:], strict=False) for _ in range(a, b)]
            columns[f"k{index}"] = arrow_column(values, cuts)
        else:
            pool = [*TEXTS, None] if kind == "arrow-na" else TEXTS
            columns[f"k{index}"] = arrow_column(draw(st.lists(st.sampled_from(pool), min_size=rows, max_size=rows)), cuts)
    return pd.DataFrame(columns)


def same_partition(codes: np.ndarray, groups: np.ndarray) -> bool:
    """Whether two labellings of the rows put the same rows together."""
    pairs = set(zip(codes.tolist(), groups.tolist(), strict=True))
    return len(pairs) == len(set(codes.tolist())) == len(set(groups.tolist()))


@pytest.mark.parametrize("few_rows", [0, rowkeys.FEW_ROWS])   # hashed, and (few rows) as a set of tuples
@settings(max_examples=400, deadline=None)
@given(frame=key_frames())
def test_rows_share_a_code_exactly_when_pandas_holds_their_keys_equal(few_rows, frame):
    keys = list(frame.columns)
    with patch.object(rowkeys, "FEW_ROWS", few_rows):
        assert has_duplicate_keys(frame, keys) == bool(frame.duplicated(keys).any())
    codes = row_codes(frame, keys)
    assert codes.dtype == np.int64 and len(codes) == len(frame)
    assert same_partition(codes, frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy())


def test_keys_too_many_for_one_int64_are_renumbered_on_the_way():
    """Eight columns of 10^3 values each: 10^24 combinations, past int64; the codes are renumbered
    before they overflow, and a duplicate planted in the last row is still found, and only it."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({f"k{i}": arrow_column([f"v{v}" for v in rng.integers(0, 1000, 5000)], [2500])
                          for i in range(8)})
    assert not has_duplicate_keys(frame, list(frame.columns))
    frame = pd.concat([frame, frame.iloc[[1234]]], ignore_index=True)
    assert has_duplicate_keys(frame, list(frame.columns))
    assert (frame.duplicated(list(frame.columns), keep=False).to_numpy().nonzero()[0] == [1234, 5000]).all()
    codes = row_codes(frame, list(frame.columns))
    assert codes[1234] == codes[5000] and len(set(codes.tolist())) == 5000


def test_a_column_of_one_repeated_value_has_one_code_and_na_its_own():
    codes, count = column_codes(pd.Series(arrow_column(["x"] * 5 + ["y", None, None], [5, 5])))
    assert codes.tolist()[:5] == [codes[0]] * 5 and codes[6] == codes[7] != codes[5] != codes[0]
    assert count == 3
    codes, count = column_codes(pd.Series([None, np.nan, "", "x"], dtype=object))
    assert codes[0] == codes[1] != codes[2] != codes[3] and count == 3


WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
ROWS = {
    "assets": {"address": WETH, "symbol": "WETH", "decimals": 18, "price_usd": 3000.0},
    "markets": {"protocol": "aave-v3", "market": POOL, "asset": WETH, "params": "{}"},
    "accounts": {"protocol": "aave-v3", "market": POOL, "account": "0x" + "11" * 20, "params": "{}"},
    "positions": {"protocol": "aave-v3", "market": POOL, "account": "0x" + "11" * 20, "asset": WETH,
                  "side": "debt", "amount": 1.0, "raw": "1"},
    "options": {"protocol": "lyra", "market": POOL, "account": "0x" + "11" * 20, "position_id": 7, "kind": "call",
                "strike": 3000.0, "expiry": 1, "size": 1.0, "side": "long", "collateral_asset": WETH,
                "collateral": 0.0, "raw_size": "1", "raw_collateral": "0"},
    "hedgers": {"protocol": "lyra", "market": POOL, "asset": WETH},
    "venues": {"protocol": "uniswap-v3", "venue": POOL, "asset": WETH, "quote_asset": WETH, "model": "linear",
               "params": "{}"},
    "option_instruments": {"venue": "deribit", "instrument": "ETH-1-C", "currency": "ETH", "asset": WETH,
                           "kind": "call", "strike": 1.0, "expiry": 1, "as_of": 1, "open_interest": 1.0,
                           "mark_iv": 0.5, "underlying_price": 1.0, "dealer_position": 0.0},
}


@pytest.mark.parametrize("name", list(KEYS))
def test_validate_names_the_first_duplicate_of_every_table(name):
    """A table holding one key twice (among other rows, their keys differing by one column) is
    refused with the message pandas' ``duplicated`` gave: the first row of the pair, its key."""
    rows = [ROWS[name]]
    for key in KEYS[name]:        # a neighbour row for each key column: unique, all but that column shared
        value = ROWS[name].get(key, "")
        other = "collateral" if key == "side" else value + 1 if isinstance(value, int) else f"{value}x"
        rows.append(dict(ROWS[name], **{key: other}))
    assets = [ROWS["assets"], dict(ROWS["assets"], address=f"{WETH}x")]    # the neighbours' asset too
    tables = {"assets": assets, "markets": [ROWS["markets"]]} | {name: rows}
    snapshot = Snapshot(meta={"chain_id": 1, "block_number": 1}, **tables)
    snapshot.validate()     # unique keys: sound
    frame = pd.concat([snapshot.table(name), snapshot.table(name).iloc[[0]]], ignore_index=True)
    setattr(snapshot, name, frame)
    first = frame.loc[frame.duplicated(list(KEYS[name]), keep=False)].iloc[0]
    want = f"{name}: duplicate key {', '.join(f'{k}={first[k]}' for k in KEYS[name])}"
    with pytest.raises(ContagionError) as raised:
        snapshot.validate()
    assert str(raised.value) == want


# texts around the 8-byte words the hash reads: shorter, as long, longer; differing at the start, the
# middle (which a long text's three words may not read) or the end
SHAPES = ["", "a", "ab", "abcdefg", "abcdefgh", "abcdefgx", "xbcdefgh", "abcdefghi", "0x" + "ab" * 20,
          "0x" + "ab" * 19 + "ac", "0x" + "ab" * 10 + "cd" + "ab" * 9, "0x" + "a" * 60, "0x" + "a" * 29 + "b" * 31,
          "é" * 5, "aave-v3", "comet"]


@st.composite
def text_columns(draw):
    """A text column as Arrow chunks of many kinds: one text repeated, texts of one length (read in
    place), of many lengths (dictionary-encoded), slices of a larger array (offset), string and
    large_string, buffers exactly as long as their texts (no padding to read past)."""
    chunks = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["repeated", "one-width", "any", "sliced", "unpadded"]))
        size = draw(st.integers(0, 12))
        if kind == "repeated":
            values = [draw(st.sampled_from(SHAPES))] * size
        elif kind == "one-width":
            width = draw(st.sampled_from([0, 1, 7, 8, 9, 42]))
            values = draw(st.lists(st.sampled_from([t for t in SHAPES if len(t.encode()) == width] or [""]),
                                   min_size=size, max_size=size))
        else:
            values = draw(st.lists(st.sampled_from(SHAPES), min_size=size, max_size=size))
        kind_type = draw(st.sampled_from([pa.string(), pa.large_string()]))
        if kind == "sliced":
            lead = draw(st.lists(st.sampled_from(SHAPES), max_size=3))
            chunk = pa.array(lead + values + lead, type=kind_type).slice(len(lead), len(values))
        elif kind == "unpadded":
            data = "".join(values).encode()
            offsets = np.cumsum([0] + [len(v.encode()) for v in values]).astype(
                np.int64 if kind_type == pa.large_string() else np.int32)
            chunk = pa.Array.from_buffers(kind_type, len(values), [None, pa.py_buffer(offsets.tobytes()),
                                                                   pa.py_buffer(data)])
        else:
            chunk = pa.array(values, type=kind_type)
        chunks.append(chunk.cast(pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(chunks, type=pa.large_string())))


@settings(max_examples=300, deadline=None)
@given(text_columns())
def test_equal_texts_hash_alike_in_every_kind_of_chunk(column):
    """The hash of a text is a function of the text alone, whatever chunk holds it; and the texts
    here (each of their distinct words read) hash apart except where they are equal."""
    hashes = column_hashes(column).tolist()
    texts = column.tolist()
    by_text = {}
    for text, hashed in zip(texts, hashes, strict=True):
        assert by_text.setdefault(text, hashed) == hashed
    assert len(set(by_text.values())) >= len(by_text) - (1 if "0x" + "ab" * 10 + "cd" + "ab" * 9 in by_text else 0)


def test_rows_whose_hashes_collide_are_compared_exactly(monkeypatch):
    """Every row of one hash (a collision of all): the duplicate is still the rows' exact keys."""
    import analyzer.rowkeys as rowkeys
    monkeypatch.setattr(rowkeys, "row_hashes", lambda frame, keys: np.zeros(len(frame), dtype=np.uint64))
    frame = pd.DataFrame({"a": arrow_column(["x", "y", "x"], []), "b": arrow_column(["1", "1", "2"], [])})
    assert not has_duplicate_keys(frame, ["a", "b"])
    assert has_duplicate_keys(frame, ["a"])
    assert has_duplicate_keys(pd.concat([frame, frame.iloc[[1]]], ignore_index=True), ["a", "b"])


@pytest.mark.parametrize("few_rows", [0, rowkeys.FEW_ROWS])
@settings(max_examples=300, deadline=None)
@given(columns=st.lists(text_columns(), min_size=1, max_size=3))
def test_duplicates_by_hash_are_pandas_duplicates(few_rows, columns):
    """Over columns of every kind of chunk: a duplicate key exactly where pandas finds one."""
    rows = min(len(c) for c in columns)
    frame = pd.DataFrame({f"k{i}": pd.Series(c.array[:rows]) for i, c in enumerate(columns)})
    with patch.object(rowkeys, "FEW_ROWS", few_rows):
        assert has_duplicate_keys(frame, list(frame.columns)) == bool(frame.duplicated(list(frame.columns)).any())


@settings(max_examples=300, deadline=None)
@given(columns=st.lists(text_columns(), min_size=2, max_size=3), which=st.integers(0, 2))
def test_codes_given_for_a_column_find_the_same_duplicates(columns, which):
    """A key column given as codes (its values' places in a list of them, pandas' factorize here)
    in place of its text: a duplicate exactly where pandas finds one over the texts."""
    rows = min(len(c) for c in columns)
    frame = pd.DataFrame({f"k{i}": pd.Series(c.array[:rows]) for i, c in enumerate(columns)})
    key = f"k{which % len(columns)}"
    codes = {key: pd.factorize(frame[key].astype(object))[0].astype(np.int64)}
    with patch.object(rowkeys, "FEW_ROWS", 0):
        assert has_duplicate_keys(frame, list(frame.columns), codes) == bool(frame.duplicated(list(frame.columns)).any())
