"""Many swaps from one pool state, each as exact as one swap and walking the ticks once.

A swap of ``x`` and one of ``y > x`` (same pool state, same direction, both exact input or both
exact output, no price limit) take the same steps until the smaller runs out: every step of
UniswapV3Pool.swap's loop that reaches its target (the next initialised tick or bitmap word edge)
uses an amount fixed by the state it starts from, not by what remains. Exactly: with ``r`` left of
an exact input the step reaches its target iff ``r·(1e6 − fee) // 1e6 >= amount_in``, i.e. iff
``r >= amount_in + ceil(amount_in · fee / (1e6 − fee))``, which is what the step then charges
(its ``amount_in`` plus the fee SwapMath rounds up); with an exact output, iff ``r >= amount_out``.
So the cumulative amounts of the full steps, ``used_0 = 0 <= used_1 <= ...``, decide every
swap: a swap of ``R`` completes each step ``i`` with ``used_(i+1) < R`` and then runs the loop
itself from there (the step that ends inside a range, or the last full one when ``R`` equals a
cumulative amount).

A :class:`SwapLadder` holds those points (:class:`~analyzer.amm.concentrated_liquidity.SwapPoint`)
for one pool state and kind of swap, extended lazily as far as the largest swap asked; a keeper's
valuation or a router's candidates (tens of swaps from one state, up to twice the pool's balance,
hundreds of steps each) then cost a binary search and a step or two each. The result is the loop's
own, to the wei (``tests/test_swap_ladder.py`` compares both on random pools and amounts).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict

from analyzer.amm import concentrated_liquidity as cl

LADDERS_KEPT = 48          # per process, the most recently used (a full one: a few thousand points)
_UNBOUNDED = 1 << 300      # more than any step can use: every step reaches its target


class SwapLadder:
    """The points between the full steps of swaps of one kind from one pool state (no price limit)."""

    def __init__(self, state: cl.PoolState, zero_for_one: bool, exact_input: bool):
        self.state = state.copy()           # holds the pool's ticks, so the cache key's ids stay valid
        self.zero_for_one, self.exact_input = zero_for_one, exact_input
        self.limit = cl.MIN_SQRT_RATIO + 1 if zero_for_one else cl.MAX_SQRT_RATIO - 1
        self.points = [cl.SwapPoint(state.sqrt_price_x96, state.tick, state.liquidity, 0, 0, 0, 0)]
        self.used = [0]
        self.ended = state.sqrt_price_x96 == self.limit    # at the limit, or a step the loop refuses
        self.max_steps = cl.max_swap_steps(state)
        self.lock = threading.Lock()

    def start(self, amount: int) -> cl.SwapPoint:
        """The point from which a swap of ``amount`` (> 0, the absolute amount specified) continues:
        after its last full step with a cumulative amount below ``amount``."""
        with self.lock:
            while not self.ended and self.used[-1] < amount:
                self._extend()
            return self.points[max(bisect_left(self.used, amount) - 1, 0)]

    def _extend(self) -> None:
        """One more full step (the loop's own, :func:`~analyzer.amm.concentrated_liquidity.swap_step`)."""
        last = self.points[-1]
        if self.state.tick_spacing < 1 or last.steps > self.max_steps:
            self.ended = True        # the loop raises there: swaps that get this far run it themselves
            return
        remaining = _UNBOUNDED if self.exact_input else -_UNBOUNDED
        try:
            price, tick, liquidity, amount_in, amount_out, fee_amount, crossed = cl.swap_step(
                self.state, self.zero_for_one, self.limit, last.sqrt_price_x96, last.tick, last.liquidity, remaining)
        except cl.SwapMathError:
            self.ended = True
            return
        used, other = (amount_in + fee_amount, amount_out) if self.exact_input else (amount_out, amount_in + fee_amount)
        point = cl.SwapPoint(price, tick, liquidity, last.specified + used, last.calculated + other, last.steps + 1,
                             last.crossed + crossed)
        self.points.append(point)
        self.used.append(point.specified)
        self.ended = price == self.limit


_LADDERS: OrderedDict[tuple, SwapLadder] = OrderedDict()
_LOCK = threading.Lock()


def ladder_of(state: cl.PoolState, zero_for_one: bool, exact_input: bool) -> SwapLadder:
    """The process's ladder for swaps of this kind from ``state`` (the ``LADDERS_KEPT`` most
    recently used are kept). Keyed by the pool's tick data (the lists a state's copies share, and
    never change) and the swap's starting price, tick and liquidity."""
    key = (id(state.ticks), id(state.liquidity_net), state.fee_pips, state.tick_spacing, state.sqrt_price_x96,
           state.tick, state.liquidity, zero_for_one, exact_input)
    with _LOCK:
        ladder = _LADDERS.pop(key, None)
        if ladder is None:
            ladder = SwapLadder(state, zero_for_one, exact_input)
            while len(_LADDERS) >= LADDERS_KEPT:
                _LADDERS.popitem(last=False)
        _LADDERS[key] = ladder
    return ladder


def swap(state: cl.PoolState, zero_for_one: bool, amount_specified: int, *, update: bool = True) -> cl.SwapResult:
    """:func:`analyzer.amm.concentrated_liquidity.swap` without a price limit (to the pool's
    extreme), resumed from the state's ladder: the same result."""
    if amount_specified == 0:
        return cl.swap(state, zero_for_one, amount_specified, update=update)     # the loop's own error
    ladder = ladder_of(state, zero_for_one, amount_specified > 0)
    return cl.swap(state, zero_for_one, amount_specified, update=update, start=ladder.start(abs(amount_specified)))
