"""Price-impact venue models: how far a sale or purchase of an asset moves its price.

One interface (:class:`VenueModel`): ``trade(asset_amount)`` sells (``> 0``) or buys (``< 0``)
that many whole asset tokens into the venue, moves the venue's state, and returns a
:class:`TradeResult`. Prices are USD per whole asset token: the venue's own price in quote tokens
times ``quote_price_usd`` (1.0 for a stablecoin quote; the engine updates it for a WETH quote).

Models and their parameters (the ``params`` JSON of a ``venues`` row, see :mod:`analyzer.engine.impact`):

- :class:`ConstantProduct` (Uniswap V2 ``getAmountOut``: ``x*y = k`` with the fee taken on input)
- :class:`SqrtLaw` (square-root impact of Almgren et al. 2005 / Tóth et al. 2011)
- :class:`LinearDepth` (price moves linearly with cumulative flow: Kyle's lambda)

Venue plugins add their own models (exact pool simulations: Uniswap V3 in ``protocols/uniswap_v3``)
by listing :class:`VenueModel` subclasses in their ``Plugin.venue_models``; each names its
``model`` (the ``venues.model`` value) and builds itself from a row with :meth:`VenueModel.from_params`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

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


def number_param(params: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    """``params[key]`` as a finite float (``default`` when absent); an error names ``where`` otherwise."""
    value = params.get(key, default)
    if value is None:
        raise ContagionError(f"{where}: missing parameter {key!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ContagionError(f"{where}: parameter {key!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ContagionError(f"{where}: parameter {key!r} must be finite, got {value!r}")
    return number


class VenueModel(ABC):
    """A venue where ``asset`` trades against ``quote`` (addresses); mutable state, ``copy()`` for a fresh one.

    A subclass names its ``model`` (the value of ``venues.model`` it simulates) and builds itself
    from a ``venues`` row with :meth:`from_params`; the engine finds the generic models here and a
    plugin's in its ``Plugin.venue_models``.
    """

    model: ClassVar[str] = ""
    # a centralised exchange's book (off-chain: never a swap on the chain), the price reference
    # that arbitrageurs pull an asset's pools back to (:mod:`analyzer.engine.arbitrage`)
    centralised: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_params(cls, asset: str, quote: str, params: Mapping[str, Any], *, asset_price_usd: float | None,
                    quote_price_usd: float, venue: str, where: str) -> VenueModel:
        """The venue of one ``venues`` row: ``params`` is its JSON object, ``asset_price_usd`` the
        snapshot's price of the asset (None when it has none), ``where`` names the row in errors
        (raise :class:`~analyzer.errors.ContagionError` for bad params)."""

    def __init__(self, asset: str, quote: str, quote_price_usd: float = 1.0, venue: str = ""):
        if not (quote_price_usd > 0 and math.isfinite(quote_price_usd)):
            raise ContagionError(f"venue {venue or asset}: quote_price_usd must be positive, got {quote_price_usd!r}")
        self.asset = asset
        self.quote = quote
        self.quote_price_usd = float(quote_price_usd)
        self.venue = venue

    def orient_pair(self, token0: str, token1: str, decimals0: int, decimals1: int, where: str) -> None:
        """For a two-token pool of ``token0``/``token1``: which side is the asset
        (``asset_is_token0``) and each side's decimals; an asset the pool does not hold is a
        ContagionError."""
        if self.asset.lower() not in (token0.lower(), token1.lower()):
            raise ContagionError(f"{where}: asset {self.asset} is neither token0 {token0} nor token1 {token1}")
        self.asset_is_token0 = self.asset.lower() == token0.lower()
        self.asset_decimals = decimals0 if self.asset_is_token0 else decimals1
        self.quote_decimals = decimals1 if self.asset_is_token0 else decimals0

    @abstractmethod
    def mid_price(self) -> float:
        """USD per whole asset token at the current state."""

    @property
    def fee_fraction(self) -> float:
        """The share of a trade's input the venue keeps as its fee (0 for models without one):
        a marginal sale earns mid × (1 − fee), a marginal purchase costs mid / (1 − fee)."""
        return 0.0

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

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, number_param(params, "reserve_asset", where), number_param(params, "reserve_quote", where),
                   number_param(params, "fee", where, 0.003), quote_price_usd, venue)

    def mid_price(self) -> float:
        return self.reserve_quote / self.reserve_asset * self.quote_price_usd

    @property
    def fee_fraction(self) -> float:
        return self.fee

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
    centralised = True

    def __init__(self, asset: str, quote: str, price_usd: float, sigma: float, daily_volume: float,
                 y: float = 1.0, quote_price_usd: float = 1.0, venue: str = "", flow: float = 0.0):
        if not (sigma > 0 and daily_volume > 0 and y > 0):
            raise ContagionError(f"venue {venue or asset}: sqrt_law needs positive sigma, daily_volume and y")
        self.sigma, self.daily_volume, self.y = float(sigma), float(daily_volume), float(y)
        self.k = self.y * self.sigma / math.sqrt(self.daily_volume)
        self.floor_flow = 1.0 / self.k ** 2   # sales beyond this leave the price at 0
        super().__init__(asset, quote, price_usd, quote_price_usd, venue, flow)

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, number_param(params, "price_usd", where, asset_price_usd),
                   number_param(params, "sigma", where), number_param(params, "daily_volume", where),
                   number_param(params, "y", where, 1.0), quote_price_usd, venue)

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

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, number_param(params, "price_usd", where, asset_price_usd),
                   number_param(params, "depth_1pct", where), quote_price_usd, venue)

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
