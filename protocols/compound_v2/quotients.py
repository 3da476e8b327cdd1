"""Python's ``int * int / int`` over arrays, bit for bit, without a Python integer per element.

A cToken position's amount is ``balance * exchangeRateStored / 1e18`` divided by the underlying's
scale (:func:`protocols.compound_v2.lens.rows_from_figures`): Python's true division of the exact
product, correctly rounded to the nearest float64 (ties to even). The product reaches 2^150, so
over a column it was a Python multiplication and division per position (most of a rescan's
Python time in Compound). Here the balances (int64) and each market's rate (as an exact sum of
doubles) are multiplied in the platform's extended precision (x86's 80-bit long double: 64-bit
significands) and rounded to float64 once; that rounding equals the exact one unless the exact
quotient lies within the extended product's error of a midpoint between two doubles (about one
position in 200 on x86; every one where long double is double), and those are computed with
Python integers (:func:`reference`).

A borrow at a new index (``principal × borrowIndex // interestIndex``) is exact over limbs
(:mod:`analyzer.wideint`): :func:`floor_quotients`."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from analyzer.wideint import EXTENDED

LONG = np.longdouble


def reference(values: Sequence[int], factors: Sequence[int], divisor: int) -> np.ndarray:
    """``value * factor / divisor`` per element, with Python integers (the definition)."""
    return np.array([int(v) * int(f) / divisor for v, f in zip(values, factors, strict=True)], dtype=np.float64)


def product_quotients(values: np.ndarray, factors: Sequence[int], group: np.ndarray, divisor: int) -> np.ndarray:
    """``values[i] * factors[group[i]] / divisor`` as Python computes it (:func:`reference`), for
    ``values`` a non-negative int64 column, ``factors`` (per group) positive Python integers:
    the product in extended precision, each factor over the divisor as an exact sum of doubles,
    rounded to float64 once; where that cannot tell (the extended quotient's 11 bits below a
    double's within its error of a midpoint between two doubles), :func:`reference`."""
    values = np.asarray(values, dtype=np.int64)
    exact = [Fraction(f, divisor) for f in factors]
    high = np.array([float(q) for q in exact], dtype=np.float64)
    low = np.array([float(q - Fraction(h)) for q, h in zip(exact, high.tolist(), strict=True)], dtype=np.float64)
    extended = values.astype(LONG)      # exact: 63 bits fit a 64-bit significand
    quotient = extended * high.astype(LONG)[group]
    quotient += extended * low.astype(LONG)[group]
    rounded = quotient.astype(np.float64)
    if EXTENDED:        # within a unit of the last place of the exact quotient: a margin of 8 leaves room
        below = quotient.view(np.uint64)[::2] & _BELOW_DOUBLE
        unsure = below - (_MIDPOINT - _MARGIN) <= 2 * _MARGIN
    else:
        unsure = np.ones(len(values), dtype=bool)
    if unsure.any():
        where = np.flatnonzero(unsure)
        rounded[where] = reference(values[where].tolist(), [factors[k] for k in group[where].tolist()], divisor)
    return rounded


# x86's 80-bit extended precision (as analyzer.wideint.quotient_floats reads it): the significand's
# 11 bits below a double's tell how near a midpoint between two doubles the quotient is
_MIDPOINT = np.uint64(1 << 10)
_BELOW_DOUBLE = np.uint64((1 << 11) - 1)
_MARGIN = np.uint64(8)


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
        digit = np.floor((remainder.astype(np.float64) * LIMB + limbs[i].astype(np.float64)) * inverse).astype(np.uint64)
        with np.errstate(over="ignore"):
            left = (remainder * _LIMB + limbs[i] - digit * divisor).view(np.int64)
        under, over = left < 0, left >= safe
        digit += over.view(np.uint8)
        digit -= under.view(np.uint8)
        left += (under.view(np.int8) - over.view(np.int8)) * safe
        out[i] = digit
        remainder = left.view(np.uint64)
    return out, ok


LIMB = 10**8        # analyzer.wideint's base
_LIMB = np.uint64(LIMB)
