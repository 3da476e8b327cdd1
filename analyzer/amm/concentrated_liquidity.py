"""Exact integer maths of a concentrated-liquidity pool, shared by every venue that runs it.

Uniswap V3 pools (@uniswap/v3-core 1.0.1) and the pools of Uniswap V4's PoolManager
(@uniswap/v4-core 1.0) run the same libraries, so the maths lives here, in the core, where no
plugin has to import another. Every function reproduces the Solidity library of the same name bit
for bit (Python ints stand in for uint160/uint256; where Solidity's behaviour depends on a 256-bit
overflow check, the check is reproduced). Units are the pool's raw ones: token wei, sqrt prices in
Q64.96 (``sqrtPriceX96 = sqrt(amount1 / amount0) * 2**96``), fees in pips (1e-6), liquidity in
sqrt(amount0 * amount1).

- ``get_sqrt_ratio_at_tick`` / ``get_tick_at_sqrt_ratio``: libraries/TickMath.sol
- ``mul_div`` / ``mul_div_rounding_up``: libraries/FullMath.sol
- ``get_amount0_delta`` / ``get_amount1_delta`` / ``next_sqrt_price_from_*``: libraries/SqrtPriceMath.sol
- ``compute_swap_step``: libraries/SwapMath.sol
- ``next_initialized_tick_within_one_word``, ``bitmap_words``, ``initialised_ticks``:
  libraries/TickBitmap.sol (``position``, ``nextInitializedTickWithinOneWord``), on a sorted tick list
- ``swap``: the loop of ``UniswapV3Pool.swap`` (v3-core UniswapV3Pool.sol; v4-core ``Pool.swap``
  runs the same loop), without oracle and fee-growth bookkeeping, which do not change amounts or
  prices.

Worked example: at tick 0 the price is 1 (``get_sqrt_ratio_at_tick(0) == 2**96``), and
``get_tick_at_sqrt_ratio(2**96) == 0``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache

MIN_TICK = -887272
MAX_TICK = 887272
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
Q96 = 1 << 96
UINT256 = 1 << 256

_TICK_FACTORS = (
    (0x2, 0xfff97272373d413259a46990580e213a), (0x4, 0xfff2e50f5f656932ef12357cf3c7fdcc),
    (0x8, 0xffe5caca7e10e4e61c3624eaa0941cd0), (0x10, 0xffcb9843d60f6159c9db58835c926644),
    (0x20, 0xff973b41fa98c081472e6896dfb254c0), (0x40, 0xff2ea16466c96a3843ec78b326b52861),
    (0x80, 0xfe5dee046a99a2a811c461f1969c3053), (0x100, 0xfcbe86c7900a88aedcffc83b479aa3a4),
    (0x200, 0xf987a7253ac413176f2b074cf7815e54), (0x400, 0xf3392b0822b70005940c7a398e4b70f3),
    (0x800, 0xe7159475a2c29b7443b29c7fa6e889d9), (0x1000, 0xd097f3bdfd2022b8845ad8f792aa5825),
    (0x2000, 0xa9f746462d870fdf8a65dc1f90e061e5), (0x4000, 0x70d869a156d2a1b890bb3df62baf32f7),
    (0x8000, 0x31be135f97d08fd981231505542fcfa6), (0x10000, 0x9aa508b5b7a84e1c677de54f3e99bc9),
    (0x20000, 0x5d6af8dedb81196699c329225ee604), (0x40000, 0x2216e584f5fa1ea926041bedfe98),
    (0x80000, 0x48a170391f7dc42444e8fa2),
)


class SwapMathError(ArithmeticError):
    """A condition under which the Solidity code reverts."""


@lru_cache(maxsize=65536)
def get_sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick: sqrt(1.0001**tick) * 2**96, rounded up (Q64.96)."""
    abs_tick = -tick if tick < 0 else tick
    if abs_tick > MAX_TICK:
        raise SwapMathError(f"tick {tick} out of range")
    ratio = 0xfffcb933bd6fad37aa2d162d1a594001 if abs_tick & 0x1 else 0x100000000000000000000000000000000
    for bit, factor in _TICK_FACTORS:
        if abs_tick & bit:
            ratio = (ratio * factor) >> 128
    if tick > 0:
        ratio = (UINT256 - 1) // ratio
    return (ratio >> 32) + (0 if ratio % (1 << 32) == 0 else 1)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio: the greatest tick with getSqrtRatioAtTick(tick) <= sqrt price.

    The Solidity computes a log2 and corrects by one; its specification (and result) is this
    greatest-tick property, found here by bisection over getSqrtRatioAtTick.
    """
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise SwapMathError("sqrt price out of range")
    low, high = MIN_TICK, MAX_TICK
    while high - low > 1:
        mid = (low + high) // 2
        if get_sqrt_ratio_at_tick(mid) <= sqrt_price_x96:
            low = mid
        else:
            high = mid
    return high if get_sqrt_ratio_at_tick(high) <= sqrt_price_x96 else low


def mul_div(a: int, b: int, denominator: int) -> int:
    """FullMath.mulDiv: floor(a*b/denominator), reverting when the result exceeds uint256."""
    result = a * b // denominator
    if result >= UINT256:
        raise SwapMathError("mulDiv overflow")
    return result


def mul_div_rounding_up(a: int, b: int, denominator: int) -> int:
    """FullMath.mulDivRoundingUp."""
    result = -(-(a * b) // denominator)
    if result >= UINT256:
        raise SwapMathError("mulDiv overflow")
    return result


def _div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp."""
    return x // y + (1 if x % y else 0)


