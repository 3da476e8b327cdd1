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
(:func:`analyzer.wideint.floor_quotients`)."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from analyzer.wideint import LONG, near_midpoint


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
    unsure = near_midpoint(quotient)    # within a unit of the last place of the exact quotient
    if unsure.any():
        where = np.flatnonzero(unsure)
        rounded[where] = reference(values[where].tolist(), [factors[k] for k in group[where].tolist()], divisor)
    return rounded
