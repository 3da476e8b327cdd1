"""Exact integer StableSwap math of Curve's plain pools, as our fixture
``fixtures/contracts/stableswap/StableSwap.sol`` runs it (Curve's Vyper pools: ``get_D``,
``get_y``, ``get_dy``, ``exchange``), so a simulated exchange returns the wei the pool pays.

Balances are scaled by per-coin rates (``10**(36 − decimals)`` × a redemption rate in 1e18) to
``xp``; the invariant (Egorov 2019) ``A·n^n·Σx + D = A·D·n^n + D^(n+1) / (n^n·Πx)`` is solved by
Curve's Newton iterations in integers; ``amp`` is A × A_PRECISION (100); fees are in 1e10.
"""

from __future__ import annotations

from dataclasses import dataclass

FEE_DENOMINATOR = 10**10
PRECISION = 10**18
A_PRECISION = 100


class SwapMathError(ValueError):
    """An exchange the pool would reject (no convergence, or more than it holds)."""


def get_d(xp: list[int], amp: int) -> int:
    n = len(xp)
    s = sum(xp)
    if s == 0:
        return 0
    d, ann = s, amp * n
    for _ in range(255):
        d_p = d
        for x in xp:
            if x == 0:
                raise SwapMathError("a balance is zero")
            d_p = d_p * d // (x * n)
        d_prev = d
        d = (ann * s // A_PRECISION + d_p * n) * d // ((ann - A_PRECISION) * d // A_PRECISION + (n + 1) * d_p)
        if abs(d - d_prev) <= 1:
            return d
    raise SwapMathError("D does not converge")


def get_y(i: int, j: int, x: int, xp: list[int], amp: int) -> int:
    n = len(xp)
    d = get_d(xp, amp)
    ann = amp * n
    c, s_ = d, 0
    for k in range(n):
        if k == i:
            x_k = x
        elif k != j:
            x_k = xp[k]
        else:
            continue
        s_ += x_k
        c = c * d // (x_k * n)
    c = c * d * A_PRECISION // (ann * n)
    b = s_ + d * A_PRECISION // ann
    y = d
    for _ in range(255):
        y_prev = y
        y = (y * y + c) // (2 * y + b - d)
        if abs(y - y_prev) <= 1:
            return y
    raise SwapMathError("y does not converge")


@dataclass
class PoolState:
    """Raw balances (wei), rates (per coin), amp (A × 100), fee and admin_fee (1e10)."""

    balances: list[int]
    rates: list[int]
    amp: int
    fee: int
    admin_fee: int

    def xp(self) -> list[int]:
        return [r * b // PRECISION for r, b in zip(self.rates, self.balances, strict=True)]

    def exchange_amounts(self, i: int, j: int, dx: int) -> tuple[int, int]:
        """(dy paid to the trader, admin fee leaving the pool), coin j wei, for dx wei of coin i."""
        xp = self.xp()
        y = get_y(i, j, xp[i] + dx * self.rates[i] // PRECISION, xp, self.amp)
        dy = xp[j] - y - 1
        if dy < 0:
            raise SwapMathError("the pool cannot pay out")
        dy_fee = dy * self.fee // FEE_DENOMINATOR
        dy_admin_fee = dy_fee * self.admin_fee // FEE_DENOMINATOR
        return (dy - dy_fee) * PRECISION // self.rates[j], dy_admin_fee * PRECISION // self.rates[j]

    def exchange(self, i: int, j: int, dx: int) -> int:
        """StableSwap.exchange: pays dy of coin j for dx of coin i and moves the balances."""
        dy, admin = self.exchange_amounts(i, j, dx)
        if dy + admin > self.balances[j]:
            raise SwapMathError("the pool cannot pay out")
        self.balances[i] += dx
        self.balances[j] -= dy + admin
        return dy

    def copy(self) -> PoolState:
        return PoolState(list(self.balances), list(self.rates), self.amp, self.fee, self.admin_fee)
