"""Exact integer columns of a Compound V2 rescan: a borrow at a new index (``principal ×
borrowIndex // interestIndex``) in int64 where it fits, a balance over its token's scale (Python's
int / int, bit for bit), decimal text of int64 and wider values, each against Python integers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from analyzer.kept import objects
from analyzer.textcolumns import split_decimal_strings
from protocols.compound_v2.columns import int64_where_fits
from protocols.compound_v2.quotients import EXACT_LONG, floor_products, quotients, wide_quotients

needs_long = pytest.mark.skipif(not EXACT_LONG, reason="long double is double here: every borrow goes to Python")


@needs_long
def test_borrows_at_a_new_index_equal_python_integers():
    rng = random.Random(11)
    principal, now, kept = [], [], []
    for _ in range(20000):
        index = rng.randrange(10**17, 2**61)            # interestIndex, below borrowIndex now
        principal.append(rng.randrange(0, 2 ** rng.randrange(1, 62)))
        kept.append(index)
        now.append(min(index + rng.randrange(0, index // rng.choice([1, 10, 10**6, 10**12])), 2**62 - 1))
    # remainders 0 and divisor − 1 ((k − 1)(k + 1) = k² − 1): a wrong carry moves the quotient
    for _ in range(2000):
        index, q = rng.randrange(10**17, 2**61 - 1), rng.randrange(1, 2**40)
        principal += [q, index - 1]
        now += [index, index + 1]
        kept += [index, index]
    got, exact = floor_products(np.array(principal), np.array(now), np.array(kept))
    want = [p * i // k for p, i, k in zip(principal, now, kept, strict=True)]
    assert exact.all()
    assert got.tolist() == want


@needs_long
def test_borrows_whose_quotient_is_past_int64_are_left_to_python():
    principal, now, kept = [2**62, 2**61, 5], [3 * 10**18, 10**18, 2**62], [10**18, 10**18, 2**61 + 1]
    got, exact = floor_products(np.array(principal), np.array(now), np.array(kept))
    assert exact.tolist() == [False, True, False]       # 3 × 2^62; 2^61 exact; a divisor past 2^61
    assert got[1] == 2**61


def test_balances_over_their_scale_equal_python_division():
    rng = random.Random(5)
    divisors = [10**d for d in (0, 6, 8, 18, 24, 30)]
    values = [rng.randrange(1, 2 ** rng.randrange(1, 63)) for _ in range(20000)]
    values += [5 * 10**17, 15 * 10**17, 2**62 + 1, 1]      # halves and powers of two
    group = np.array([rng.randrange(len(divisors)) for _ in values], dtype=np.int64)
    got = quotients(np.array(values, dtype=np.int64), divisors, group)
    assert got.tolist() == [v / divisors[g] for v, g in zip(values, group.tolist(), strict=True)]


def test_words_as_int64_where_they_fit():
    values = [0, 1, 2**63 - 2048, 2**63 - 1, 2**63, 2**64 + 3, 2**200]
    small, wide = int64_where_fits(objects(values))
    assert wide.tolist() == [False, False, False, True, True, True, True]     # 2^63 − 1's float is 2^63: kept wide
    assert all(int(s) == v for s, v, w in zip(small.tolist(), values, wide.tolist(), strict=True) if not w)
    small, wide = int64_where_fits(objects([3, 7]))
    assert small.dtype == np.int64 and small.tolist() == [3, 7] and not wide.any()


def test_decimal_text_of_int64_and_wider_values():
    values = [0, 7, 2**63 - 1, 2**63, 10**30 + 1, 12345]
    small, wide = int64_where_fits(objects(values))
    assert split_decimal_strings(small, wide, objects(values)).to_pylist() == [str(v) for v in values]


def test_wide_balances_over_their_scale_equal_python_division():
    rng = random.Random(9)
    divisors = [10**18, 10**6, 10**30]
    values = [rng.randrange(2**63, 2 ** rng.randrange(64, 200)) for _ in range(20000)]
    # quotients at midpoints between doubles (2^53 + 1, 2^53 + 3: ties to even) and beside them
    values += [10**18 * (2**53 + m) + e for m in (1, 3) for e in (-1, 0, 1)]
    group = np.array([rng.randrange(len(divisors)) for _ in values[:-6]] + [0] * 6, dtype=np.int64)
    got = wide_quotients(objects(values), divisors, group)
    assert got.tolist() == [v / divisors[g] for v, g in zip(values, group.tolist(), strict=True)]
