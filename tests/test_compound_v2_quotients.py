"""``product_quotients`` is Python's ``int * int / int`` (correctly rounded, ties to even) bit for
bit, over random columns and at the midpoints between doubles where extended precision cannot
decide alone."""

from __future__ import annotations

import random

import numpy as np

from protocols.compound_v2.quotients import product_quotients

MANTISSA = 10**18


def python(values, factors, group, divisor) -> list[float]:
    return [int(v) * factors[g] / divisor for v, g in zip(values.tolist(), group.tolist(), strict=True)]


def test_random_columns_equal_python_division():
    rng = random.Random(7)
    for _ in range(30):
        factors = [rng.randrange(1, 2 ** rng.randrange(1, 100)) for _ in range(6)]
        values = np.array([rng.randrange(1, 2 ** rng.randrange(1, 63)) for _ in range(5000)], dtype=np.int64)
        group = np.array([rng.randrange(6) for _ in range(5000)], dtype=np.int64)
        divisor = rng.choice([MANTISSA, 10 ** rng.randrange(0, 30), rng.randrange(1, 2**80)])
        assert product_quotients(values, factors, group, divisor).tolist() == python(values, factors, group, divisor)


def test_exchange_rates_like_compounds():
    # cToken balances (8 decimals) times exchange rates around 2e26 (18-decimal underlying) and 2e14 (6)
    rng = random.Random(3)
    factors = [200_000_000_000_000_000_000_000_000 + rng.randrange(10**20), 204_000_000_000_000 + rng.randrange(10**9)]
    values = np.array([rng.randrange(1, 10**17) for _ in range(20000)], dtype=np.int64)
    group = np.array([rng.randrange(2) for _ in range(20000)], dtype=np.int64)
    assert product_quotients(values, factors, group, MANTISSA).tolist() == python(values, factors, group, MANTISSA)


def test_midpoints_round_half_to_even():
    # value / 2 just above 2^53 and 2^62: every other one lies exactly between two doubles
    values = np.array([2**54 + k for k in range(-500, 500)] + [2**62 + k for k in range(-500, 500)], dtype=np.int64)
    group = np.zeros(len(values), dtype=np.int64)
    for factor in (5 * 10**17, 5 * 10**17 + 1, 5 * 10**17 - 1, 10**18, 3 * 10**18):
        got = product_quotients(values, [factor], group, MANTISSA).tolist()
        assert got == python(values, [factor], group, MANTISSA)
    halves = product_quotients(np.array([2**54 + 2, 2**54 + 6], dtype=np.int64), [5 * 10**17], np.zeros(2, np.int64),
                               MANTISSA)
    assert halves.tolist() == [float(2**53), float(2**53 + 4)]     # 2^53 + 1 and 2^53 + 3: ties, to even
