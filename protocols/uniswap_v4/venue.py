"""The Uniswap V4 venue model: a pool of the PoolManager simulated exactly. V4's ``Pool.swap`` runs
V3's integer loop (TickMath, SqrtPriceMath, SwapMath.computeSwapStep, crossing initialised ticks);
its one difference in a step, an exact-input step that stops inside a range books all of the
remaining input less the fee as ``amountIn`` where V3 recomputes it from the new price, moves the
split between input and fee, never the amounts swapped or the new price. So a hook-less pool with no
protocol fee swaps as :func:`analyzer.amm.concentrated_liquidity.swap` computes, at its ``lpFee``.

Params: those of :class:`analyzer.amm.venue.ConcentratedLiquidityVenue` (``fee`` the pool's lpFee in
pips), plus ``pool_manager``, ``key_fee`` (the PoolKey's fee field) and ``currency0``/``currency1`` (the
PoolKey's currencies), written by the reader. A native-ETH pool (currency0 address(0)) names WETH as
its ``token0``: ETH and WETH are exchanged 1:1, the pool maths is the same, so it is simulated as is.
"""

from __future__ import annotations

from analyzer.amm.venue import ConcentratedLiquidityVenue


class UniswapV4Venue(ConcentratedLiquidityVenue):
    """A pool of the PoolManager (v4-core TickMath.MAX_TICK_SPACING: 32767)."""

    model = "uniswap_v4"
    max_tick_spacing = 32767
