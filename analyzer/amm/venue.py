"""The venue model of a concentrated-liquidity pool, simulated to the wei.

A simulated trade returns the wei a real swap returns: the pool's state (``venues.params``, written
by a venue plugin's reader) goes through :func:`analyzer.amm.concentrated_liquidity.swap`, the
integer loop of ``UniswapV3Pool.swap`` (v3-core) that v4-core's ``Pool.swap`` also runs. Plugins
derive their model from :class:`ConcentratedLiquidityVenue` and name it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import ClassVar

from analyzer.amm import concentrated_liquidity as cl
from analyzer.amm import ladder
from analyzer.engine.venues import TradeResult, VenueModel
from analyzer.errors import ContagionError


def _check_pool_state(where: str, state: cl.PoolState, decimals0: int, decimals1: int, max_tick_spacing: int) -> None:
    """Refuse what no pool can hold (a tick spacing within 1..``max_tick_spacing``, fee < 1e6;
    TickMath's tick and price bounds; uint128 liquidity): the swap loop would divide by zero or
    never end on such a pool."""
    checks = (
        (0 < state.tick_spacing <= max_tick_spacing,
         f"tick_spacing must be within 1..{max_tick_spacing}, got {state.tick_spacing}"),
        (0 <= state.fee_pips < 1_000_000, f"fee must be within 0..999999 pips, got {state.fee_pips}"),
        (cl.MIN_SQRT_RATIO <= state.sqrt_price_x96 < cl.MAX_SQRT_RATIO, "sqrt_price_x96 is outside TickMath's range"),
        (cl.MIN_TICK <= state.tick <= cl.MAX_TICK, f"tick {state.tick} is outside {cl.MIN_TICK}..{cl.MAX_TICK}"),
        (0 <= state.liquidity < 2 ** 128, "liquidity must be a uint128"),
        (all(cl.MIN_TICK <= t <= cl.MAX_TICK for t in state.ticks), "an initialised tick is outside the tick range"),
        (all(abs(n) < 2 ** 128 for n in state.liquidity_net.values()), "a tick's liquidity_net is not an int128"),
        (0 <= decimals0 <= 77 and 0 <= decimals1 <= 77, "decimals must be within 0..77"),
    )
    for ok, problem in checks:
        if not ok:
            raise ContagionError(f"{where}: {problem}")


class ConcentratedLiquidityVenue(VenueModel):
    """A concentrated-liquidity pool, simulated exactly: :func:`analyzer.amm.concentrated_liquidity.swap`
    (the integer loop of ``UniswapV3Pool.swap`` across initialised ticks), so a simulated trade
    returns the wei a real swap returns. Whole-token amounts are converted to wei by truncation.
    A protocol's venue model derives from it and names its ``model`` (and its pools' largest tick
    spacing).

    Params (all integers as decimal strings where they may exceed 2**53): ``token0``, ``token1``,
    ``decimals0``, ``decimals1``, ``fee`` (pips), ``tick_spacing``, ``sqrt_price_x96``, ``tick``,
    ``liquidity``, ``ticks`` ([[tick, liquidity_net], ...] of every initialised tick). A sale larger
    than the pool's liquidity fills partly (``amount_in`` says how much) and leaves the price at the
    pool's extreme; a purchase larger than it raises ContagionError and leaves the state unchanged.
    """

    max_tick_spacing: ClassVar[int] = 32767    # TickMath.MAX_TICK_SPACING (type(int16).max)

    def __init__(self, asset: str, quote: str, params: dict, quote_price_usd: float = 1.0, venue: str = ""):
        super().__init__(asset, quote, quote_price_usd, venue)
        where = f"venue {venue or asset} ({self.model})"
        try:
            self.token0, self.token1 = str(params["token0"]), str(params["token1"])
            self.decimals0, self.decimals1 = int(params["decimals0"]), int(params["decimals1"])
            ticks = sorted((int(t), int(net)) for t, net in params["ticks"])
            self.state = cl.PoolState(int(params["sqrt_price_x96"]), int(params["tick"]), int(params["liquidity"]),
                                      int(params["fee"]), int(params["tick_spacing"]), [t for t, _ in ticks],
                                      dict(ticks))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContagionError(f"{where}: params need token0, token1, decimals0, decimals1, fee, tick_spacing, "
                                 f"sqrt_price_x96, tick, liquidity, ticks ({exc!r})") from None
        _check_pool_state(where, self.state, self.decimals0, self.decimals1, self.max_tick_spacing)
        self.orient_pair(self.token0, self.token1, self.decimals0, self.decimals1, where)
        self.last_swap: cl.SwapResult | None = None

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, dict(params), quote_price_usd, venue)

    def _price_of_sqrt(self, sqrt_price_x96: float) -> float:
        raw = (sqrt_price_x96 / cl.Q96) ** 2   # token1 wei per token0 wei
        if self.asset_is_token0:
            return raw * 10.0 ** (self.decimals0 - self.decimals1) * self.quote_price_usd
        return (10.0 ** (self.decimals1 - self.decimals0) / raw if raw > 0 else math.inf) * self.quote_price_usd

    @property
    def fee_fraction(self) -> float:
        return self.state.fee_pips / 1e6

    def mid_price(self) -> float:
        return self._price_of_sqrt(float(self.state.sqrt_price_x96))

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        raw = int(abs(asset_amount) * 10 ** self.asset_decimals)
        if raw == 0:
            return TradeResult(0.0, 0.0, before, before)
        sell = asset_amount > 0
        # selling token0 or buying token1 moves the pool price down (zeroForOne)
        zero_for_one = sell == self.asset_is_token0
        try:
            result = ladder.swap(self.state, zero_for_one, raw if sell else -raw, update=False)
        except cl.SwapMathError as exc:
            raise ContagionError(f"venue {self.venue or self.asset}: swap of {asset_amount:g} failed ({exc})") from None
        asset_raw = result.amount0 if self.asset_is_token0 else result.amount1
        if not sell and -asset_raw < raw:
            # like ConstantProduct: a purchase the pool cannot fill is an error, and the state is left as it was
            raise ContagionError(f"venue {self.venue or self.asset}: cannot buy {-asset_amount:g}, the pool's "
                                 f"liquidity holds {-asset_raw / 10 ** self.asset_decimals:g} of the asset")
        self.state.sqrt_price_x96, self.state.tick, self.state.liquidity = (result.sqrt_price_x96, result.tick,
                                                                            result.liquidity)
        self.last_swap = result
        quote_raw = result.amount1 if self.asset_is_token0 else result.amount0
        asset_units = abs(asset_raw) / 10 ** self.asset_decimals
        quote_units = abs(quote_raw) / 10 ** self.quote_decimals
        return self._result(asset_units, quote_units, before) if sell else self._result(quote_units, asset_units, before)

    def depth(self, fraction: float, sell: bool = True) -> float:
        """Asset units (fees ignored) that move the price by ``fraction``, walking the initialised ticks."""
        st = self.state
        sqrt_now = st.sqrt_price_x96 / cl.Q96
        ratio = (1.0 - fraction) if sell else (1.0 + fraction)
        down = sell == self.asset_is_token0     # pool price (token1 per token0) falls
        pool_ratio = ratio if self.asset_is_token0 else 1.0 / ratio
        sqrt_target = sqrt_now * math.sqrt(pool_ratio)
        liquidity, sqrt_cur, total = float(st.liquidity), sqrt_now, 0.0
        ticks = st.ticks
        i = bisect_right(ticks, st.tick) - 1 if down else bisect_right(ticks, st.tick)
        while True:
            edge = None
            if 0 <= i < len(ticks):
                edge = 1.0001 ** (ticks[i] / 2)
            end = max(edge, sqrt_target) if down and edge is not None else (
                min(edge, sqrt_target) if edge is not None else sqrt_target)
            total += liquidity * (abs(1.0 / end - 1.0 / sqrt_cur) if self.asset_is_token0 else abs(end - sqrt_cur))
            if end == sqrt_target or edge is None:
                break
            net = float(st.liquidity_net[ticks[i]])
            liquidity += -net if down else net
            sqrt_cur = end
            i += -1 if down else 1
        return total / 10 ** self.asset_decimals

    def copy(self) -> ConcentratedLiquidityVenue:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.state = self.state.copy()
        clone.last_swap = None
        return clone
