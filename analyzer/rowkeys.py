"""Row keys as integers: whether a table's key columns repeat, decided on integer codes.

``DataFrame.duplicated(keys)`` factorizes every key column (a hash of each value) and then hashes
the combined codes: over the six text columns of a mainnet-scale snapshot's 2·10^5 positions
that was half of ``Snapshot.validate`` (55 of 106 ms of a rescan; here 94 -> 49 ms, measured
on a loaded machine). Here each column becomes
codes once (Arrow's ``dictionary_encode``; a chunk of one repeated value, as a reader's protocol
and market columns are, is one comparison rather than a hash per row), the codes are combined into
one int64 per row and sorted: equal rows are then neighbours. Values compare as ``duplicated``
compares them: NA equal to NA, nothing else equal to NA.

Whether a table has a duplicate key at all is first asked of a hash of each row (:func:`row_hashes`:
a few 8-byte words of each text read in place by numpy, no hash table): equal keys have equal
hashes, so only the rows whose hash repeats can hold a duplicate, and those few (none, in a sound
snapshot) are compared exactly by their codes. The codes of the 2·10^5 positions' six key columns
took 52 ms, their hashes 25 (the 10^5 accounts' three: 20 ms, 7; a loaded machine); the whole
``Snapshot.validate`` of a rescan's snapshot 161 -> 109 ms, in turn in one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

INT64_CODES = 2 ** 63     # combined codes stay below this: products of more are renumbered first


def has_duplicate_keys(frame: pd.DataFrame, keys: Sequence[str], codes: Mapping[str, np.ndarray] | None = None) -> bool:
    """Whether two rows of ``frame`` hold the same values in ``keys``
    (``frame.duplicated(keys).any()``): the rows whose hash repeats, compared exactly. ``codes``:
    integers for some key columns, equal exactly where their values are (the caller's, e.g. each
    value's place in the list of the values allowed), hashed in place of the values."""
    if len(frame) < 2:
        return False
    if len(frame) <= FEW_ROWS and all(_exact_values(frame[key]) for key in keys):
        return len(set(zip(*(frame[key].tolist() for key in keys), strict=True))) < len(frame)
    ordered = row_hashes(frame, keys, codes)
    ordered.sort()      # in place: the rows' order is hashed again only where two hashes are equal
    repeats = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeats):
        return False
    return _has_equal_rows(frame.iloc[np.flatnonzero(np.isin(row_hashes(frame, keys, codes), repeats))], keys)


FEW_ROWS = 4096   # a table this small: its keys as a set of tuples (a market table's 63 rows: 0.1 ms, not 3)


def _exact_values(column: pd.Series) -> bool:
    """Whether ``column``'s Python values compare as ``duplicated`` compares the column's: Arrow
    text without NA (str), int64 (int); NA and floats (NaN) are left to the codes."""
    values = column.array
    if isinstance(values, pd.arrays.ArrowStringArray):
        return not values.__arrow_array__().null_count
    return column.dtype == np.int64


def _has_equal_rows(frame: pd.DataFrame, keys: Sequence[str]) -> bool:
    codes = np.sort(row_codes(frame, keys))
    return bool((codes[1:] == codes[:-1]).any())


def row_hashes(frame: pd.DataFrame, keys: Sequence[str], codes: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """One uint64 per row, equal where the rows' ``keys`` are equal (and, rarely, elsewhere): the
    key columns' hashes in turn as the digits of a polynomial, ``h·K + column's``. Computed in two
    arrays of the table's length, not a new one per step: at 2·10^5 rows each new array's pages
    cost as much as the arithmetic on it."""
    combined = np.zeros(len(frame), dtype=np.uint64)
    scratch = np.empty(len(frame), dtype=np.uint64)
    for key in keys:
        combined *= _ODD[0]
        if codes is not None and key in codes:
            combined += codes[key].astype(np.uint64, copy=False)
        else:
            _add_column_hashes(frame[key], combined, scratch)
    return combined


# odd 64-bit multipliers (the golden ratio, MurmurHash3's finaliser's): multiplying by one is a bijection
_ODD = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53),
        np.uint64(0xD6E8FEB86659FD93))
_WORD = 8


def column_hashes(column: pd.Series) -> np.ndarray:
    """uint64 per value, equal for equal values (all NA alike): Arrow text without NA from its
    bytes (:func:`_add_text_hashes`), any other column its exact codes."""
    hashes = np.zeros(len(column), dtype=np.uint64)
    _add_column_hashes(column, hashes, np.empty(len(column), dtype=np.uint64))
    return hashes


def _add_column_hashes(column: pd.Series, into: np.ndarray, scratch: np.ndarray) -> None:
    """:func:`column_hashes` added to ``into`` (``scratch``, as long, is overwritten)."""
    if isinstance(column.array, pd.arrays.ArrowExtensionArray):
        values = column.array.__arrow_array__()
        if (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)) and not values.null_count:
            at = 0
            for chunk in values.chunks:
                _add_text_hashes(chunk, into[at:at + len(chunk)], scratch[at:at + len(chunk)])
                at += len(chunk)
            return
    into += column_codes(column)[0].astype(np.uint64)


