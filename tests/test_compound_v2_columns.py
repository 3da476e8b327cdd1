"""Exact integer columns of a Compound V2 rescan: a borrow at a new index (``principal ×
borrowIndex // interestIndex``) over limbs, whatever its size, and decimal text of int64 and wider
values, each against Python integers."""

from __future__ import annotations

import random

import numpy as np

from analyzer import wideint
from analyzer.kept import objects
from analyzer.textcolumns import split_decimal_strings
from analyzer.wideint import floor_quotients


def borrows_now(principal: list[int], now: list[int], kept: list[int]) -> tuple[list[int], list[bool]]:
    """Through limbs: the product by scaled_quotients (each value its own group), then floor_quotients."""
    product = wideint.scaled_quotients(wideint.from_ints(objects(principal)), now, [0] * len(now),
                                       np.arange(len(now)), 0)
    got, exact = floor_quotients(product, np.array(kept, dtype=np.int64))
    return wideint.to_ints(got).tolist(), exact.tolist()


def test_borrows_at_a_new_index_equal_python_integers():
    rng = random.Random(11)
    principal, now, kept = [], [], []
    for _ in range(20000):
        index = rng.randrange(10**17, 2**62)            # interestIndex, below borrowIndex now
        principal.append(rng.randrange(0, 2 ** rng.randrange(1, 120)))     # 18-decimal principals pass 2^63
        kept.append(index)
        now.append(index + rng.randrange(0, index // rng.choice([1, 10, 10**6, 10**12])))
    # remainders 0 and divisor − 1 ((k − 1)(k + 1) = k² − 1): a wrong correction moves the quotient
    for _ in range(2000):
        index, q = rng.randrange(10**17, 2**62 - 1), rng.randrange(1, 2**80)
        principal += [q, index - 1, q * index + index - 1]
        now += [index, index + 1, index]
        kept += [index, index, index]
    got, exact = borrows_now(principal, now, kept)
    assert all(exact)
    assert got == [p * i // k for p, i, k in zip(principal, now, kept, strict=True)]


def test_divisors_past_2_62_and_zero_are_left_to_python():
    got, exact = borrows_now([10**30, 10**30, 7, 10**20], [10**18, 10**18, 10**18, 3 * 10**18],
                             [2**62, 0, 2**62 - 1, 10**18])
    assert exact == [False, False, True, True]
    assert got[2:] == [7 * 10**18 // (2**62 - 1), 3 * 10**20]


def test_decimal_text_of_int64_and_wider_values():
    values = [0, 7, 2**63 - 1, 2**63, 10**30 + 1, 12345]
    wide = np.array([v >= 2**63 for v in values])
    small = np.array([0 if w else v for v, w in zip(values, wide.tolist(), strict=True)], dtype=np.int64)
    assert split_decimal_strings(small, wide, objects(values)).to_pylist() == [str(v) for v in values]
