"""The snapshot's text columns (account names, repeated labels, JSON params, exact amounts as
decimal text) built from whole columns at once by Arrow, not a Python string per row: how the
lens readers and incremental rescans (:mod:`analyzer.kept`) label 10^5 rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Texts: TypeAlias = Sequence[str] | np.ndarray | pa.StringArray   # text columns, as given


def arrow_text(values: Texts) -> pa.StringArray:
    """Strings as Arrow strings (Arrow's conversion: about twice as fast as joining them in Python
    and building the buffers from the joined text; an array as it is, not its list: a fifth
    faster over 59,431 addresses); Arrow strings as they are."""
    if isinstance(values, pa.Array):
        return values
    return pa.array(values if isinstance(values, np.ndarray) else list(values), type=pa.string())


def text(values: Texts) -> pd.api.extensions.ExtensionArray:
    """Strings as the snapshot's string column."""
    return pd.arrays.ArrowStringArray(arrow_text(values))


def labels(names: Texts, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a string column: the names converted once and taken by Arrow (a
    rescan labels 10^5 positions with 10^4..10^5 account names: a tenth of the time of converting
    each position's name; names labelling several columns are best converted once, :func:`arrow_text`)."""
    taken = arrow_text(names).take(pa.array(np.asarray(codes, dtype=np.int64).reshape(-1)))
    return pd.arrays.ArrowStringArray(taken)


def repeated(value: str, count: int) -> pd.api.extensions.ExtensionArray:
    """``value`` ``count`` times as a string column."""
    data = value.encode()
    offsets = np.arange(count + 1, dtype=np.int32) * len(data)
    return pd.arrays.ArrowStringArray(pa.StringArray.from_buffers(count, pa.py_buffer(offsets),
                                                                   pa.py_buffer(data * count)))


def joined(*parts: str | Texts) -> pd.api.extensions.ExtensionArray:
    """Text columns (and strings, repeated) joined row by row as one string column: Arrow joins
    them, not a format string per row."""
    count = next(len(p) for p in parts if not isinstance(p, str))
    columns = [pa.scalar(p, pa.string()) if isinstance(p, str) else arrow_text(p) for p in parts]
    out = pc.binary_join_element_wise(*columns, "") if count else pa.array([], type=pa.string())
    return pd.arrays.ArrowStringArray(out)


def decimal_strings(values: np.ndarray) -> pa.StringArray:
    """Exact integers as decimal text (the snapshot's ``raw`` column), as Arrow strings: values
    within int64 in size (cToken balances, 6- and 8-decimal balances, counts) formatted by Arrow
    at once, the wider ones by ``str``; a fixed-width integer column (signed or not) by Arrow as it is."""
    if values.dtype.kind in "iu":
        return pa.array(values).cast(pa.string())
    try:
        small = np.abs(values.astype(np.float64)) < INT64_FLOATS   # its float is below 2^63: so is the integer
    except OverflowError:       # past a float64's range
        small = np.zeros(len(values), dtype=bool)
    if small.all():
        return pa.array(values.astype(np.int64)).cast(pa.string())
    if not small.any():
        return pa.array(list(map(str, values.tolist())), type=pa.string())
    return split_decimal_strings(np.where(small, values, 0).astype(np.int64), ~small, values)


def split_decimal_strings(small: np.ndarray, wide: np.ndarray, values: np.ndarray) -> pa.StringArray:
    """:func:`decimal_strings` of a column already split in two: Arrow writes the int64 ``small``
    where ``wide`` is unset, ``str`` the Python integers ``values[wide]`` (18-decimal balances)."""
    text = pa.array(small).cast(pa.string())
    if not wide.any():
        return text
    return pc.replace_with_mask(text, pa.array(wide), pa.array(list(map(str, values[wide].tolist())), type=pa.string()))


INT64_FLOATS = float(2**63)


def all_decimal(values: pa.Array | pa.ChunkedArray) -> bool:
    """Whether every text of ``values`` is ASCII digits, at least one, none NA (as Arrow's
    ``ascii_is_decimal`` holds each): each chunk's text bytes checked at once by numpy, its offsets
    rising, the bytes' least and greatest (the 2·10^5 positions' ``raw``: 0.6 ms, Arrow's check of
    each text 4 ms)."""
    for chunk in values.chunks if isinstance(values, pa.ChunkedArray) else [values]:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)) or chunk.null_count:
            return False
        if not len(chunk):
            continue
        wide = pa.types.is_large_string(chunk.type)
        offsets: np.ndarray = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if wide else np.int32,
                                            count=len(chunk) + 1, offset=chunk.offset * (8 if wide else 4))
        if not (offsets[1:] > offsets[:-1]).all():
            return False        # an empty text
        start, end = int(offsets[0]), int(offsets[-1])
        text = np.frombuffer(chunk.buffers()[2], dtype=np.uint8, count=end - start, offset=start)
        if text.min() < ord("0") or text.max() > ord("9"):     # two reductions, no array of the bytes' tests
            return False
    return True
