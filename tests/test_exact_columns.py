"""decimal_strings and exact_amounts against Python's str and int / int, value by value, across
the bounds where their fast paths end (2^53 for floats, 2^63 for Arrow's int64 text, 10^22 for exact
powers of ten) and past a float64's range."""

from __future__ import annotations

import random

import numpy as np
import pytest

from analyzer.kept import exact_amounts, objects
from analyzer.textcolumns import decimal_strings

EDGES = [0, 1, 2, 9, 10, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 513, 2**63 - 512, 2**63 - 1, 2**63, 2**63 + 1,
         2**64, 10**18 - 1, 10**18, 10**22, 2**128 - 1, 2**255, 2**256 - 1]


def _values(seed: int, signed: bool) -> list[int]:
    rng = random.Random(seed)
    values = list(EDGES) + [rng.getrandbits(rng.randint(1, 256)) for _ in range(4000)]
    values += [edge + rng.randint(-5, 5) for edge in EDGES for _ in range(4) if edge > 5]
    if signed:
        values += [-v for v in values[::2]]
    rng.shuffle(values)
    return values


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("signed", [False, True])
def test_decimal_strings_equal_str(seed, signed):
    values = _values(seed, signed)
    assert decimal_strings(objects(values)).to_pylist() == [str(v) for v in values]


@pytest.mark.parametrize("values", [[], [5], [2**63 - 1, -(2**63)], [2**70, 3**100], [10**400, 7], [10**400]])
def test_decimal_strings_small_and_wide_alone(values):
    assert decimal_strings(objects(values)).to_pylist() == [str(v) for v in values]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("signed", [False, True])
def test_exact_amounts_equal_int_division(seed, signed):
    values = _values(seed, signed)
    rng = random.Random(seed)
    decimals = np.array([rng.choice([0, 1, 6, 8, 18, 21, 22, 23, 27, 40, 77]) for _ in values], dtype=np.int64)
    got = exact_amounts(objects(values), decimals)
    expected = np.array([v / 10**int(d) for v, d in zip(values, decimals, strict=True)])
    assert got.dtype == np.float64
    assert (got == expected).all(), [(v, int(d)) for v, d, a, b in zip(values, decimals, got, expected, strict=True)
                                      if a != b][:5]


def test_exact_amounts_one_decimals_for_all():
    values = _values(3, False)
    assert (exact_amounts(objects(values), 18) == np.array([v / 10**18 for v in values])).all()
    assert exact_amounts(objects([]), 18).shape == (0,)
