"""analyzer.wideint's kernels against Python integers, value by value: limbs in and out, the
product over a power of ten with each rounding (exact midpoints for half up, exact multiples and
one past for down and up), decimal text, and correctly rounded floats (quotients on and next to
the midpoints between two doubles, exact ties), across the bounds where their fast paths end
(2^53, 2^63, 2^64, 10^16, 2^100, 10^32) and limbs that carry (every digit a 9)."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from analyzer import wideint
from analyzer.kept import objects

RAY = 10**27
EDGES = [0, 1, 2, 9, 10, 10**8 - 1, 10**8, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**63 + 1,
         2**64 - 1, 2**64, 2**64 + 1, 10**16 - 1, 10**16, 10**16 + 1, 10**18, 10**27, 10**32 - 1, 10**32,
         2**100 - 1, 2**100, 2**100 + 1, 2**128 - 1, 2**255, 2**256 - 1]


def _values(seed: int, count: int = 3000) -> list[int]:
    rng = random.Random(seed)
    values = list(EDGES) + [rng.getrandbits(rng.randint(1, 256)) for _ in range(count)]
    values += [rng.getrandbits(rng.randint(50, 100)) for _ in range(count)]         # where the float splits
    values += [edge + rng.randint(-3, 3) for edge in EDGES for _ in range(3) if edge > 3]
    values += [10**k - 1 for k in range(1, 78)]                                     # every limb 99999999
    values += [k * 10**16 + d for k in [1, 8, 39] + [rng.getrandbits(rng.randint(20, 84)) for _ in range(300)]
               for d in (-2, -1, 0, 1, 2)]        # the split's estimate one too high or too low
    rng.shuffle(values)
    return values


@pytest.mark.parametrize("seed", [0, 1])
def test_limbs_are_the_values_base_ten_to_the_eight(seed):
    values = _values(seed)
    limbs = wideint.from_ints(objects(values))
    assert limbs.dtype == np.uint64 and (limbs < 10**8).all()
    assert wideint.to_ints(limbs).tolist() == values
    assert [sum(int(limb) * 10**(8 * i) for i, limb in enumerate(column)) for column in limbs.T] == values


def test_limbs_taken_block_by_block_are_the_values(monkeypatch):
    """Blocks of different widths (one past 10^32, one not) joined, and ``values[at]``."""
    monkeypatch.setattr(wideint, "BLOCK", 64)
    values = _values(3, 300)
    at = np.array(random.Random(3).sample(range(len(values)), len(values) // 2), dtype=np.int64)
    assert wideint.to_ints(wideint.from_ints(objects(values))).tolist() == values
    assert wideint.to_ints(wideint.from_ints(objects(values), at)).tolist() == [values[i] for i in at.tolist()]
    small = [v % 2**40 for v in values[:200]] + [2**256 - 1]
    assert wideint.to_ints(wideint.from_ints(objects(small))).tolist() == small


def test_limbs_of_numpy_integers_and_of_small_ones_only():
    unsigned = np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert wideint.to_ints(wideint.from_ints(unsigned)).tolist() == [0, 1, 2**63, 2**64 - 1]
    assert wideint.to_ints(wideint.from_ints(objects([5, 2**53 - 1, 0]))).tolist() == [5, 2**53 - 1, 0]
    assert wideint.to_ints(wideint.from_ints(objects([2**200, 3]))).tolist() == [2**200, 3]


@pytest.mark.parametrize("seed", [0, 1])
def test_decimal_text_is_str(seed):
    values = _values(seed)
    assert wideint.decimal_text(wideint.from_ints(objects(values))).to_pylist() == [str(v) for v in values]


@pytest.mark.parametrize("values", [[0], [0, 0], [7], [10**8], [0, 10**40], [2**256 - 1, 0, 1]])
def test_decimal_text_of_zeros_and_single_limbs(values):
    assert wideint.decimal_text(wideint.from_ints(objects(values))).to_pylist() == [str(v) for v in values]


def _products(seed: int, digits: int) -> tuple[list[int], list[int], np.ndarray]:
    """Values and factors, with exact multiples, one past, and (for half up) exact midpoints."""
    rng = random.Random(seed)
    divisor = 10**digits
    factors = [divisor, divisor + 1, divisor * 3 // 2 if digits else 3, 2 * divisor - 1, 10**8 - 1,
               (10**(digits + 9) - 1), rng.getrandbits(90) + divisor, rng.getrandbits(200)]
    values = [v for v in _values(seed, 800) if v < 2**200]
    group = np.array([rng.randrange(len(factors)) for _ in values], dtype=np.int64)
    return values, factors, group


@pytest.mark.parametrize("digits", [0, 6, 8, 18, 27])
@pytest.mark.parametrize("rounding", ["down", "half up", "up", "by group"])
def test_scaled_quotients_are_pythons_floor_division(digits, rounding):
    divisor = 10**digits
    values, factors, group = _products(digits, digits)
    addend = {"down": 0, "half up": divisor // 2, "up": divisor - 1}
    addends = [addend.get(rounding, (0, divisor // 2, divisor - 1)[g % 3]) for g in range(len(factors))]
    got = wideint.scaled_quotients(wideint.from_ints(objects(values)), factors, addends, group, digits)
    assert (got < 10**8).all()
    expected = [(v * factors[g] + addends[g]) // divisor for v, g in zip(values, group.tolist(), strict=True)]
    assert wideint.to_ints(got).tolist() == expected


def test_ray_mul_half_up_rounds_exact_midpoints_up_and_down_rounds_them_down():
    odd = [2 * k + 1 for k in range(1000)] + [2**90 + 1, 10**30 + 3]     # v · 1.5 RAY is a midpoint
    limbs = wideint.from_ints(objects(odd))
    group = np.zeros(len(odd), dtype=np.int64)
    half_up = wideint.to_ints(wideint.scaled_quotients(limbs, [3 * RAY // 2], [RAY // 2], group, 27)).tolist()
    down = wideint.to_ints(wideint.scaled_quotients(limbs, [3 * RAY // 2], [0], group, 27)).tolist()
    up = wideint.to_ints(wideint.scaled_quotients(limbs, [3 * RAY // 2], [RAY - 1], group, 27)).tolist()
    assert half_up == [(3 * v + 1) // 2 for v in odd] == up
    assert down == [3 * v // 2 for v in odd]
    exact = wideint.to_ints(wideint.scaled_quotients(limbs, [RAY], [RAY - 1], group, 27)).tolist()
    assert exact == odd         # an exact multiple is not rounded up


def _near_midpoints(seed: int, digits: list[int]) -> tuple[list[int], list[int]]:
    """Integers whose quotient by 10^d is on, or a few units from, the midpoint between two
    doubles (ties included where the midpoint times 10^d is an integer)."""
    rng = random.Random(seed)
    values, scales = [], []
    for _ in range(1500):
        d = rng.choice(digits)
        q = rng.uniform(1, 2**rng.randint(0, 60)) * rng.choice([1, 1e-6, 1e-12])
        midpoint = Fraction(q) + Fraction(np.spacing(q)) / 2
        center = int(midpoint * 10**d)
        for delta in (-2, -1, 0, 1, 2):
            if center + delta >= 0:
                values.append(center + delta)
                scales.append(d)
    return values, scales


@pytest.mark.parametrize("seed", [0, 1])
def test_quotient_floats_are_pythons_int_division(seed):
    rng = random.Random(seed)
    values = _values(seed)
    scales = [rng.choice([0, 1, 6, 8, 18, 22, 23, 27, 30, 77]) for _ in values]
    more, more_scales = _near_midpoints(seed, [0, 6, 8, 18, 22, 27])
    values, scales = values + more, scales + more_scales
    got = wideint.quotient_floats(wideint.from_ints(objects(values)), np.array(scales, dtype=np.int64))
    expected = np.array([v / 10**d for v, d in zip(values, scales, strict=True)])
    assert got.dtype == np.float64
    wrong = [(v, d) for v, d, a, b in zip(values, scales, got.tolist(), expected.tolist(), strict=True) if a != b]
    assert not wrong, wrong[:5]


def test_quotient_floats_without_extended_precision_divide_as_python(monkeypatch):
    monkeypatch.setattr(wideint, "EXTENDED", False)
    values, scales = _near_midpoints(2, [6, 18])
    values += [2**64 + 1, 10**30 + 7]
    scales += [18, 18]
    got = wideint.quotient_floats(wideint.from_ints(objects(values)), np.array(scales, dtype=np.int64))
    assert got.tolist() == [v / 10**d for v, d in zip(values, scales, strict=True)]


def test_near_midpoints_are_near_midpoints():
    """The midpoint cases do reach the extended path's check (not all settled by the fast path)."""
    values, scales = _near_midpoints(0, [18])
    assert sum(v >= 2**53 for v in values) > len(values) // 2
    exact_ties = [(v, d) for v, d in zip(values, scales, strict=True)
                  if Fraction(v, 10**d) == Fraction(v / 10**d) + Fraction(np.spacing(v / 10**d)) / 2
                  or Fraction(v, 10**d) == Fraction(v / 10**d) - Fraction(np.spacing(v / 10**d)) / 2]
    assert exact_ties


