"""Exact non-negative integers wider than 64 bits as numpy columns: a scaled balance times an
index over a power of ten (Aave's ``rayMul``), its decimal text and its correctly rounded float,
over 10^5 values at once, without a Python integer operation per value.

A value is ``sum(limbs[i] * 10^(8 i))``: its limbs a ``(k, n)`` uint64 array, least significant
first, each below 10^8. Base 10^8, not a power of two: dividing by a power of ten is dropping
limbs, and a limb is the 8 ASCII digits of the decimal text (two lookups in a 10^4-entry table,
one uint64 of text); the product of two limbs (below 10^16) and thousands of them summed fit in
64 bits, so a product's columns are summed first and carried once.

Python integers come in through their float64 (one pass, exact below 2^53, and within one unit of
the quotient by 10^16 below 2^100) and, for those past int64, their low 64 bits (``& (2^64 - 1)``):
a Python operation on the wide values only (see :func:`from_ints`). Measured on 150,000 balances
(a third past 2^64), mainnet-scale Aave: see protocols/aave_v3/lens.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DIGITS = 8
BASE = 10**DIGITS
_BASE = np.uint64(BASE)
_HALF = np.uint64(10**(2 * DIGITS))         # two limbs
_LOW64 = 2**64 - 1
# below it a value's float64 is within one unit of ``value // 10^16`` (the float's error, 2^-53 of
# the value, and the division's, are below 10^16 · 2^-2 there): the float splits it in two limbs
SPLIT_FLOATS = float(2**100)
INT63_FLOATS = float(2**63)
EXACT_FLOATS = float(2**53)
# "0000".."9999" as 4 ASCII bytes each: a limb's text is two of them
_FOUR_DIGITS = np.frombuffer(b"".join(b"%04d" % i for i in range(10**4)), dtype=np.uint32)
_FOUR = np.uint64(10**4)
_ZEROS = pa.scalar("0", pa.string())


BLOCK = 16384


def from_ints(values: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """The limbs of non-negative integers (``values[at]``, or all): an object array of Python
    ints (or a numpy integer array). Each value's float64 (one pass) is the value itself below
    2^53; below 2^100 it gives the quotient by 10^16 within one, and the low 64 bits (a Python
    ``&``, on those values only) the remainder, exactly; the wider ones (none on mainnet: 10^12
    tokens of 18 decimals) are split by Python. Taken ``BLOCK`` values at a time: each pass
    then finds the Python ints in the cache the one before brought them to (a fifth faster over
    115,639 balances than whole columns)."""
    if values.dtype.kind in "iu":
        return _from_uint64((values if at is None else values[at]).astype(np.uint64))
    count = len(values) if at is None else len(at)
    if count <= BLOCK:
        return _block_limbs(values if at is None else values[at])
    parts = [_block_limbs(values[start:start + BLOCK] if at is None else values[at[start:start + BLOCK]])
             for start in range(0, count, BLOCK)]
    width = max(len(p) for p in parts)
    return np.concatenate([p if len(p) == width else np.concatenate(
        [p, np.zeros((width - len(p), p.shape[1]), dtype=np.uint64)]) for p in parts], axis=1)


def from_int64(values: np.ndarray, wide_at: np.ndarray | None = None,
               wide: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The limbs of the sizes (``|value|``) of integers of either sign, and a mask of the negative
    ones: int64 ``values``, but for those at ``wide_at`` (indices into ``values``), which are the
    integers ``wide`` (Python ints, any size: past int64) instead. The int64 ones by numpy
    alone (-2^63's size too: its negation wraps to itself, whose uint64 is 2^63); only the wide
    ones by :func:`from_ints`.

    Examples
    --------
    >>> limbs, negative = from_int64(np.array([5, -7, 0]), np.array([2]), np.array([-(10**20)], dtype=object))
    >>> to_ints(limbs).tolist(), negative.tolist()
    ([5, 7, 100000000000000000000], [False, True, True])
    """
    values = np.asarray(values, dtype=np.int64)
    negative = values < 0
    limbs = _from_uint64(np.where(negative, -values, values).view(np.uint64))
    if wide_at is None or wide is None or not len(wide_at):
        return limbs, negative
    wide = np.asarray(wide, dtype=object)
    below = np.asarray(wide < 0, dtype=bool)
    sizes = wide.copy()
    sizes[below] = -sizes[below]
    negative[wide_at] = below
    return put(limbs, wide_at, from_ints(sizes)), negative


