"""Brent's bracketed root (analyzer.engine.roots) against roots known in closed form, with the
sides of its final bracket, in fewer evaluations than bisection on smooth functions."""

from __future__ import annotations

import math

import pytest

from analyzer.engine.roots import bracket_root

CASES = [   # (f, lo, hi, the root)
    (lambda x: x**3 - 2.0, 1.0, 2.0, 2 ** (1 / 3)),
    (lambda x: math.exp(-x) - 1e-6, 0.0, 100.0, 6 * math.log(10)),
    (lambda x: 1.0 / x - 0.3, 1.0, 1e9, 1 / 0.3),
    (lambda x: 3.0 - x, 10.0, 0.0, 3.0),                      # lo > hi: the sides follow f, not order
    (lambda x: -1.0 if x > 0.3 else 1.0, 0.0, 1.0, 0.3),      # a jump: bisection's pace
]


@pytest.mark.parametrize(("f", "lo", "hi", "root"), CASES)
def test_the_bracket_holds_the_root_with_each_side_keeping_its_sign(f, lo, hi, root):
    calls = []

    def counted(x):
        calls.append(x)
        return f(x)

    x, y = bracket_root(counted, lo, hi, f(lo), f(hi), 1e-12)
    assert abs(x - y) <= 2e-12 * max(abs(x), abs(y))
    assert min(x, y) - 1e-12 * root <= root <= max(x, y) + 1e-12 * root
    assert (f(x) > 0) == (f(lo) > 0) or f(x) == 0
    assert (f(y) > 0) == (f(hi) > 0) or f(y) == 0
    bisection_steps = math.ceil(math.log2(abs(hi - lo) / (1e-12 * root)))
    assert len(calls) <= bisection_steps + 3


def test_smooth_functions_take_far_fewer_steps_than_bisection():
    calls = []
    bracket_root(lambda x: calls.append(x) or x**3 - 2.0, 1.0, 2.0, -1.0, 6.0, 1e-12)
    assert len(calls) <= 10          # bisection: 40


def test_a_bracket_without_a_sign_change_is_refused():
    with pytest.raises(ValueError, match="opposite signs"):
        bracket_root(lambda x: x, 1.0, 2.0, 1.0, 2.0, 1e-12)