@pytest.mark.parametrize("wide", [False, True])
def test_factorized_numbers_values_as_pandas(wide):
    """Codes in order of first appearance and the values of the codes, as ``pd.factorize`` of
    the Python ints: values sharing a float or their low 64 bits told apart."""
    import pandas as pd

    rng = random.Random(5)
    shared = [2**73 + k for k in range(8)] + [2**73 + 2**64 + k for k in range(8)] + [0, 1, 2**53, 2**53 + 1]
    shared += [2**200] if wide else []
    values = [rng.choice(shared) for _ in range(3000)]
    at = np.array(rng.sample(range(len(values)), 2000), dtype=np.int64)
    codes, first = wideint.factorized(wideint.from_ints(objects(values), at))
    expected_codes, expected = pd.factorize(np.array([values[i] for i in at.tolist()], dtype=object), sort=False)
    assert codes.tolist() == expected_codes.tolist() and [values[at[i]] for i in first] == expected.tolist()


def test_halves_are_the_low_and_high_64_bits():
    rng = random.Random(7)
    values = [v for v in _values(7) if v < 10**32] + [10**32 - 1, 2**64 - 1, 2**64, 2**106 - 1, 2**106 + 2**64 - 1]
    values += [rng.getrandbits(106) for _ in range(3000)] + [(k << 64) + d for k in (1, 2**40, 2**42 - 1)
                                                              for d in (0, 1, 2**63, 2**64 - 1)]
    low, high = wideint.halves(wideint.from_ints(objects(values)))
    assert low.tolist() == [v % 2**64 for v in values] and high.tolist() == [v >> 64 for v in values]
