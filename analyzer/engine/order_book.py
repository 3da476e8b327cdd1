"""A centralised venue's depth as an order-book snapshot: the depth curve a keeper's order walks.

The alternative to the square-root law (:class:`analyzer.engine.venues.SqrtLaw`) when the depth of
an asset's centralised market is known from its books. A sale walks the bids from the best one
down, each level filling at its own price; a purchase walks the asks up. The impact is permanent
within a cascade, as for the square-root law (levels taken are not refilled between rounds).

Order-book snapshot format (a table of a centralised-depth parameter file,
:mod:`analyzer.engine.centralised`; the same keys as a ``venues`` row's params, model ``order_book``)::

    [assets.WETH.order_book]
    source = "aggregated Binance + Coinbase + OKX ETH/USDT and ETH/USD books, 2025-03-14 12:00 UTC"
    bids = [[2999.5, 120.0], [2995.0, 800.0], [2980.0, 2500.0]]   # [price USD, size in asset units]
    asks = [[3000.5, 110.0], [3005.0, 750.0], [3020.0, 2400.0]]

``bids`` strictly decreasing in price, ``asks`` strictly increasing, every best bid below every
ask, sizes positive (the size at that price level, not cumulative). Beyond the last bid a sale
earns nothing more (the book is empty); a purchase beyond the last ask cannot be filled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from analyzer.engine.venues import TradeResult, VenueModel
from analyzer.errors import ContagionError


def book_side(levels: Any, where: str, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes) of one side of a book, checked: ``[[price, size], ...]`` with positive finite
    numbers and prices strictly decreasing (bids) or increasing (asks)."""
    if not isinstance(levels, Sequence) or isinstance(levels, str) or not levels:
        raise ContagionError(f"{where}: expected a non-empty array of [price_usd, size] levels")
    rows = []
    for i, level in enumerate(levels):
        if (not isinstance(level, Sequence) or isinstance(level, str) or len(level) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                           for x in level)):
            raise ContagionError(f"{where}[{i}]: expected [price_usd, size], both positive numbers, got {level!r}")
        rows.append((float(level[0]), float(level[1])))
    prices, sizes = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    steps = np.diff(prices)
    if (steps >= 0).any() if descending else (steps <= 0).any():
        raise ContagionError(f"{where}: prices must be strictly {'decreasing' if descending else 'increasing'}")
    return prices, sizes


class OrderBookDepth(VenueModel):
    """A centralised order book: ``bids`` and ``asks`` as ``[price USD, size]`` levels (see the
    module). ``flow``: the asset units sold into it so far (negative: bought)."""

    model = "order_book"
    centralised = True

    def __init__(self, asset: str, quote: str, bids: Any, asks: Any, quote_price_usd: float = 1.0, venue: str = "",
                 flow: float = 0.0):
        super().__init__(asset, quote, quote_price_usd, venue)
        where = f"venue {venue or asset} (order_book)"
        self.bid_prices, self.bid_sizes = book_side(bids, f"{where}: bids", descending=True)
        self.ask_prices, self.ask_sizes = book_side(asks, f"{where}: asks", descending=False)
        if self.bid_prices[0] >= self.ask_prices[0]:
            raise ContagionError(f"{where}: the best bid must be below the best ask")
        # cumulative sizes at the end of each level
        self.bid_depth, self.ask_depth = np.cumsum(self.bid_sizes), np.cumsum(self.ask_sizes)
        self.flow = float(flow)

    @classmethod
    def from_params(cls, asset, quote, params: Mapping[str, Any], *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, params.get("bids"), params.get("asks"), quote_price_usd, venue)

    def _usd_to(self, flow: float) -> float:
        """USD received for selling from 0 to ``flow`` (> 0), or paid for buying ``-flow`` (< 0)."""
        prices, depth = (self.bid_prices, self.bid_depth) if flow >= 0 else (self.ask_prices, self.ask_depth)
        units = min(abs(flow), float(depth[-1]))
        start = np.concatenate([[0.0], depth[:-1]])
        filled = np.clip(units - start, 0.0, depth - start)
        return float(filled @ prices)

    def _level_price(self, flow: float) -> float:
        """The price of the level the next unit meets at ``flow`` (0 beyond the last bid)."""
        if flow == 0:
            return 0.5 * (self.bid_prices[0] + self.ask_prices[0])
        if flow > 0:
            at = int(np.searchsorted(self.bid_depth, flow, side="right"))
            return float(self.bid_prices[at]) if at < len(self.bid_prices) else 0.0
        at = int(np.searchsorted(self.ask_depth, -flow, side="right"))
        return float(self.ask_prices[min(at, len(self.ask_prices) - 1)])

    def mid_price(self) -> float:
        return self._level_price(self.flow)

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        end = self.flow + asset_amount
        if end < 0 and -end > self.ask_depth[-1] * (1 + 1e-12):
            raise ContagionError(f"venue {self.venue or self.asset}: cannot buy {-asset_amount:g}, the asks hold "
                                 f"{self.ask_depth[-1] + min(self.flow, 0.0):g}")
        # the flow crosses zero at most once: USD of each side's part, each from the book's top
        usd = self._side_usd(self.flow, end)
        self.flow = end
        quote_units = abs(usd) / self.quote_price_usd
        if asset_amount >= 0:
            return self._result(asset_amount, quote_units, before)
        return self._result(quote_units, -asset_amount, before)

    def _side_usd(self, start: float, end: float) -> float:
        """USD to the seller (> 0) of moving the flow from ``start`` to ``end``."""
        def cumulative(flow: float) -> float:     # signed: sales earn, purchases pay
            return self._usd_to(flow) if flow >= 0 else -self._usd_to(flow)
        return cumulative(end) - cumulative(start)

    def depth(self, fraction: float, sell: bool = True) -> float:
        """Asset units from the current flow to the first level priced ``fraction`` away from the
        current price (the whole side when none is)."""
        now = self.mid_price()
        if sell:
            target = now * (1.0 - fraction)
            beyond = np.flatnonzero(self.bid_prices <= target)
            edge = float(self.bid_depth[beyond[0] - 1]) if len(beyond) and beyond[0] > 0 else \
                (0.0 if len(beyond) else float(self.bid_depth[-1]))
            return max(edge - max(self.flow, 0.0), 0.0) + max(-self.flow, 0.0)
        target = now * (1.0 + fraction)
        beyond = np.flatnonzero(self.ask_prices >= target)
        edge = float(self.ask_depth[beyond[0] - 1]) if len(beyond) and beyond[0] > 0 else \
            (0.0 if len(beyond) else float(self.ask_depth[-1]))
        return max(edge - max(-self.flow, 0.0), 0.0) + max(self.flow, 0.0)

    def copy(self) -> OrderBookDepth:
        clone = object.__new__(OrderBookDepth)
        clone.__dict__.update(self.__dict__)
        return clone
