"""The engine's view of the market: venue helpers and the keeper's profitability test.

Keeper economics (the mechanism behind partial liquidations and bad debt in thin markets): a
keeper liquidates only when the liquidation bonus it receives covers the slippage of selling the
seized collateral and of buying the debt asset it repays, plus a gas cost. Slippage comes from a
*slippage curve* per asset: the average execution price of a trade of size q on a copy of the
venues at the round's starting state, as a fraction of the mid (sampled on a geometric grid,
linearly interpolated). Keepers of a round queue (see :func:`keeper_fraction`): a keeper behind
others sells into what they left, so a thin pool stops the queue instead of absorbing every sale.

It may take a fraction f ∈ {1, 1/2, …, 1/64} of the largest liquidation the protocol's rule allows
(``debtToCover`` below the maximum in Aave's ``liquidationCall``, a smaller ``repayAmount`` in
Compound): it takes the largest f whose profit is positive, or none. Keepers compete (priority
gas auctions), so any liquidation that pays is taken whole; only one that does not pay at full
size is cut down.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.engine.impact import AssetVenues
from analyzer.errors import ContagionError

KEEPER_FRACTIONS = tuple(0.5 ** i for i in range(7))
CURVE_POINTS = 24


class SlippageCurve:
    """Average execution price over mid for sales (``sell``) and purchases (``buy``) of size ``q``."""

    def __init__(self, sizes: np.ndarray, sell: np.ndarray, buy: np.ndarray, buy_limit: float):
        self.sizes, self.sell, self.buy, self.buy_limit = sizes, sell, buy, buy_limit

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
        sizes = np.concatenate([[0.0], top * np.geomspace(1e-10, 1.0, CURVE_POINTS)])
        sell = np.ones(len(sizes))
        buy = np.full(len(sizes), np.inf)
        buy[0] = 1.0
        for i, q in enumerate(sizes[1:], start=1):   # a fixed grid per asset, not per account
            # beyond the venues' liquidity a sale fills at the pool's extreme: proceeds stop growing
            sell[i] = venues.copy().trade(q).amount_out / (q * mid)
            if q <= buy_max:
                try:
                    buy[i] = venues.copy().trade(-q).amount_in / (q * mid)
                except ContagionError:
                    break
        return cls(sizes, sell, buy, float(sizes[np.isfinite(buy)][-1]))

    def sell_fraction(self, q: np.ndarray) -> np.ndarray:
        """Beyond the sampled grid, proceeds stay at those of the largest sampled sale."""
        top = self.sizes[-1]
        inside = np.interp(q, self.sizes, self.sell)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.where(q > top, self.sell[-1] * top / np.maximum(q, 1e-300), inside)

    def buy_fraction(self, q: np.ndarray) -> np.ndarray:
        """Beyond the largest purchase the venues can fill (``buy_limit``) the cost is infinite."""
        finite = np.isfinite(self.buy)
        out = np.interp(q, self.sizes[finite], self.buy[finite])
        return np.where(q > self.buy_limit * (1 + 1e-12), np.inf, out)


def keeper_fraction(sell_units: np.ndarray, held_usd: np.ndarray, buy_units: np.ndarray, price: np.ndarray,
                    curve, committed_sell: np.ndarray, committed_buy: np.ndarray, gas_usd: float) -> np.ndarray:
    """``(k,)`` the share of each proposed liquidation a profit-seeking keeper takes (0 = none).

    ``sell_units`` (k, A): asset units each keeper sells on the venues (seized collateral it
    received, receipts as their underlying, times the sell-through); ``held_usd`` (k,): the unsold
    part at the mid; ``buy_units`` (k, A): debt it buys to repay; ``price`` (A,) USD mids;
    ``curve(a)`` the :class:`SlippageCurve` of asset a; ``committed_*`` (A,) what earlier keepers
    of the round already sold or bought.

    Keepers queue, largest liquidation first (ties in row order): each trades after the round's
    earlier trades and the keepers ahead of it, at the venues' prices over its own segment of the
    queue (proceeds ``P(Q + q) − P(Q)``, ``P(q) = q · mid · sell_fraction(q)``). A first pass queues
    every proposal at full size; a second queues what the first pass chose.
    """
    k = sell_units.shape[0]
    size_usd = (sell_units + buy_units) @ price
    order = np.argsort(-size_usd, kind="stable")
    sells, buys = _by_column(sell_units), _by_column(buy_units)
    chosen = np.ones(k)
    for _ in range(2):
        ahead = np.empty(k)
        ahead[order] = np.arange(k)
        segments = []
        for groups, committed, sign in ((sells, committed_sell, 1.0), (buys, committed_buy, -1.0)):
            for a, rows, units in groups:
                queued = units * chosen[rows]
                rank = np.argsort(ahead[rows], kind="stable")
                before = np.empty(len(rows))
                before[rank] = np.cumsum(queued[rank]) - queued[rank]
                segments.append((a, rows, units, committed[a] + before, sign))
        fractions = np.array(KEEPER_FRACTIONS)
        profit = held_usd[:, None] * fractions[None, :] - gas_usd          # (k, F): every fraction at once
        for a, rows, units, before, sign in segments:
            c = curve(a)
            end = before[:, None] + units[:, None] * fractions[None, :]
            if sign > 0:
                value = price[a] * (end * c.sell_fraction(end) - (before * c.sell_fraction(before))[:, None])
            else:
                with np.errstate(invalid="ignore"):
                    value = -price[a] * (end * c.buy_fraction(end) - (before * c.buy_fraction(before))[:, None])
                value = np.where(np.isnan(value), -np.inf, value)
            np.add.at(profit, rows, value)
        pays = profit > 0
        best = np.where(pays.any(axis=1), fractions[np.argmax(pays, axis=1)], 0.0)
        chosen = best
    return best


def _by_column(amounts: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The non-zero entries of a (k, m) array grouped by column: [(j, rows, values)]."""
    rows, cols = np.nonzero(amounts.T)
    # nonzero of the transpose is sorted by column already
    values = amounts.T[rows, cols]
    bounds = np.flatnonzero(np.diff(rows)) + 1
    return [(int(r[0]), c, v) for r, c, v in zip(np.split(rows, bounds), np.split(cols, bounds),
                                                   np.split(values, bounds), strict=True) if len(r)]


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
