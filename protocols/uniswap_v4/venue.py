"""The Uniswap V4 venue model: a pool of the PoolManager simulated exactly. V4's ``Pool.swap`` runs
V3's integer loop (TickMath, SqrtPriceMath, SwapMath.computeSwapStep, crossing initialised ticks);
its one difference in a step, an exact-input step that stops inside a range books all of the
remaining input less the fee as ``amountIn`` where V3 recomputes it from the new price, moves the
split between input and fee, never the amounts swapped or the new price. So a hook-less pool with no
protocol fee swaps as :func:`protocols.uniswap_v3.swap_math.swap` computes, at its ``lpFee``.

Params: those of :class:`protocols.uniswap_v3.venue.UniswapV3Venue` (``fee`` the pool's lpFee in
pips), plus ``pool_manager`` and ``key_fee`` (the PoolKey's fee field), written by the reader.
"""

from __future__ import annotations

from protocols.uniswap_v3.venue import UniswapV3Venue


class UniswapV4Venue(UniswapV3Venue):
    model = "uniswap_v4"

    def copy(self) -> UniswapV4Venue:
        clone = object.__new__(UniswapV4Venue)
        clone.__dict__.update(self.__dict__)
        clone.state = self.state.copy()
        clone.last_swap = None
        return clone