def get_amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount0Delta: liquidity / sqrt_a - liquidity / sqrt_b in token0 wei."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    numerator1 = liquidity << 96
    numerator2 = sqrt_b - sqrt_a
    if round_up:
        return _div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def get_amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount1Delta: liquidity * (sqrt_b - sqrt_a) in token1 wei."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


def _next_sqrt_price_from_amount0_rounding_up(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    if amount == 0:
        return sqrt_p
    numerator1 = liquidity << 96
    product = amount * sqrt_p
    if add:
        # Solidity takes the precise path only when amount*sqrtP and the sum fit in 256 bits
        if product < UINT256 and numerator1 + product < UINT256:
            return mul_div_rounding_up(numerator1, sqrt_p, numerator1 + product)
        return _div_rounding_up(numerator1, numerator1 // sqrt_p + amount)
    if product >= UINT256 or numerator1 <= product:
        raise SwapMathError("output exceeds token0 reserves of the range")
    result = mul_div_rounding_up(numerator1, sqrt_p, numerator1 - product)
    if result >= 1 << 160:
        raise SwapMathError("sqrt price overflows uint160")
    return result


def _next_sqrt_price_from_amount1_rounding_down(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    if add:
        quotient = (amount << 96) // liquidity
        result = sqrt_p + quotient
        if result >= 1 << 160:
            raise SwapMathError("sqrt price overflows uint160")
        return result
    quotient = _div_rounding_up(amount << 96, liquidity)
    if sqrt_p <= quotient:
        raise SwapMathError("output exceeds token1 reserves of the range")
    return sqrt_p - quotient


def next_sqrt_price_from_input(sqrt_p: int, liquidity: int, amount_in: int, zero_for_one: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput."""
    if zero_for_one:
        return _next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_in, True)
    return _next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_in, True)


def next_sqrt_price_from_output(sqrt_p: int, liquidity: int, amount_out: int, zero_for_one: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromOutput."""
    if zero_for_one:
        return _next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_out, False)
    return _next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_out, False)


def compute_swap_step(sqrt_current: int, sqrt_target: int, liquidity: int, amount_remaining: int,
                      fee_pips: int) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep -> (sqrt_next, amount_in, amount_out, fee_amount)."""
    zero_for_one = sqrt_current >= sqrt_target
    exact_in = amount_remaining >= 0
    amount_in = amount_out = 0
    if exact_in:
        remaining_less_fee = amount_remaining * (1_000_000 - fee_pips) // 1_000_000
        amount_in = (get_amount0_delta(sqrt_target, sqrt_current, liquidity, True) if zero_for_one
                     else get_amount1_delta(sqrt_current, sqrt_target, liquidity, True))
        if remaining_less_fee >= amount_in:
            sqrt_next = sqrt_target
        elif liquidity == 0:
            raise SwapMathError("no liquidity")
        else:
            sqrt_next = next_sqrt_price_from_input(sqrt_current, liquidity, remaining_less_fee, zero_for_one)
    else:
        amount_out = (get_amount1_delta(sqrt_target, sqrt_current, liquidity, False) if zero_for_one
                      else get_amount0_delta(sqrt_current, sqrt_target, liquidity, False))
        if -amount_remaining >= amount_out:
            sqrt_next = sqrt_target
        elif liquidity == 0:
            raise SwapMathError("no liquidity")
        else:
            sqrt_next = next_sqrt_price_from_output(sqrt_current, liquidity, -amount_remaining, zero_for_one)
    reached = sqrt_target == sqrt_next
    if zero_for_one:
        if not (reached and exact_in):
            amount_in = get_amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not (reached and exact_in):
            amount_in = get_amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        if not (reached and not exact_in):
            amount_out = get_amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not exact_in and amount_out > -amount_remaining:
        amount_out = -amount_remaining
    if exact_in and sqrt_next != sqrt_target:
        fee_amount = amount_remaining - amount_in
    else:
        fee_amount = mul_div_rounding_up(amount_in, fee_pips, 1_000_000 - fee_pips)
    return sqrt_next, amount_in, amount_out, fee_amount


def next_initialized_tick_within_one_word(ticks: list[int], tick: int, tick_spacing: int,
                                          lte: bool) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord over ``ticks`` (sorted initialised ticks).

    The bitmap word (256 compressed ticks) bounds each search, so a swap also stops at word
    edges; reproducing those stops keeps the per-step rounding identical to the pool's.
    """
    compressed = tick // tick_spacing  # floor, as the Solidity's "round towards negative infinity"
    if lte:
        word_start = (compressed >> 8) << 8
        i = bisect_right(ticks, compressed * tick_spacing) - 1
        if i >= 0 and ticks[i] >= word_start * tick_spacing:
            return ticks[i], True
        return word_start * tick_spacing, False
    above = compressed + 1
    word_end = ((above >> 8) << 8) + 255
    i = bisect_left(ticks, above * tick_spacing)
    if i < len(ticks) and ticks[i] <= word_end * tick_spacing:
        return ticks[i], True
    return word_end * tick_spacing, False


def bitmap_words(tick_spacing: int) -> range:
    """Every tickBitmap word position a pool with this spacing can use (TickBitmap.position of
    MIN_TICK and MAX_TICK compressed by the spacing)."""
    return range((MIN_TICK // tick_spacing) >> 8, ((MAX_TICK // tick_spacing) >> 8) + 1)


def initialised_ticks(word_pos: int, word: int, tick_spacing: int) -> list[int]:
    """The ticks whose bits are set in tickBitmap word ``word_pos`` (the inverse of TickBitmap.flipTick)."""
    ticks = []
    while word:
        low = word & -word
        ticks.append(((word_pos << 8) + low.bit_length() - 1) * tick_spacing)
        word ^= low
    return ticks


@dataclass
class PoolState:
    """The part of a pool's state a swap reads and changes (raw units)."""

    sqrt_price_x96: int
    tick: int
    liquidity: int
    fee_pips: int
    tick_spacing: int
    ticks: list[int]                  # sorted initialised ticks
    liquidity_net: dict[int, int]     # tick -> liquidityNet (signed)

    def copy(self) -> PoolState:
        # ticks and liquidity_net never change during a swap: shared, not copied
        return PoolState(self.sqrt_price_x96, self.tick, self.liquidity, self.fee_pips, self.tick_spacing,
                         self.ticks, self.liquidity_net)


@dataclass
class SwapResult:
    amount0: int          # pool's balance change of token0 (>0: the pool received it)
    amount1: int
    sqrt_price_x96: int   # after
    tick: int             # after
    liquidity: int        # after
    steps: int            # loop iterations (tick-bounded steps)
    ticks_crossed: int    # initialised ticks crossed


def swap(state: PoolState, zero_for_one: bool, amount_specified: int, sqrt_price_limit_x96: int | None = None,
         *, update: bool = True, start: SwapPoint | None = None) -> SwapResult:
    """UniswapV3Pool.swap: ``amount_specified`` > 0 exact input, < 0 exact output (raw wei).

    With ``update`` the state is moved to the post-swap pool state. Without a limit, the pool's
    extreme (MIN_SQRT_RATIO + 1 or MAX_SQRT_RATIO - 1) is used, as routers do. ``start``: the loop
    resumes from a point this very swap passes between two of its steps (a point of
    :class:`analyzer.amm.ladder.SwapLadder`, whose every step is one of this loop's); the result is
    the same as from the state.
    """
    if amount_specified == 0:
        raise SwapMathError("amount_specified is 0")
    if sqrt_price_limit_x96 is None:
        sqrt_price_limit_x96 = MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1
    if zero_for_one and not MIN_SQRT_RATIO < sqrt_price_limit_x96 < state.sqrt_price_x96:
        raise SwapMathError("SPL: price limit not below the current price")
    if not zero_for_one and not state.sqrt_price_x96 < sqrt_price_limit_x96 < MAX_SQRT_RATIO:
        raise SwapMathError("SPL: price limit not above the current price")
    exact_input = amount_specified > 0
    point = start or SwapPoint(state.sqrt_price_x96, state.tick, state.liquidity, 0, 0, 0, 0)
    price, tick, liquidity, steps, crossed = point.sqrt_price_x96, point.tick, point.liquidity, point.steps, point.crossed
    # what is left of the amount specified, and the other side's amount (the loop's signs)
    remaining = amount_specified - point.specified if exact_input else amount_specified + point.specified
    calculated = -point.calculated if exact_input else point.calculated
    limit = max_swap_steps(state)
    while remaining != 0 and price != sqrt_price_limit_x96:
        if state.tick_spacing < 1 or steps > limit:
            raise SwapMathError(f"the swap does not converge (tick spacing {state.tick_spacing}, {steps} steps)")
        price, tick, liquidity, amount_in, amount_out, fee_amount, initialized = swap_step(
            state, zero_for_one, sqrt_price_limit_x96, price, tick, liquidity, remaining)
        steps += 1
        crossed += initialized
        if exact_input:
            remaining -= amount_in + fee_amount
            calculated -= amount_out
        else:
            remaining += amount_out
            calculated += amount_in + fee_amount
    if zero_for_one == exact_input:
        amount0, amount1 = amount_specified - remaining, calculated
    else:
        amount0, amount1 = calculated, amount_specified - remaining
    if update:
        state.sqrt_price_x96, state.tick, state.liquidity = price, tick, liquidity
    return SwapResult(amount0, amount1, price, tick, liquidity, steps, crossed)


@dataclass(frozen=True)
class SwapPoint:
    """A swap loop between two steps: the pool's price, tick and liquidity there; ``specified``:
    what the steps so far used of the amount specified (input with fees for an exact input, output
    for an exact output), ``calculated``: the other side's amount, both >= 0; ``steps`` and
    ``crossed``: the loop's counts so far."""

    sqrt_price_x96: int
    tick: int
    liquidity: int
    specified: int
    calculated: int
    steps: int
    crossed: int


def max_swap_steps(state: PoolState) -> int:
    """Each step reaches the next word boundary or initialised tick: a bound on a swap's steps
    that only broken pool state (a tick spacing below 1) could exceed."""
    return 2 * (MAX_TICK - MIN_TICK) // (256 * max(1, state.tick_spacing)) + 2 * len(state.ticks) + 8


def swap_step(state: PoolState, zero_for_one: bool, sqrt_price_limit_x96: int, price: int, tick: int,
              liquidity: int, remaining: int) -> tuple[int, int, int, int, int, int, bool]:
    """One iteration of UniswapV3Pool.swap's loop from (price, tick, liquidity) with ``remaining``
    of the amount specified: -> (price, tick, liquidity after, amount_in, amount_out, fee_amount,
    whether an initialised tick was crossed)."""
    start = price
    tick_next, initialized = next_initialized_tick_within_one_word(state.ticks, tick, state.tick_spacing,
                                                                   zero_for_one)
    tick_next = min(max(tick_next, MIN_TICK), MAX_TICK)
    sqrt_next = get_sqrt_ratio_at_tick(tick_next)
    target = (sqrt_price_limit_x96 if (sqrt_next < sqrt_price_limit_x96 if zero_for_one
                                       else sqrt_next > sqrt_price_limit_x96) else sqrt_next)
    price, amount_in, amount_out, fee_amount = compute_swap_step(price, target, liquidity, remaining,
                                                                 state.fee_pips)
    crossed = False
    if price == sqrt_next:
        if initialized:
            net = state.liquidity_net[tick_next]
            liquidity += -net if zero_for_one else net
            if liquidity < 0:
                raise SwapMathError("liquidity below zero (inconsistent tick data)")
            crossed = True
        tick = tick_next - 1 if zero_for_one else tick_next
    elif price != start:
        tick = get_tick_at_sqrt_ratio(price)
    return price, tick, liquidity, amount_in, amount_out, fee_amount, crossed
