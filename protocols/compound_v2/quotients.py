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
Python integers (:func:`reference`)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

LONG = np.longdouble
# the extended result's relative error: two products and a sum, each within eps / 2, and the
# rate's dropped third double (2^-106): 4 eps leaves room
TOLERANCE = LONG(4) * np.finfo(LONG).eps


def reference(values: Sequence[int], factors: Sequence[int], divisor: int) -> np.ndarray:
    """``value * factor / divisor`` per element, with Python integers (the definition)."""
    return np.array([int(v) * int(f) / divisor for v, f in zip(values, factors, strict=True)], dtype=np.float64)


def product_quotients(values: np.ndarray, factors: Sequence[int], group: np.ndarray, divisor: int) -> np.ndarray:
    """``values[i] * factors[group[i]] / divisor`` as Python computes it (:func:`reference`), for
    ``values`` a non-negative int64 column, ``factors`` (per group) positive Python integers."""
    return _rounded(values, [Fraction(f, divisor) for f in factors], group,
                    lambda v, g: reference(v, [factors[k] for k in g], divisor))


def quotients(values: np.ndarray, divisors: Sequence[int], group: np.ndarray) -> np.ndarray:
    """``values[i] / divisors[group[i]]`` as Python's int / int (a borrow balance over its
    token's scale), for ``values`` a non-negative int64 column, ``divisors`` positive integers."""
    return _rounded(values, [Fraction(1, d) for d in divisors], group,
                    lambda v, g: np.array([x / divisors[k] for x, k in zip(v, g, strict=True)], dtype=np.float64))


def wide_quotients(values: np.ndarray, divisors: Sequence[int], group: np.ndarray) -> np.ndarray:
    """:func:`quotients` of ``values`` an object array of non-negative Python integers of any size
    (18-decimal borrows past int64): each is taken in extended precision to within its last bit
    (the tolerance widened by that), the undecided ones divided as Python integers."""
    return _rounded(values, [Fraction(1, d) for d in divisors], group,
                    lambda v, g: np.array([x / divisors[k] for x, k in zip(v, g, strict=True)], dtype=np.float64),
                    values.astype(LONG), TOLERANCE + 2 * np.finfo(LONG).eps)


def _rounded(values: np.ndarray, exact: Sequence[Fraction], group: np.ndarray, slow, wide: np.ndarray | None = None,
             tolerance: np.floating = TOLERANCE) -> np.ndarray:
    """``values[i] × exact[group[i]]`` correctly rounded to float64 (``slow(values, groups)``, as
    Python lists, where the extended product cannot tell); ``wide``: the values in extended
    precision, within ``tolerance`` of the exact ones (default: int64 values, exact there)."""
    if wide is None:
        values = np.asarray(values, dtype=np.int64)
        wide = values.astype(LONG)      # exact: 63 bits fit a 64-bit significand
    high = np.array([float(q) for q in exact], dtype=np.float64)
    low = np.array([float(q - Fraction(h)) for q, h in zip(exact, high.tolist(), strict=True)], dtype=np.float64)
    quotient = wide * high[group].astype(LONG) + wide * low[group].astype(LONG)
    rounded = quotient.astype(np.float64)
    # how far the extended quotient is from the midpoint between ``rounded`` and its neighbour on
    # its side (exact: both are within one double's ulp); at a power of two that neighbour is closer
    off = np.abs(quotient - rounded.astype(LONG))
    half = LONG(0.5) * np.spacing(rounded).astype(LONG)
    unsure = (np.abs(off - half) <= tolerance * quotient) | (np.frexp(rounded)[0] == 0.5) | (values == 0)
    if unsure.any():
        where = np.flatnonzero(unsure)
        rounded[where] = slow(values[where].tolist(), group[where].tolist())
    return rounded


EXACT_LONG = np.finfo(LONG).nmant >= 63     # a 64-bit significand (x86's long double)
INT64 = 2**63


def floor_products(values: np.ndarray, factors: np.ndarray, divisors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values * factors // divisors`` exactly, element by element, over int64 columns (a borrow
    at a new index: ``principal × borrowIndex // interestIndex``): (the quotients, which of them
    are exact). Exact where the operands are non-negative, ``factors`` below 2^62, ``divisors``
    in (0, 2^61) and the quotient below 2^62 (the others: Python integers, by the caller).

    The quotient is estimated in extended precision (64-bit significands: within one of the
    exact one, two roundings of 2^-64 each below 2^62), then corrected by the remainder
    ``values × factors − estimate × divisors``, exact from its low 64 bits: it lies in
    [−divisor, 2 divisor), well within int64."""
    values, factors, divisors = (np.asarray(a, dtype=np.int64) for a in (values, factors, divisors))
    ok = (values >= 0) & (factors >= 0) & (factors < 2**62) & (divisors > 0) & (divisors < 2**61)
    if not EXACT_LONG:
        return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
    safe = np.where(ok, divisors, 1)
    estimate = np.floor(values.astype(LONG) * factors.astype(LONG) / safe.astype(LONG))
    ok &= estimate < LONG(2**62)
    guess = np.where(ok, estimate, 0).astype(np.int64)
    with np.errstate(over="ignore"):
        remainder = (values.astype(np.uint64) * factors.astype(np.uint64)
                     - guess.astype(np.uint64) * safe.astype(np.uint64)).view(np.int64)
    quotient = guess + np.floor_divide(remainder, safe)
    ok &= np.abs(remainder) < 2 * safe + 1      # always (the estimate is within one): a guard
    return np.where(ok, quotient, 0), ok
