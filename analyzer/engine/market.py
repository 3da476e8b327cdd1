"""The engine's view of the market: slippage curves and venue helpers.

A *slippage curve* per asset is the average execution price of a trade of size q on a copy of the
venues at the round's starting state, as a fraction of the mid (sampled on a geometric grid,
linearly interpolated), with :meth:`SlippageCurve.exact_value` to value a trade on real copies of
the venues. What a keeper makes of them is :mod:`analyzer.engine.keeper_share`.
"""

from __future__ import annotations

import hashlib
import math
import pickle

import numpy as np

from analyzer.engine.impact import AssetVenues, ConstantProduct
from analyzer.errors import ContagionError

CURVE_POINTS = 24
_GRID = np.geomspace(1e-10, 1.0, CURVE_POINTS)   # curve sizes as fractions of the largest


class SlippageCurve:
    """Average execution price over mid for sales (``sell``) and purchases (``buy``) of size ``q``."""

    def __init__(self, sizes: np.ndarray, sell: np.ndarray, buy: np.ndarray, buy_limit: float,
                 exact: tuple[float, float, float, float] | None = None, venues: AssetVenues | None = None):
        self.sizes, self.sell, self.buy, self.buy_limit = sizes, sell, buy, buy_limit
        # a single constant-product venue: (reserve_asset, reserve_quote, 1 - fee, quote USD / mid),
        # so keepers value their trades with the pool's own closed form, not the sampled grid
        self.exact = exact
        # any other venues: a copy at the sampled state, to value a trade exactly where the sampled
        # grid's bounds cannot decide a keeper (:func:`analyzer.engine.keeper_share.keeper_fraction`)
        self.venues = venues
        self.mid = venues.mid_price() if venues is not None else 1.0
        self._exact_values: dict[tuple[bool, float], float] = {}

    def exact_value(self, q: float, sell: bool) -> float:
        """``q · sell_fraction(q)`` (or ``q · buy_fraction(q)``) from a real trade of ``q`` on a copy
        of the sampled venues (routed across them), not the grid; memoised per size."""
        key = (sell, float(q))
        if key not in self._exact_values:
            if q <= 0 or self.venues is None:
                at = np.asarray(q, dtype=float)
                value = 0.0 if q <= 0 else float(q * (self.sell_fraction(at) if sell else self.buy_fraction(at)))
            else:
                try:
                    trade = self.venues.copy().trade(q if sell else -q)
                    value = (trade.amount_out if sell else trade.amount_in) / self.mid
                except ContagionError:
                    value = math.inf      # a purchase beyond what the venues hold
            self._exact_values[key] = value
        return self._exact_values[key]

    @classmethod
    def flat(cls) -> SlippageCurve:
        return cls(np.array([0.0, 1e300]), np.ones(2), np.ones(2), math.inf)

    @classmethod
    def sample(cls, venues: AssetVenues) -> SlippageCurve:
        sell_max = sum(v.depth(0.99, True) for v in venues.venues)
        buy_max = sum(v.depth(20.0, False) for v in venues.venues)
        mid = venues.mid_price()
        top = max(sell_max, buy_max)
        if not math.isfinite(top) or top <= 0:
            top = max(x for x in (sell_max, buy_max, 0.0) if math.isfinite(x))
        if not (top > 0 and math.isfinite(top) and mid > 0):
            return cls.flat()
        sizes = np.concatenate([[0.0], top * _GRID])
        sell = np.ones(len(sizes))
        buy = np.full(len(sizes), np.inf)
        buy[0] = 1.0
        exact = None
        if len(venues.venues) == 1 and type(venues.venues[0]) is ConstantProduct:
            # the same trades in closed form, all sizes at once (ConstantProduct.quotes)
            pool = venues.venues[0]
            exact = (pool.reserve_asset, pool.reserve_quote, 1.0 - pool.fee, pool.quote_price_usd / mid)
            proceeds, cost = venues.venues[0].quotes(sizes[1:])
            sell[1:] = proceeds * venues.venues[0].quote_price_usd / (sizes[1:] * mid)
            fills = sizes[1:] <= buy_max
            failed = np.flatnonzero(fills & ~np.isfinite(cost))
            if len(failed):
                fills[failed[0]:] = False
            buy[1:][fills] = cost[fills] * venues.venues[0].quote_price_usd / (sizes[1:][fills] * mid)
        else:
            for i, q in enumerate(sizes[1:], start=1):   # a fixed grid per asset, not per account
                # beyond the venues' liquidity a sale fills at the pool's extreme: proceeds stop growing
                sell[i] = venues.copy().trade(q).amount_out / (q * mid)
                if q <= buy_max:
                    try:
                        buy[i] = venues.copy().trade(-q).amount_in / (q * mid)
                    except ContagionError:
                        break
        return cls(sizes, sell, buy, float(sizes[np.isfinite(buy)][-1]), exact,
                   None if exact is not None else venues.copy())

    def sell_fraction(self, q: np.ndarray) -> np.ndarray:
        """Beyond the sampled grid, proceeds stay at those of the largest sampled sale."""
        q = np.asarray(q, dtype=float)
        top = self.sizes[-1]
        out = np.asarray(np.interp(q, self.sizes, self.sell), dtype=float).copy()
        # divided only where it applies: q <= top may be 0 (and top may be 1e300 for a flat curve)
        np.divide(self.sell[-1] * top, q, out=out, where=q > top)
        return out if out.ndim else out[()]

    def buy_fraction(self, q: np.ndarray) -> np.ndarray:
        """Beyond the largest purchase the venues can fill (``buy_limit``) the cost is infinite."""
        finite = np.isfinite(self.buy)
        out = np.interp(q, self.sizes[finite], self.buy[finite])
        return np.where(q > self.buy_limit * (1 + 1e-12), np.inf, out)


