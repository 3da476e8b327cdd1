"""Price-impact venue models: how far a sale or purchase of an asset moves its price.

One interface (:class:`VenueModel`): ``trade(asset_amount)`` sells (``> 0``) or buys (``< 0``)
that many whole asset tokens into the venue, moves the venue's state, and returns a
:class:`TradeResult`. Prices are USD per whole asset token: the venue's own price in quote tokens
times ``quote_price_usd`` (1.0 for a stablecoin quote; the engine updates it for a WETH quote).

Models and their parameters (the ``params`` JSON of a ``venues`` row, see :mod:`analyzer.engine.impact`):

- :class:`ConstantProduct` (Uniswap V2 ``getAmountOut``: ``x*y = k`` with the fee taken on input)
- :class:`SqrtLaw` (square-root impact of Almgren et al. 2005 / Tóth et al. 2011)
- :class:`LinearDepth` (price moves linearly with cumulative flow: Kyle's lambda)
- :class:`UniswapV3Venue` (exact integer simulation of ``UniswapV3Pool.swap`` across initialised ticks)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np

from analyzer.engine import uniswap_v3_math as v3
from analyzer.errors import ContagionError


@dataclass
class TradeResult:
    """What one trade did. Selling: amount_in in asset units, amount_out in quote units.
    Buying: amount_in in quote units paid, amount_out in asset units received."""

    amount_in: float
    amount_out: float
    price_before: float     # USD per asset, mid price before
    price_after: float      # USD per asset, mid price after

    @property
    def price_impact(self) -> float:
        """Relative mid-price change (fraction, negative for a fall)."""
        return self.price_after / self.price_before - 1.0 if self.price_before else 0.0


class VenueModel(ABC):
    """A venue where ``asset`` trades against ``quote`` (addresses); mutable state, ``copy()`` for a fresh one."""

    model: str = ""

    def __init__(self, asset: str, quote: str, quote_price_usd: float = 1.0, venue: str = ""):
        if not (quote_price_usd > 0 and math.isfinite(quote_price_usd)):
            raise ContagionError(f"venue {venue or asset}: quote_price_usd must be positive, got {quote_price_usd!r}")
        self.asset = asset
        self.quote = quote
        self.quote_price_usd = float(quote_price_usd)
        self.venue = venue

    @abstractmethod
    def mid_price(self) -> float:
        """USD per whole asset token at the current state."""

    @abstractmethod
    def trade(self, asset_amount: float) -> TradeResult:
        """Sell ``asset_amount`` (> 0) or buy ``-asset_amount`` (< 0) whole asset tokens."""

    @abstractmethod
    def depth(self, fraction: float, sell: bool = True) -> float:
        """Asset units that move the mid price by ``fraction`` (down when selling, up when buying)."""

    @abstractmethod
    def copy(self) -> VenueModel:
        ...

    def _result(self, amount_in: float, amount_out: float, before: float) -> TradeResult:
        return TradeResult(float(amount_in), float(amount_out), before, self.mid_price())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(asset={self.asset}, venue={self.venue}, mid={self.mid_price():.6g})"


class ConstantProduct(VenueModel):
    """Uniswap V2 pair: reserves ``reserve_asset``, ``reserve_quote`` (whole tokens), ``fee`` (fraction).

    Mirrors ``UniswapV2Library.getAmountOut``: ``out = y * dx(1-f) / (x + dx(1-f))`` and
    ``getAmountIn``: ``in = x * dy / ((y - dy)(1-f))``; the whole input (fee included) is added to
    the reserves, as ``UniswapV2Pair.swap`` does. Mid price = ``y / x`` quote per asset.
    """

    model = "constant_product"

    def __init__(self, asset: str, quote: str, reserve_asset: float, reserve_quote: float, fee: float = 0.003,
                 quote_price_usd: float = 1.0, venue: str = ""):
        super().__init__(asset, quote, quote_price_usd, venue)
        if not (reserve_asset > 0 and reserve_quote > 0 and 0 <= fee < 1):
            raise ContagionError(f"venue {venue or asset}: constant_product needs positive reserves and 0 <= fee < 1")
        self.reserve_asset, self.reserve_quote, self.fee = float(reserve_asset), float(reserve_quote), float(fee)

    def mid_price(self) -> float:
        return self.reserve_quote / self.reserve_asset * self.quote_price_usd

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        x, y, keep = self.reserve_asset, self.reserve_quote, 1.0 - self.fee
        if asset_amount >= 0:
            out = y * asset_amount * keep / (x + asset_amount * keep)
            self.reserve_asset, self.reserve_quote = x + asset_amount, y - out
            return self._result(asset_amount, out, before)
        want = -asset_amount
        if want >= x:
            raise ContagionError(f"venue {self.venue or self.asset}: cannot buy {want:g}, "
                                 f"the pool holds {x:g} of the asset")
        paid = y * want / ((x - want) * keep)
        self.reserve_asset, self.reserve_quote = x - want, y + paid
        return self._result(paid, want, before)

    def quotes(self, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each size q (> 0) a trade from the current state, which is not moved: the quote
        units a sale of q returns and those a purchase of q costs (inf where the pool cannot fill
        it). The arithmetic of :meth:`trade`, so the same floats, for every size at once."""
        x, y, keep = self.reserve_asset, self.reserve_quote, 1.0 - self.fee
        sizes = np.asarray(sizes, dtype=float)
        proceeds = y * sizes * keep / (x + sizes * keep)
        fills = sizes < x
        cost = np.full(sizes.shape, np.inf)
        cost[fills] = y * sizes[fills] / ((x - sizes[fills]) * keep)
        return proceeds, cost

    def depth(self, fraction: float, sell: bool = True) -> float:
        # y/x falls to (1-f)·p when x grows by 1/sqrt(1-f) (k constant, fee ignored)
        ratio = 1.0 - fraction if sell else 1.0 + fraction
        return abs(self.reserve_asset * (1.0 / math.sqrt(ratio) - 1.0))

    def copy(self) -> ConstantProduct:
        return ConstantProduct(self.asset, self.quote, self.reserve_asset, self.reserve_quote, self.fee,
                               self.quote_price_usd, self.venue)


