"""The snapshot's whole-column checks (analyzer/textcolumns.py, analyzer/model.py): each decides
as the check of every value one by one does, Python's own, on columns of every shape a scan
makes (Arrow text in chunks, sliced, string and large_string)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.model import _places_in
from analyzer.textcolumns import all_decimal

# digits and their neighbours in ASCII ('/' and ':'), Unicode digits, empty
PIECES = ["0", "7", "9", "12", "007", "", "/", ":", "１", "a", " ", "1\x00"]


@st.composite
def chunked_texts(draw, pool):
    """Texts (of ``pool``) as Arrow chunks: string or large_string, some sliced out of larger arrays,
    some with NA."""
    chunks, kind = [], draw(st.sampled_from([pa.string(), pa.large_string()]))
    for _ in range(draw(st.integers(0, 4))):
        values = draw(st.lists(pool | (st.none() if draw(st.booleans()) else st.nothing()), max_size=12))
        lead = draw(st.lists(pool, max_size=3))
        chunks.append(pa.array(lead + values + lead, type=kind).slice(len(lead), len(values)))
    return pa.chunked_array(chunks, type=kind)


@settings(max_examples=400, deadline=None)
@given(chunked_texts(st.lists(st.sampled_from(PIECES), max_size=3).map("".join)))
def test_all_decimal_is_every_text_ascii_digits(texts):
    want = all(t is not None and t != "" and all("0" <= c <= "9" for c in t) for t in texts.to_pylist())
    assert all_decimal(texts) == want
    assert all(all_decimal(chunk) == all(t is not None and t != "" and all("0" <= c <= "9" for c in t)
                                         for t in chunk.to_pylist()) for chunk in texts.chunks)


ALLOWED = ["collateral", "debt", "0x" + "ab" * 20, ""]


@settings(max_examples=300, deadline=None)
@given(chunked_texts(st.sampled_from(ALLOWED + ["loan", "0x" + "ab" * 19 + "ac"])), st.permutations(ALLOWED))
def test_places_in_are_the_values_places_or_none(texts, allowed):
    column = pd.Series(pd.arrays.ArrowStringArray(texts)) if not texts.null_count else None
    if column is None:
        return      # a snapshot's text has no NA (to_table fills it with "")
    got = _places_in(column, allowed)
    values = texts.to_pylist()
    if all(v in allowed for v in values):
        assert got is not None and got.tolist() == [allowed.index(v) for v in values]
    else:
        assert got is None


def test_places_in_leaves_other_columns_to_the_value_checks():
    assert _places_in(pd.Series(["debt"], dtype=object), ["debt"]) is None
    assert _places_in(pd.Series(["debt"], dtype="string"), [pd.NA]) is None
    assert _places_in(pd.Series([], dtype="string"), ["debt"]).tolist() == []
    assert np.array_equal(_places_in(pd.Series(["debt", "collateral"], dtype="string"), ["collateral", "debt"]), [1, 0])


def test_a_positions_table_without_its_columns_is_refused_where_it_was():
    """A table set by hand without a key column: the duplicate check of the tables before it runs
    first, as before (the places of asset and side are taken only where the columns are)."""
    import pytest

    from analyzer.errors import ContagionError
    from analyzer.model import Snapshot

    snap = Snapshot(meta={"chain_id": 1, "block_number": 1},
                    assets=[{"address": "0xA", "symbol": "A", "decimals": 18, "price_usd": 1.0}] * 2)
    snap.positions = snap.positions.drop(columns=["side"])
    with pytest.raises(ContagionError, match="assets: duplicate key address=0xA"):
        snap.validate()
