"""Row keys as integers: whether a table's key columns repeat, decided on integer codes.

``DataFrame.duplicated(keys)`` factorizes every key column (a hash of each value) and then hashes
the combined codes: over the six text columns of a mainnet-scale snapshot's 2·10^5 positions
that was half of ``Snapshot.validate`` (55 of 106 ms of a rescan; here 94 -> 49 ms, measured
on a loaded machine). Here each column becomes
codes once (Arrow's ``dictionary_encode``; a chunk of one repeated value, as a reader's protocol
and market columns are, is one comparison rather than a hash per row), the codes are combined into
one int64 per row and sorted: equal rows are then neighbours. Values compare as ``duplicated``
compares them: NA equal to NA, nothing else equal to NA.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

INT64_CODES = 2 ** 63     # combined codes stay below this: products of more are renumbered first


def has_duplicate_keys(frame: pd.DataFrame, keys: Sequence[str]) -> bool:
    """Whether two rows of ``frame`` hold the same values in ``keys``
    (``frame.duplicated(keys).any()``)."""
    if len(frame) < 2:
        return False
    codes = np.sort(row_codes(frame, keys))
    return bool((codes[1:] == codes[:-1]).any())


def row_codes(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """One int64 per row, equal exactly where the rows' ``keys`` are equal: each column's codes in
    turn as the digits of a mixed-radix number (as pandas' ``get_group_index``), renumbered densely
    where the next column's would overflow it."""
    combined, size = np.zeros(len(frame), dtype=np.int64), 1
    for key in keys:
        codes, count = column_codes(frame[key])
        if size * count >= INT64_CODES:
            distinct, combined = np.unique(combined, return_inverse=True)
            size = len(distinct)
        combined, size = combined * count + codes, size * count
    return combined


def column_codes(column: pd.Series) -> tuple[np.ndarray, int]:
    """(int64 code per value, the number of codes): equal values, and all NA, one code each."""
    if isinstance(column.array, pd.arrays.ArrowExtensionArray):
        values = column.array.__arrow_array__()     # its chunks, as they are
        if pa.types.is_dictionary(values.type):     # its chunks' dictionaries may differ: by value
            values = values.cast(values.type.value_type)
        return _arrow_codes(values)
    codes, uniques = pd.factorize(column.array)     # NA: -1
    return codes.astype(np.int64) + 1, len(uniques) + 1


def _arrow_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Codes of an Arrow column from one ``dictionary_encode`` (one dictionary for all its chunks),
    a chunk of one value shown to it as that value once, its code then repeated."""
    constant = [_is_constant(chunk) for chunk in column.chunks]
    shown = [chunk[:1] if one else chunk for chunk, one in zip(column.chunks, constant, strict=True)]
    encoded = pa.chunked_array(shown, type=column.type).dictionary_encode(null_encoding="encode")
    if not encoded.num_chunks:
        return np.zeros(0, dtype=np.int64), 0
    codes = np.concatenate([part.indices.to_numpy() for part in encoded.chunks]).astype(np.int64)
    if any(constant):
        codes = np.repeat(codes, np.concatenate([[len(chunk)] if one else np.ones(len(chunk), dtype=np.int64)
                                                 for chunk, one in zip(column.chunks, constant, strict=True)]))
    return codes, len(encoded.chunk(0).dictionary)


def _is_constant(chunk: pa.Array) -> bool:
    """Whether ``chunk`` is one value (not NA) repeated: its ends first, most chunks differ there."""
    if len(chunk) < 2 or chunk.null_count or chunk[0] != chunk[-1]:
        return False
    return bool(pc.all(pc.equal(chunk, chunk[0])).as_py())