class _CumulativeFlowModel(VenueModel):
    """A venue whose price is a function of the cumulative net asset flow ``flow`` sold into it:
    ``p(Q) = p0 * g(Q)``, proceeds of a trade from Q to Q' are the integral of p over [Q, Q']."""

    def __init__(self, asset: str, quote: str, price_usd: float, quote_price_usd: float = 1.0,
                 venue: str = "", flow: float = 0.0):
        super().__init__(asset, quote, quote_price_usd, venue)
        if not (price_usd > 0 and math.isfinite(price_usd)):
            raise ContagionError(f"venue {venue or asset}: {self.model} needs a positive price_usd, got {price_usd!r}")
        self.price0_usd = float(price_usd)
        self.flow = float(flow)

    @abstractmethod
    def _fraction(self, flow: float) -> float:
        """g(Q): price at flow Q over p0, >= 0."""

    @abstractmethod
    def _integral(self, flow: float) -> float:
        """G(Q) = integral of g from 0 to Q (asset units)."""

    def mid_price(self) -> float:
        return self.price0_usd * self._fraction(self.flow)

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        start, end = self.flow, self.flow + asset_amount
        value_usd = self.price0_usd * (self._integral(end) - self._integral(start))
        self.flow = end
        quote_units = abs(value_usd) / self.quote_price_usd
        if asset_amount >= 0:
            return self._result(asset_amount, quote_units, before)
        return self._result(quote_units, -asset_amount, before)


