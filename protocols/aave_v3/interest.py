"""Aave V3's interest accrual (``MathUtils``): variable debt grows by the compounded borrow rate,
aToken balances by the linear liquidity rate, both in ray per year.

``calculateCompoundedInterest(rate, t)`` = 1 + x·t + x²·t(t−1)/2 + x³·t(t−1)(t−2)/6 with
x = rate / SECONDS_PER_YEAR (the contract's three-term binomial approximation);
``calculateLinearInterest(rate, t)`` = 1 + rate·t / SECONDS_PER_YEAR.

>>> round(float(compounded_factor(0.05, 365 * 86400)), 6)   # 5% a year, compounded per second ≈ e^0.05
1.051271
"""

from __future__ import annotations

import numpy as np

from protocols.base import LendingBook

SECONDS_PER_YEAR = 365 * 86400
RAY = 1e27


def compounded_factor(rate_per_year, seconds: float):
    """``MathUtils.calculateCompoundedInterest`` as a float factor (``rate_per_year`` a fraction)."""
    x, t = np.asarray(rate_per_year, dtype=float) / SECONDS_PER_YEAR, float(seconds)
    return 1.0 + x * t + x * x * t * max(t - 1.0, 0.0) / 2.0 + x ** 3 * t * max(t - 1.0, 0.0) * max(t - 2.0, 0.0) / 6.0


def linear_factor(rate_per_year, seconds: float):
    """``MathUtils.calculateLinearInterest`` as a float factor."""
    return 1.0 + np.asarray(rate_per_year, dtype=float) * float(seconds) / SECONDS_PER_YEAR


def accrue(book: LendingBook, seconds: float) -> LendingBook:
    """The book after ``seconds``: debts × compounded borrow factor, deposits × linear supply factor,
    per reserve (``extra["variable_borrow_rate"]``, ``extra["liquidity_rate"]``, fractions a year)."""
    out = book.copy()
    borrow = book.extra.get("variable_borrow_rate")
    supply = book.extra.get("liquidity_rate")
    if borrow is not None:
        out.debt = book.debt * compounded_factor(borrow, seconds)[None, :]
    if supply is not None:
        out.collateral = book.collateral * linear_factor(supply, seconds)[None, :]
    return out
