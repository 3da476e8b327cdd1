"""The Uniswap V3 venue model: a pool simulated exactly, so a simulated trade returns the wei a real
swap returns (:class:`analyzer.amm.venue.ConcentratedLiquidityVenue`, the integer loop of
``UniswapV3Pool.swap``).

Its ``venues.params`` (written by :mod:`protocols.uniswap_v3.reader`; integers beyond 2**53 as
decimal strings): ``token0``, ``token1``, ``decimals0``, ``decimals1``, ``fee`` (pips),
``tick_spacing``, ``sqrt_price_x96``, ``tick``, ``liquidity``, ``ticks`` ([[tick, liquidity_net], ...]).
"""

from __future__ import annotations

from analyzer.amm.venue import ConcentratedLiquidityVenue


class UniswapV3Venue(ConcentratedLiquidityVenue):
    """A Uniswap V3 pool (UniswapV3Factory.enableFeeAmount requires 0 < tickSpacing < 16384)."""

    model = "uniswap_v3"
    max_tick_spacing = 16383