class SqrtLaw(_CumulativeFlowModel):
    """Square-root impact: ``Δp/p = -sign(Q) · Y · σ · sqrt(|Q| / V)`` for cumulative net sales Q.

    Parameters: ``sigma`` daily volatility (fraction, e.g. 0.04), ``daily_volume`` V (asset units
    traded per day), ``y`` the order-one prefactor Y (Tóth et al. 2011 "Anomalous price impact and
    the critical nature of liquidity", PRX 1, 021006, measure Y ≈ 0.5–1; default 1.0), ``price_usd``
    p0. The price at flow Q is ``p0 (1 - k sign(Q) sqrt|Q|)`` with ``k = Y σ / sqrt(V)``, floored at 0
    (reached at ``|Q| = 1/k²`` when selling); proceeds are its integral
    ``p0 (Q - (2/3) k |Q|^{3/2})``, so a single trade from rest executes at an average price of
    ``p0 (1 - (2/3) Y σ sqrt(q/V))`` (the 2/3 of the metaorder literature). The impact is
    treated as permanent within a cascade (no decay between rounds).
    """

    model = "sqrt_law"

    def __init__(self, asset: str, quote: str, price_usd: float, sigma: float, daily_volume: float,
                 y: float = 1.0, quote_price_usd: float = 1.0, venue: str = "", flow: float = 0.0):
        if not (sigma > 0 and daily_volume > 0 and y > 0):
            raise ContagionError(f"venue {venue or asset}: sqrt_law needs positive sigma, daily_volume and y")
        self.sigma, self.daily_volume, self.y = float(sigma), float(daily_volume), float(y)
        self.k = self.y * self.sigma / math.sqrt(self.daily_volume)
        self.floor_flow = 1.0 / self.k ** 2   # sales beyond this leave the price at 0
        super().__init__(asset, quote, price_usd, quote_price_usd, venue, flow)

    def _fraction(self, flow: float) -> float:
        if flow >= 0:
            return max(1.0 - self.k * math.sqrt(flow), 0.0)
        return 1.0 + self.k * math.sqrt(-flow)

    def _integral(self, flow: float) -> float:
        if flow > self.floor_flow:
            flow = self.floor_flow   # g is 0 beyond: nothing more is earned
        return flow - (2.0 / 3.0) * self.k * abs(flow) ** 1.5

    def depth(self, fraction: float, sell: bool = True) -> float:
        # from the current flow Q, find |ΔQ| so that g moves by fraction·g(Q)
        target = self._fraction(self.flow) * ((1.0 - fraction) if sell else (1.0 + fraction))
        signed = (1.0 - target) / self.k   # = sign(Q')·sqrt|Q'|
        new_flow = math.copysign(signed * signed, signed)
        return abs(new_flow - self.flow)

    def copy(self) -> SqrtLaw:
        return SqrtLaw(self.asset, self.quote, self.price0_usd, self.sigma, self.daily_volume, self.y,
                       self.quote_price_usd, self.venue, self.flow)


class LinearDepth(_CumulativeFlowModel):
    """Linear impact (Kyle 1985, "Continuous auctions and insider trading"): ``p(Q) = p0 (1 - Q / D)``.

    ``depth_1pct``: asset units whose sale moves the price down 1% from p0 (so ``D = 100 · depth_1pct``),
    ``price_usd`` p0. Proceeds are the integral ``p0 (Q - Q²/(2D))``; the price is floored at 0
    (flow beyond D earns nothing).
    """

    model = "linear"

    def __init__(self, asset: str, quote: str, price_usd: float, depth_1pct: float, quote_price_usd: float = 1.0,
                 venue: str = "", flow: float = 0.0):
        if not depth_1pct > 0:
            raise ContagionError(f"venue {venue or asset}: linear needs a positive depth_1pct")
        self.depth_1pct = float(depth_1pct)
        self.full_depth = 100.0 * self.depth_1pct
        super().__init__(asset, quote, price_usd, quote_price_usd, venue, flow)

    def _fraction(self, flow: float) -> float:
        return max(1.0 - flow / self.full_depth, 0.0)

    def _integral(self, flow: float) -> float:
        flow = min(flow, self.full_depth)
        return flow - flow * flow / (2.0 * self.full_depth)

    def depth(self, fraction: float, sell: bool = True) -> float:
        return fraction * self._fraction(self.flow) * self.full_depth

    def copy(self) -> LinearDepth:
        return LinearDepth(self.asset, self.quote, self.price0_usd, self.depth_1pct, self.quote_price_usd,
                           self.venue, self.flow)


