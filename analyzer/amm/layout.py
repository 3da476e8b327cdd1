"""How a devnet lays liquidity out in a concentrated-liquidity pool: the start price from two USD
prices, nested ranges around it (deep near the price, thin in the tails) and each range's liquidity
from its USD value.

A scenario's ``ranges`` are ``[[half_width, share], ...]``: a half width is a fraction of the price
(>= 1 means the full tick range), a share is that range's part of the pool's ``tvl_usd``.

Worked example: a WETH (18 decimals, token0) / USDC (6 decimals) pool at $3000 holds 3000e6
USDC wei per 1e18 WETH wei, so ``sqrt_price_x96_of(Fraction(3000), Fraction(1), 18, 6, True)`` is
``isqrt(3 * 2**192 // 10**9)``; ``range_ticks(that, 0.01, 10)`` bounds prices 0.99 p .. 1.01 p on
multiples of 10.
"""

from __future__ import annotations

import math
from fractions import Fraction
from math import isqrt
from typing import Any

from analyzer.amm.concentrated_liquidity import (
    MAX_TICK,
    MIN_TICK,
    Q96,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)
from analyzer.errors import ContagionError


def sqrt_price_x96_of(asset_price_usd: Fraction, quote_price_usd: Fraction, asset_decimals: int,
                      quote_decimals: int, asset_is_token0: bool) -> int:
    """floor(sqrt(token1 wei per token0 wei) * 2**96) for the given USD prices, exact rationals."""
    quote_wei_per_asset_wei = (asset_price_usd / quote_price_usd) * Fraction(10**quote_decimals, 10**asset_decimals)
    raw = quote_wei_per_asset_wei if asset_is_token0 else 1 / quote_wei_per_asset_wei
    return isqrt(raw.numerator * (1 << 192) // raw.denominator)


def range_ticks(sqrt_price_x96: int, half_width: float, tick_spacing: int) -> tuple[int, int]:
    """Ticks (multiples of the spacing) bounding prices ``P·(1 - w)`` .. ``P·(1 + w)``; full range for w >= 1."""
    low_full = -(-MIN_TICK // tick_spacing) * tick_spacing
    high_full = (MAX_TICK // tick_spacing) * tick_spacing
    if half_width >= 1:
        return low_full, high_full
    tick = get_tick_at_sqrt_ratio(sqrt_price_x96)
    lower = tick + math.floor(math.log(1 - half_width) / math.log(1.0001))
    upper = tick + math.ceil(math.log(1 + half_width) / math.log(1.0001))
    lower = max((lower // tick_spacing) * tick_spacing, low_full)
    upper = min(-(-upper // tick_spacing) * tick_spacing, high_full)
    if upper - lower < 2 * tick_spacing:
        lower, upper = (tick // tick_spacing) * tick_spacing, (tick // tick_spacing + 1) * tick_spacing
    return lower, upper


def amounts_per_liquidity(sqrt_price_x96: int, lower: int, upper: int) -> tuple[float, float]:
    """Token0 and token1 wei per unit of liquidity of a position on [lower, upper] at the current
    price (LiquidityAmounts.getAmountsForLiquidity with liquidity 1, in floats)."""
    s = sqrt_price_x96 / Q96
    sa, sb = get_sqrt_ratio_at_tick(lower) / Q96, get_sqrt_ratio_at_tick(upper) / Q96
    s = min(max(s, sa), sb)
    return 1 / s - 1 / sb, s - sa


def liquidity_for_value(sqrt_price_x96: int, lower: int, upper: int, value_usd: float, price0_usd: float,
                        price1_usd: float, decimals0: int, decimals1: int) -> float:
    """Liquidity of a position on [lower, upper] worth ``value_usd`` at the current price, its
    amounts valued at the given USD prices of whole tokens."""
    per_l0, per_l1 = amounts_per_liquidity(sqrt_price_x96, lower, upper)
    usd_per_l = per_l0 / 10**decimals0 * price0_usd + per_l1 / 10**decimals1 * price1_usd
    return value_usd / usd_per_l


def liquidity_ranges(ranges: Any, where: str) -> list[tuple[float, float]]:
    """A scenario's LP ranges (module docstring: ``[[half_width, share], ...]``, positive numbers)."""
    if (not isinstance(ranges, list) or not ranges
            or not all(isinstance(r, list) and len(r) == 2 and all(isinstance(x, int | float) for x in r) and r[0] > 0
                       and r[1] > 0 for r in ranges)):
        raise ContagionError(f"{where}.ranges: expected [[half_width, share], ...] with positive numbers")
    return [(float(w), float(s)) for w, s in ranges]