def put(limbs: np.ndarray, at: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``limbs`` with the values at ``at`` (indices) replaced by ``values`` (limbs): in place,
    unless ``values`` has more limbs (then a copy with more)."""
    if not len(at):
        return limbs
    limbs = widened(limbs, len(values))
    for i, row in enumerate(limbs):     # row by row: a 2-d assignment took four times as long
        row[at] = values[i] if i < len(values) else 0
    return limbs


def widened(limbs: np.ndarray, count: int) -> np.ndarray:
    """``limbs`` with zero limbs on top up to ``count`` (itself when it has as many)."""
    if len(limbs) >= count:
        return limbs
    return np.concatenate([limbs, np.zeros((count - len(limbs), limbs.shape[1]), dtype=np.uint64)])


def _block_limbs(values: np.ndarray) -> np.ndarray:
    try:
        floats = values.astype(np.float64)
    except OverflowError:       # a value past a float's range (2^1024)
        return _python_limbs(values)
    exact = floats < EXACT_FLOATS        # a float below 2^53 is of an integer below 2^53: the same
    if exact.all():
        return _from_uint64(floats.astype(np.uint64))
    low = np.where(exact, floats, 0.0).astype(np.uint64)        # the value modulo 2^64
    beyond = np.flatnonzero(~exact)
    low[beyond] = (values[beyond] & _LOW64).astype(np.uint64)
    split = floats < SPLIT_FLOATS
    high = np.floor(np.where(split, floats, 0.0) / 1e16).astype(np.uint64)  # value // 10^16, within one
    # value - high · 10^16 modulo 2^64: within (-10^16, 2·10^16), so exact as an int64
    rest = (low - high * _HALF).view(np.int64)
    under, over = rest < 0, rest >= 10**16
    high += over.view(np.uint8)
    high -= under.view(np.uint8)
    rest += (under.view(np.int8) - over.view(np.int8)) * np.int64(10**16)
    limbs = _two_halves(high, rest.view(np.uint64))
    wide = np.flatnonzero(~split)
    if len(wide):
        rows = _python_limbs(values[wide])
        if len(rows) > len(limbs):
            limbs = np.concatenate([limbs, np.zeros((len(rows) - len(limbs), len(values)), dtype=np.uint64)])
        limbs[:, wide] = 0
        limbs[:len(rows), wide] = rows
    return limbs


def _from_uint64(values: np.ndarray) -> np.ndarray:
    """Limbs of uint64 values (four rows, the top one 0: below 2^64 < 10^24)."""
    out = np.empty((4, len(values)), dtype=np.uint64)
    np.floor_divide(values, _HALF, out=out[2])       # below 1845: its own limb
    low = values - out[2] * _HALF
    np.floor_divide(low, _BASE, out=out[1])
    np.subtract(low, out[1] * _BASE, out=out[0])
    out[3] = 0
    return out


def _two_halves(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Limbs of ``high · 10^16 + low`` (``low`` below 10^16, ``high`` below 10^16)."""
    out = np.empty((4, len(high)), dtype=np.uint64)
    np.floor_divide(low, _BASE, out=out[1])
    np.subtract(low, out[1] * _BASE, out=out[0])
    np.floor_divide(high, _BASE, out=out[3])
    np.subtract(high, out[3] * _BASE, out=out[2])
    return out


def factorized(limbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values numbered as ``pd.factorize`` numbers them: a code per distinct value, in order
    of first appearance, and the first value of each code (indices). Two limbs at a time (below
    10^16: one uint64) in pandas' numeric hash tables: on freshly loaded Python ints (a
    rescan's kept state) with :func:`from_ints`, three quarters of the time of hashing the ints
    (60,000 user configurations of 74 bits)."""
    count = limbs.shape[1]
    codes = np.zeros(count, dtype=np.int64)
    for i in range(0, len(limbs), 2):
        half = limbs[i] if i + 1 == len(limbs) else limbs[i + 1] * _BASE + limbs[i]
        part, seen = pd.factorize(half, sort=False)
        codes, _ = pd.factorize(codes * len(seen) + part, sort=False)      # below count^2
    # codes count up from 0 in order of first appearance: a code is first where the running maximum rises
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1) > 0)
    return codes.astype(np.int64), first


def halves(limbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The low and high 64 bits of values below 10^32 (at most 4 limbs; below 2^107): the low
    ones by uint64 arithmetic (modulo 2^64, exact), the high ones the float of
    ``(value - low) / 2^64``, within 2^-8 of that integer there (the value's float is within
    2^54 of it), rounded."""
    if len(limbs) > 4:
        raise ValueError("values of over 32 digits")
    padded = limbs if len(limbs) == 4 else np.concatenate([limbs, np.zeros((4 - len(limbs), limbs.shape[1]), np.uint64)])
    bottom = padded[1] * _BASE + padded[0]
    top = padded[3] * _BASE + padded[2]
    low = top * _HALF + bottom                  # wraps: modulo 2^64
    value = top.astype(np.float64) * 1e16 + bottom.astype(np.float64)
    high = np.rint((value - low.astype(np.float64)) / 2.0**64).astype(np.uint64)
    return low, high


def _python_limbs(values: np.ndarray) -> np.ndarray:
    """Limbs by Python integer operations (a few values)."""
    rest = np.asarray(values, dtype=object)
    rows = []
    while True:
        rows.append((rest % BASE).astype(np.uint64))
        rest = rest // BASE
        if not rest.any():
            return np.array(rows, dtype=np.uint64)


def to_ints(limbs: np.ndarray) -> np.ndarray:
    """Python ints (an object array): for a few values, or a check."""
    out = np.zeros(limbs.shape[1], dtype=object)
    for row in limbs[::-1]:
        out = out * BASE + row.astype(object)
    return out


def constant(value: int, count: int) -> np.ndarray:
    """One value's limbs, at least ``count`` of them (a column, shape ``(count, 1)``)."""
    rows: list[int] = []
    while value or len(rows) < count:
        value, limb = divmod(value, BASE)
        rows.append(limb)
    return np.array(rows, dtype=np.uint64).reshape(-1, 1)


def trimmed(limbs: np.ndarray) -> np.ndarray:
    """``limbs`` without the top ones that are zero in every value (one kept)."""
    top = len(limbs)
    while top > 1 and not limbs[top - 1].any():
        top -= 1
    return limbs[:top]


def taken(limbs: np.ndarray, where: np.ndarray) -> np.ndarray:
    """The values at ``where`` (indices), limb by limb (a 2-d take is slower)."""
    out = np.empty((len(limbs), len(where)), dtype=np.uint64)
    for row, limb in zip(out, limbs, strict=True):
        limb.take(where, out=row)
    return out


def scaled_quotients(values: np.ndarray, factors: list[int], addends: list[int], group: np.ndarray,
                     digits: int) -> np.ndarray:
    """``(values[i] · factors[group[i]] + addends[group[i]]) // 10^digits`` per value, exact (limbs
    in, limbs out): the product's columns summed, then carried once, the low limbs dropped.
    ``rayMul`` half up is ``addend`` 10^27 / 2, rounding up ``10^27 - 1``, down 0."""
    shift = -digits % DIGITS        # both scaled by 10^shift: the divisor becomes whole limbs
    drop = (digits + shift) // DIGITS
    values = trimmed(values)
    count = values.shape[1]
    factor_table = _table([f * 10**shift for f in factors])
    if min(len(values), len(factor_table)) > 1800:      # 1800 products below 10^16 (and carries) fit 64 bits
        raise ValueError("factors and values of over 14,400 digits")
    columns = np.zeros((len(values) + len(factor_table) + 1, count), dtype=np.uint64)
    product = np.empty(count, dtype=np.uint64)
    for j, limbs in enumerate(factor_table):
        same = _same(limbs)         # a limb every factor shares (an index's top limb: 1) is no array
        factor = np.take(limbs, group) if same is None else same
        for i, row in enumerate(values):
            if same is None or same > 1:
                np.multiply(row, factor, out=product)
                columns[i + j] += product
            elif same == 1:
                columns[i + j] += row
    # each distinct addend added where it is (rayMul's roundings: one or two)
    kinds = sorted(set(addends))
    kind_of = np.take(np.array([kinds.index(a) for a in addends], dtype=np.int64), group) if len(kinds) > 1 else None
    for k, addend in enumerate(kinds):
        where = None if kind_of is None else (kind_of == k).astype(np.uint64)
        for j, limb in enumerate(constant(addend * 10**shift, 1).ravel().tolist()):
            if limb:
                columns[j] += np.uint64(limb) if where is None else where * np.uint64(limb)
    carry = np.empty(count, dtype=np.uint64)
    for i in range(len(columns) - 1):           # carried: the dropped limbs only pass theirs on
        np.floor_divide(columns[i], _BASE, out=carry)
        if i >= drop:
            np.multiply(carry, _BASE, out=product)
            columns[i] -= product
        columns[i + 1] += carry
    return trimmed(columns[drop:]) if drop < len(columns) else np.zeros((1, count), dtype=np.uint64)


def _table(constants: list[int]) -> np.ndarray:
    """The limbs of each constant, as many as the widest has (a column each)."""
    width = max((len(constant(c, 1)) for c in constants), default=1)
    return np.concatenate([constant(c, width) for c in constants], axis=1) if constants \
        else np.zeros((width, 0), dtype=np.uint64)


def _same(row: np.ndarray) -> int | None:
    """The value every entry of ``row`` has, None when they differ (or there are none)."""
    return int(row[0]) if len(row) and (row == row[0]).all() else None


def is_zero(limbs: np.ndarray) -> np.ndarray:
    """Per value: is it 0."""
    nonzero = limbs[0] != 0
    for limb in limbs[1:]:
        nonzero |= limb != 0
    return ~nonzero


def decimal_text(limbs: np.ndarray) -> pa.StringArray:
    """Each value's decimal text, as Python's ``str`` writes it (no leading zeros; "0"): every
    value written on the same width (8 ASCII digits a limb, most significant first), as
    fixed-width Arrow strings over that buffer, their leading zeros trimmed by Arrow."""
    limbs = trimmed(limbs)
    count = limbs.shape[1]
    if count * len(limbs) * DIGITS >= 2**31:      # int32 offsets: halves
        half = count // 2
        return pa.concat_arrays([decimal_text(limbs[:, :half]), decimal_text(limbs[:, half:])])
    # limb by limb (2-d operations took twice as long): its two halves' digits, a row each, then
    # the rows turned to one value's digits after another's at once (a fifth faster than writing
    # each half's digits in place, strided)
    rows = np.empty((2 * len(limbs), count), dtype=np.uint32)
    upper, lower = np.empty(count, dtype=np.uint64), np.empty(count, dtype=np.uint64)
    for i, limb in enumerate(limbs[::-1]):
        np.floor_divide(limb, _FOUR, out=upper)
        np.subtract(limb, np.multiply(upper, _FOUR, out=lower), out=lower)
        _FOUR_DIGITS.take(upper, out=rows[2 * i])
        _FOUR_DIGITS.take(lower, out=rows[2 * i + 1])
    data = np.ascontiguousarray(rows.T)
    width = DIGITS * len(limbs)
    fixed = pa.StringArray.from_buffers(count, pa.py_buffer(np.arange(count + 1, dtype=np.int32) * width),
                                        pa.py_buffer(data))
    out = pc.ascii_ltrim(fixed, "0")
    zero = is_zero(limbs)
    if zero.any():
        out = pc.replace_with_mask(out, pa.array(zero), pa.array(["0"] * int(zero.sum()), type=pa.string()))
    return out


LONG = np.longdouble
_LONG_POWERS = np.array([LONG(10) ** d for d in range(28)], dtype=LONG)    # exact: 5^27 < 2^64
_FLOAT_POWERS = np.array([10.0**d for d in range(23)])     # exact: 5^22 < 2^53
# x86's 80-bit extended precision (a 64-bit significand, its integer bit explicit, stored in the
# first 8 of 16 bytes): its significand's 11 bits below a double's tell how close to a midpoint
EXTENDED = np.finfo(LONG).nmant == 63 and np.dtype(LONG).itemsize == 16
_MIDPOINT = np.uint64(1 << 10)
_BELOW_DOUBLE = np.uint64((1 << 11) - 1)
# the extended quotient is within 3 of its ulps of the exact one (three roundings: a product, a
# sum, the division); a midpoint farther than that rounds the same way: 8 leaves room
_MARGIN = np.uint64(8)


def near_midpoint(quotient: np.ndarray) -> np.ndarray:
    """Per extended-precision quotient (x86's 80-bit long double, within 3 of its ulps of the
    exact one): may its rounding to float64 differ from the exact quotient's, its 11 significand
    bits below a double's within ``_MARGIN`` of a midpoint between two doubles; every one where
    there is no extended precision."""
    if not EXTENDED:
        return np.ones(len(quotient), dtype=bool)
    below = quotient.view(np.uint64)[::2] & _BELOW_DOUBLE
    return below - (_MIDPOINT - _MARGIN) <= np.uint64(2) * _MARGIN


def quotient_floats(limbs: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """float64 of ``value / 10^decimals`` per value, correctly rounded as Python's int / int.
    Below 2^53 a value and 10^d (d ≤ 22) are exact floats, and one IEEE division rounds their
    quotient correctly. The others below 2^106 are two exact floats (the value's top and bottom
    16 digits), summed and divided in x86's extended precision and rounded to float64 once, which
    is the correct rounding unless the exact quotient lies within the extended error of a
    midpoint between two doubles: those, and every other value (wider, decimals past 27, no
    extended precision), are divided as Python integers (as :mod:`protocols.compound_v2.quotients`)."""
    limbs = trimmed(limbs)
    count = limbs.shape[1]
    decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), (count,))
    padded = limbs if len(limbs) >= 4 else np.concatenate([limbs, np.zeros((4 - len(limbs), count), np.uint64)])
    bottom = padded[1] * _BASE + padded[0]             # the value's bottom and top 16 digits
    top = padded[3] * _BASE + padded[2]
    floats = top.astype(np.float64) * 1e16 + bottom.astype(np.float64)      # exact below 2^53
    out = floats / _FLOAT_POWERS[np.minimum(decimals, len(_FLOAT_POWERS) - 1)]
    wider = ~is_zero(padded[4:]) if len(padded) > 4 else np.zeros(count, dtype=bool)    # 10^32 and past
    slow = (floats >= EXACT_FLOATS) | (decimals >= len(_FLOAT_POWERS)) | wider
    if not slow.any():
        return out
    where = np.flatnonzero(slow)
    scale = decimals[where]
    python = wider[where] | (scale >= len(_LONG_POWERS))
    if EXTENDED:        # below 10^16 each half is exact: one rounding in the product, one in the sum
        value = top[where].astype(LONG) * LONG(1e16) + bottom[where].astype(LONG)
        quotient = value / _LONG_POWERS[np.minimum(scale, len(_LONG_POWERS) - 1)]
        python |= near_midpoint(quotient)
        out[where] = quotient.astype(np.float64)
    else:
        python[:] = True
    if python.any():
        again = where[python]
        exact = to_ints(np.take(padded, again, axis=1))
        out[again] = [v / 10**d for v, d in zip(exact.tolist(), decimals[again].tolist(), strict=True)]
    return out


def floor_quotients(limbs: np.ndarray, divisors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``value // divisor`` per value, exactly, over limbs (:mod:`analyzer.wideint`; a borrow's
    ``principal × borrowIndex`` over its interestIndex): (the quotients' limbs, which of them are
    exact: those whose divisor is in (0, 2^62); the others, Python integers, by the caller).

    Long division, a limb at a time: the remainder so far times 10^8 plus the next limb (below
    ``divisor × 10^8``) over the divisor, estimated in float64 (the quotient's limb is below
    10^8 < 2^27 and the estimate within 2^-51 of it, relatively: within one), then corrected by
    the remainder ``remainder × 10^8 + limb − estimate × divisor``, exact from its low 64 bits:
    it lies in [−divisor, 2 divisor)."""
    divisors = np.asarray(divisors, dtype=np.int64)
    ok = (divisors > 0) & (divisors < 2**62)
    safe = np.where(ok, divisors, 1)
    divisor, inverse = safe.astype(np.uint64), 1.0 / safe.astype(np.float64)
    remainder = np.zeros(limbs.shape[1], dtype=np.uint64)
    out = np.empty_like(limbs)
    for i in range(len(limbs) - 1, -1, -1):
        digit = np.floor((remainder.astype(np.float64) * BASE + limbs[i].astype(np.float64)) * inverse).astype(np.uint64)
        with np.errstate(over="ignore"):
            left = (remainder * _BASE + limbs[i] - digit * divisor).view(np.int64)
        under, over = left < 0, left >= safe
        digit += over.view(np.uint8)
        digit -= under.view(np.uint8)
        left += (under.view(np.int8) - over.view(np.int8)) * safe
        out[i] = digit
        remainder = left.view(np.uint64)
    return out, ok