def _check_pool_state(where: str, state: v3.PoolState, decimals0: int, decimals1: int) -> None:
    """Refuse what no UniswapV3Pool can hold (UniswapV3Factory.enableFeeAmount: 0 < tickSpacing <
    16384, fee < 1e6; TickMath's tick and price bounds; uint128 liquidity): the swap loop would
    divide by zero or never end on such a pool."""
    checks = (
        (0 < state.tick_spacing < 16384, f"tick_spacing must be within 1..16383, got {state.tick_spacing}"),
        (0 <= state.fee_pips < 1_000_000, f"fee must be within 0..999999 pips, got {state.fee_pips}"),
        (v3.MIN_SQRT_RATIO <= state.sqrt_price_x96 < v3.MAX_SQRT_RATIO, "sqrt_price_x96 is outside TickMath's range"),
        (v3.MIN_TICK <= state.tick <= v3.MAX_TICK, f"tick {state.tick} is outside {v3.MIN_TICK}..{v3.MAX_TICK}"),
        (0 <= state.liquidity < 2 ** 128, "liquidity must be a uint128"),
        (all(v3.MIN_TICK <= t <= v3.MAX_TICK for t in state.ticks), "an initialised tick is outside the tick range"),
        (all(abs(n) < 2 ** 128 for n in state.liquidity_net.values()), "a tick's liquidity_net is not an int128"),
        (0 <= decimals0 <= 77 and 0 <= decimals1 <= 77, "decimals must be within 0..77"),
    )
    for ok, problem in checks:
        if not ok:
            raise ContagionError(f"{where}: {problem}")


class UniswapV3Venue(VenueModel):
    """A Uniswap V3 pool, simulated exactly: :func:`analyzer.engine.uniswap_v3_math.swap` (the integer loop of
    ``UniswapV3Pool.swap`` across initialised ticks), so a simulated trade returns the wei a real
    swap returns. Whole-token amounts are converted to wei by truncation.

    Params (all integers as decimal strings where they may exceed 2**53): ``token0``, ``token1``,
    ``decimals0``, ``decimals1``, ``fee`` (pips), ``tick_spacing``, ``sqrt_price_x96``, ``tick``,
    ``liquidity``, ``ticks`` ([[tick, liquidity_net], ...] of every initialised tick). A sale larger
    than the pool's liquidity fills partly (``amount_in`` says how much) and leaves the price at the
    pool's extreme; a purchase larger than it raises ContagionError and leaves the state unchanged.
    """

    model = "uniswap_v3"

    def __init__(self, asset: str, quote: str, params: dict, quote_price_usd: float = 1.0, venue: str = ""):
        super().__init__(asset, quote, quote_price_usd, venue)
        where = f"venue {venue or asset} (uniswap_v3)"
        try:
            self.token0, self.token1 = str(params["token0"]), str(params["token1"])
            self.decimals0, self.decimals1 = int(params["decimals0"]), int(params["decimals1"])
            ticks = sorted((int(t), int(net)) for t, net in params["ticks"])
            self.state = v3.PoolState(int(params["sqrt_price_x96"]), int(params["tick"]), int(params["liquidity"]),
                                      int(params["fee"]), int(params["tick_spacing"]), [t for t, _ in ticks],
                                      dict(ticks))
        except (KeyError, TypeError, ValueError) as exc:
            raise ContagionError(f"{where}: params need token0, token1, decimals0, decimals1, fee, tick_spacing, "
                                 f"sqrt_price_x96, tick, liquidity, ticks ({exc!r})") from None
        _check_pool_state(where, self.state, self.decimals0, self.decimals1)
        if asset.lower() not in (self.token0.lower(), self.token1.lower()):
            raise ContagionError(f"{where}: asset {asset} is neither token0 {self.token0} nor token1 {self.token1}")
        self.asset_is_token0 = asset.lower() == self.token0.lower()
        self.asset_decimals = self.decimals0 if self.asset_is_token0 else self.decimals1
        self.quote_decimals = self.decimals1 if self.asset_is_token0 else self.decimals0
        self.last_swap: v3.SwapResult | None = None

    def _price_of_sqrt(self, sqrt_price_x96: float) -> float:
        raw = (sqrt_price_x96 / v3.Q96) ** 2   # token1 wei per token0 wei
        if self.asset_is_token0:
            return raw * 10.0 ** (self.decimals0 - self.decimals1) * self.quote_price_usd
        return (10.0 ** (self.decimals1 - self.decimals0) / raw if raw > 0 else math.inf) * self.quote_price_usd

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
            result = v3.swap(self.state, zero_for_one, raw if sell else -raw, update=False)
        except v3.SwapMathError as exc:
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
        sqrt_now = st.sqrt_price_x96 / v3.Q96
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

    def copy(self) -> UniswapV3Venue:
        clone = object.__new__(UniswapV3Venue)
        clone.__dict__.update(self.__dict__)
        clone.state = self.state.copy()
        clone.last_swap = None
        return clone
