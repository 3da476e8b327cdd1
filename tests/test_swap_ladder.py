"""Swaps resumed from a ladder of full steps (:mod:`analyzer.amm.ladder`) equal the swap loop run
from the pool state (:func:`analyzer.amm.concentrated_liquidity.swap`), result for result: amounts
to the wei, price, tick, liquidity, the loop's step and crossing counts, and the same refusals.

Pools are random: positions on random ranges (some full range, some leaving gaps without
liquidity), random fee tiers including none, the price anywhere inside its tick. Amounts are
asked in random order (the ladder grows lazily and is read below its end), log-uniform up to
beyond the pool's reserves, plus the cumulative amounts of the ladder's own steps and their
neighbours, where a swap ends exactly on a step or one wei either side of it."""

from __future__ import annotations

import random

import pytest

from analyzer.amm import concentrated_liquidity as cl
from analyzer.amm import ladder


def random_pool(rng: random.Random) -> cl.PoolState:
    spacing = rng.choice([1, 10, 60, 200])
    fee = rng.choice([0, 100, 500, 3000, 10000])
    centre = rng.randrange(-200_000, 200_000) // spacing * spacing
    nets: dict[int, int] = {}
    for _ in range(rng.randrange(1, 12)):
        if rng.random() < 0.2:
            lower, upper = -(-cl.MIN_TICK // spacing) * spacing, cl.MAX_TICK // spacing * spacing
        else:
            half = rng.choice([1, 3, 20, 300, 5000]) * spacing
            lower = centre + rng.randrange(-4 * half, 2 * half) // spacing * spacing
            upper = lower + rng.randrange(1, 4) * half
        liquidity = int(10 ** rng.uniform(12, 24))
        nets[lower] = nets.get(lower, 0) + liquidity
        nets[upper] = nets.get(upper, 0) - liquidity
    nets = {t: n for t, n in nets.items() if n}
    tick = centre + rng.randrange(-3000, 3000)
    low, high = cl.get_sqrt_ratio_at_tick(tick), cl.get_sqrt_ratio_at_tick(tick + 1)
    price = rng.choice([low, low + rng.randrange(high - low)])
    active = sum(n for t, n in nets.items() if t <= tick)
    return cl.PoolState(price, tick, active, fee, spacing, sorted(nets), nets)


def outcome(run) -> tuple:
    try:
        return ("ok", run())
    except cl.SwapMathError as exc:
        return ("refused", str(exc))


@pytest.mark.parametrize("seed", range(12))
def test_a_swap_resumed_from_the_ladder_is_the_swap_loop_from_the_state(seed):
    rng = random.Random(seed)
    pool = random_pool(rng)
    compared = reached_far = 0
    for zero_for_one in (True, False):
        for exact_input in (True, False):
            amounts = [int(10 ** rng.uniform(0, 30)) for _ in range(25)]
            steps = ladder.ladder_of(pool, zero_for_one, exact_input)
            steps.start(max(amounts))                           # its points, to probe their own amounts
            for used in rng.sample(steps.used[1:], min(8, len(steps.used) - 1)):
                amounts += [used - 1, used, used + 1]
            rng.shuffle(amounts)
            for amount in (a for a in amounts if a > 0):
                specified = amount if exact_input else -amount
                state = pool.copy()
                fast = outcome(lambda s=state, q=specified: ladder.swap(s, zero_for_one, q))  # noqa: B023
                expected = outcome(lambda q=specified: cl.swap(pool.copy(), zero_for_one, q))  # noqa: B023
                assert fast == expected, (zero_for_one, exact_input, amount)
                if fast[0] == "ok":
                    assert (state.sqrt_price_x96, state.tick, state.liquidity) == (
                        fast[1].sqrt_price_x96, fast[1].tick, fast[1].liquidity)
                    reached_far += fast[1].steps > 3
                compared += 1
    assert compared >= 100 and reached_far > 0


def test_ladder_is_reused_for_the_same_state_and_kept_per_state():
    pool = random_pool(random.Random(99))
    first = ladder.ladder_of(pool, True, True)
    assert ladder.ladder_of(pool.copy(), True, True) is first          # copies share the pool's ticks
    assert ladder.ladder_of(pool, True, False) is not first
    moved = pool.copy()
    cl.swap(moved, True, 10 ** 18)
    assert ladder.ladder_of(moved, True, True) is not first