SAMPLED_CURVES_KEPT = 256
_SAMPLED: dict[bytes, SlippageCurve] = {}     # per process: venues' state digest -> their sampled curve


def sampled_curve(venues: AssetVenues) -> SlippageCurve:
    """:meth:`SlippageCurve.sample` of ``venues``, memoised per process by the venues' whole state
    (a digest of their pickled bytes, so a curve is reused only for an equal state): cascades that
    pass through the same pool states (the candidates of a parameter search, the scenarios of a
    sweep) share the sampling and the exact trades already valued on the curve. The
    ``SAMPLED_CURVES_KEPT`` most recently used are kept."""
    try:
        key = hashlib.blake2b(pickle.dumps(venues, protocol=pickle.HIGHEST_PROTOCOL), digest_size=20).digest()
    except (pickle.PicklingError, TypeError, AttributeError):
        return SlippageCurve.sample(venues)
    curve = _SAMPLED.pop(key, None)
    if curve is None:
        curve = SlippageCurve.sample(venues)
        while len(_SAMPLED) >= SAMPLED_CURVES_KEPT:
            _SAMPLED.pop(next(iter(_SAMPLED)))
    _SAMPLED[key] = curve            # last: the most recently used
    return curve


def venue_depth(venues: AssetVenues, fraction: float, sell: bool = True) -> float:
    return float(sum(v.depth(fraction, sell) for v in venues.venues))


def safe_trade(venues: AssetVenues, amount: float) -> float:
    """Trade ``amount`` (asset units, > 0 sells); a purchase the venues cannot fill is halved until
    it can be (the squeeze leaves the price at the venues' extreme). Returns the amount filled."""
    for _ in range(60):
        try:
            venues.trade(amount)
            return amount
        except ContagionError:
            amount *= 0.5
    return 0.0


def move_to_price(venues: AssetVenues, target_usd: float) -> None:
    """Arbitrage the venues to ``target_usd`` (the trade an arbitrageur would make against a CEX move)."""
    mid = venues.mid_price()
    if not (target_usd > 0 and mid > 0) or abs(target_usd / mid - 1.0) < 1e-13:
        return
    sell = target_usd < mid
    sign = 1.0 if sell else -1.0

    def after(q: float) -> float:
        trial = venues.copy()
        try:
            trial.trade(sign * q)
        except ContagionError:
            return 0.0 if sell else math.inf
        return trial.mid_price()

    def beyond(price: float) -> bool:
        return price <= target_usd if sell else price >= target_usd

    hi = max(venue_depth(venues, abs(1.0 - target_usd / mid), sell), 1e-12)
    for _ in range(200):
        if beyond(after(hi)):
            break
        hi *= 2.0
    lo = 0.0
    for _ in range(100):
        mid_q = 0.5 * (lo + hi)
        if beyond(after(mid_q)):
            hi = mid_q
        else:
            lo = mid_q
    safe_trade(venues, sign * hi)