def _add_text_hashes(chunk: pa.Array, into: np.ndarray, scratch: np.ndarray) -> None:
    """Add the hash of each text of ``chunk`` (no NA) to ``into``: a function of the text alone (so
    equal in every chunk where the texts are), of its length and three 8-byte words of it, the
    first, the middle and the last (a text under 8 bytes: its bytes, zero-extended, thrice). Texts
    all of one length (the addresses) are read in place, a word of every row at once, and a chunk
    of one text repeated (a reader's protocol and market) hashes it once; others are
    dictionary-encoded first (a few distinct values: side, reserve) and their distinct values hashed."""
    count = len(chunk)
    if not count:
        return
    offsets = _offsets(chunk)
    start, end = int(offsets[0]), int(offsets[-1])
    width = (end - start) // count
    if width * count != end - start or \
            not (np.subtract(offsets[1:], offsets[:-1], out=scratch.view(np.int64)) == width).all():
        encoded = chunk.dictionary_encode()
        into += np.take(_distinct_hashes(encoded.dictionary), encoded.indices.to_numpy(zero_copy_only=False),
                        out=scratch)
        return
    if _one_text(chunk.buffers()[2], start, width, count):
        into += _distinct_hashes(chunk[:1])[0]
        return
    if width < _WORD:      # words past a text: read from a copy padded with zeros where the buffer ends
        data = _padded(chunk.buffers()[2], start, end)
        into += _word_hashes(np.uint64(width), [np.ndarray((count,), dtype="<u8", buffer=data, offset=start,
                                                           strides=(width,))] * 3)
        return
    last = width - _WORD    # every word within its text: the buffer read as it is
    words = [np.ndarray((count,), dtype="<u8", buffer=chunk.buffers()[2], offset=start + at, strides=(width,))
             for at in (0, last // 2, last)]
    # _word_hashes of one length, in ``scratch``
    np.multiply(words[0], _ODD[0], out=scratch)
    scratch += words[1]
    scratch *= _ODD[1]
    scratch += words[2]
    scratch *= _ODD[2]
    scratch += np.uint64(width)
    into += scratch


def _one_text(data: pa.Buffer | None, start: int, width: int, count: int) -> bool:
    """Whether ``count`` texts of ``width`` bytes from ``start`` are one text repeated: their ends
    compared first (most chunks of addresses differ there), then each with the next at once (the
    bytes against themselves a text later)."""
    if data is None or not width:
        return True
    if not data.slice(start, width).equals(data.slice(start + (count - 1) * width, width)):
        return False
    return data.slice(start, (count - 1) * width).equals(data.slice(start + width, (count - 1) * width))


def _distinct_hashes(texts: pa.Array) -> np.ndarray:
    """The text hashes of texts of any lengths: each word gathered from where it starts."""
    offsets = _offsets(texts)
    lengths = np.diff(offsets)
    data = _padded(texts.buffers()[2], int(offsets[0]), int(offsets[-1]))
    words_at = np.ndarray((len(data) - _WORD + 1,), dtype="<u8", buffer=data, strides=(1,))  # at every byte
    last = np.maximum(lengths, _WORD) - _WORD
    starts = offsets[:-1]
    words = [words_at[at] for at in (starts, starts + last // 2, starts + last)]
    return _word_hashes(lengths.astype(np.uint64), words)


def _word_hashes(lengths: np.ndarray | np.uint64, words: list[np.ndarray]) -> np.ndarray:
    """The hash of texts of ``lengths`` (one, or each its own) from their three words, those of
    texts under 8 bytes cut to them: ``((w0·K0 + w1)·K1 + w2)·K2 + length``."""
    if (np.asarray(lengths) < _WORD).any():
        keep = (np.uint64(1) << (np.minimum(lengths, _WORD) * np.uint64(8) % np.uint64(64))) - np.uint64(1)
        keep = np.where(lengths < _WORD, keep, ~np.uint64(0))
        words = [word & keep for word in words]
    hashed = words[0] * _ODD[0]
    hashed += words[1]
    hashed *= _ODD[1]
    hashed += words[2]
    hashed *= _ODD[2]
    hashed += lengths
    return hashed


def _offsets(texts: pa.Array) -> np.ndarray:
    """The int64 offsets of ``texts`` (a large_string's as they are, read-only)."""
    wide = pa.types.is_large_string(texts.type)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64 if wide else np.int32, count=len(texts) + 1,
                            offset=texts.offset * (8 if wide else 4))
    return offsets.astype(np.int64, copy=False)


def _padded(data: pa.Buffer | None, start: int, end: int) -> pa.Buffer | np.ndarray:
    """The text bytes, readable a word past ``end``: the buffer as it is where it is long enough
    (Arrow pads its buffers), else the bytes from ``start`` copied at the same places, zeros after."""
    if data is not None and data.size >= end + _WORD:
        return data
    padded = np.zeros(end + _WORD, dtype=np.uint8)
    if data is not None and end > start:
        padded[start:end] = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
    return padded


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
