"""The keeper's profitability test: the share of a liquidation a keeper takes.

Keeper economics (the mechanism behind partial liquidations and bad debt in thin markets): a
keeper liquidates only when the liquidation bonus it receives covers the slippage of selling the
seized collateral and of buying the debt asset it repays, plus a gas cost. Slippage comes from a
*slippage curve* per asset: the average execution price of a trade of size q on a copy of the
venues at the round's starting state, as a fraction of the mid (sampled on a geometric grid,
linearly interpolated). The decision is the exact rule's nevertheless: a single constant-product
pool is valued in closed form, and elsewhere the grid brackets each keeper's profit (the average
price of a sale falls with its size on a convex venue and on a route across such venues); a
keeper whose bracket straddles zero is valued on real trades on copies of the venues
(:meth:`SlippageCurve.exact_value`), its smaller shares first bounded together by the marginal
prices where its trades start (:meth:`_Queue._profit_ceiling`). Keepers of a round queue (see
:func:`keeper_fraction`): a keeper behind others sells into what they left, so a thin pool stops
the queue instead of absorbing every sale.

It may take a fraction f ∈ {1, 1/2, …, 1/64} of the largest liquidation the protocol's rule allows
(``debtToCover`` below the maximum in Aave's ``liquidationCall``, a smaller ``repayAmount`` in
Compound): it takes the largest f whose profit is positive, or none. Keepers compete (priority
gas auctions), so any liquidation that pays is taken whole; only one that does not pay at full
size is cut down.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.engine.market import SlippageCurve

KEEPER_FRACTIONS = tuple(0.5 ** i for i in range(7))


class _CurveTable:
    """The curves of the assets a keeper step trades, stacked so that one pass evaluates every
    (keeper, asset) pair: :meth:`SlippageCurve.sell_fraction` and :meth:`SlippageCurve.buy_fraction`,
    row ``c`` of the table being the curve of ``assets[c]``."""

    def __init__(self, curves: list[SlippageCurve]):
        width = max(len(c.sizes) for c in curves)
        rows = [_table_row(c, width) for c in curves]      # assets (tens), not accounts
        sell, buy = ([np.stack([r[i] for r in rows]) for i in columns] for columns in (range(3), range(4, 7)))
        self.sell = _Piecewise(sell[0], sell[1], sell[2], np.array([r[3] for r in rows], dtype=np.intp))
        self.buy = _Piecewise(buy[0], buy[1], buy[2], np.array([r[7] for r in rows], dtype=np.intp))
        self.top, self.sell_last, self.buy_limit = (np.array([r[i] for r in rows]) for i in (8, 9, 10))
        exact = [c.exact or (1.0, 1.0, 1.0, 1.0) for c in curves]
        self.is_exact = np.array([c.exact is not None for c in curves])
        # exact as sampled: a closed form, or a curve with no venues behind it (flat)
        self.is_decided = self.is_exact | np.array([c.venues is None for c in curves])
        self.curves, self._rows = curves, rows
        self._steps: dict[bool, tuple[_Piecewise, _Piecewise]] = {}
        self.pool_x, self.pool_y, self.pool_keep, self.pool_scale = (np.array([e[i] for e in exact]) for i in range(4))

    def proceeds(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``q · sell_fraction(q)`` of curve ``c`` (broadcast against ``q``); for a constant-product
        venue the pool's own ``getAmountOut`` (x·y = k, fee on input), in the units of the curve."""
        out = self.sell(q, c)
        np.divide(self.sell_last[c] * self.top[c], q, out=out, where=q > self.top[c])
        out = q * out
        if self.is_exact.any():
            x, y, keep = self.pool_x[c], self.pool_y[c], self.pool_keep[c]
            out = np.where(self.is_exact[c], y * q * keep / (x + q * keep) * self.pool_scale[c], out)
        return out

    def cost(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``q · buy_fraction(q)`` of curve ``c``: infinite beyond what the venues can fill; for a
        constant-product venue its own ``getAmountIn`` (infinite from the whole reserve on)."""
        out = self.buy(q, c)
        out[q > self.buy_limit[c] * (1 + 1e-12)] = np.inf
        out = q * out
        if self.is_exact.any():
            x, y, keep = self.pool_x[c], self.pool_y[c], self.pool_keep[c]
            with np.errstate(divide="ignore", invalid="ignore"):
                pool = np.where(q < x, y * q / ((x - q) * keep), np.inf) * self.pool_scale[c]
            out = np.where(self.is_exact[c], pool, out)
        return out


    def bounds(self, q: np.ndarray, c: np.ndarray, sell: bool) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on the exact ``proceeds`` (``sell``) or ``cost`` of ``q`` for curve ``c``: the
        average price of a sale falls (of a purchase rises) with its size on every convex venue and
        on a route across them, so between sampled sizes q_i <= q < q_(i+1) it lies between the
        sampled averages at q_(i+1) and q_i. Equal where the value is exact (a closed form, a flat
        curve) or beyond the sampled sizes."""
        value = self.proceeds(q, c) if sell else self.cost(q, c)
        if sell not in self._steps:     # the sampled points on each side of a size, built when first needed
            first = 0 if sell else 4
            self._steps[sell] = _steps([(r[first], r[first + 1], r[first + 3]) for r in self._rows])
        left, right = self._steps[sell]
        low, high = (q * right(q, c), q * left(q, c)) if sell else (q * left(q, c), q * right(q, c))
        top = self.top[c] if sell else self.buy_limit[c]
        keep = self.is_decided[c] | (q >= top) | ~np.isfinite(value)
        return np.where(keep, value, low), np.where(keep, value, high)


def _steps(tables: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[_Piecewise, _Piecewise]:
    """Step functions of padded (sizes, fractions, last index) rows: the fraction at the sampled size
    at or below x, and at the next sampled size above it."""
    xp = np.stack([t[0] for t in tables])
    fp = np.stack([t[1] for t in tables])
    last = np.array([t[2] for t in tables], dtype=np.intp)
    flat = np.zeros_like(xp)
    following = np.concatenate([fp[:, 1:], fp[:, -1:]], axis=1)
    return _Piecewise(xp, fp, flat, last), _Piecewise(xp, following, flat, last)


class _Piecewise:
    """Rows of ``np.interp`` tables: ``xp`` (C, W) increasing, ``fp``, ``slope`` (C, W) numpy's
    ``(fp[j+1] − fp[j]) / (xp[j+1] − xp[j])``, and ``last`` (C,) the index of each row's last point
    (rows are padded after it)."""

    def __init__(self, xp: np.ndarray, fp: np.ndarray, slope: np.ndarray, last: np.ndarray):
        self.width = xp.shape[1]
        self.xp, self.fp, self.slope = xp.ravel(), fp.ravel(), slope.ravel()
        self.first, self.last = xp[:, 0], last

    def __call__(self, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``np.interp(x, xp[c], fp[c])`` elementwise with the row ``c`` per element (broadcast
        against ``x``): the same search (the last point at or below x) and the same arithmetic
        (``slope · (x − xp[j]) + fp[j]``), so the same floats."""
        start, last = c * self.width, self.last[c]
        j = np.zeros(x.shape, dtype=np.intp)
        step = 1 << max(self.width - 1, 1).bit_length() - 1
        while step:                                     # branch-free binary search, log2(W) steps
            candidate = np.minimum(j + step, last)
            j = np.where(self.xp[start + candidate] <= x, candidate, j)
            step >>= 1
        at = start + j
        x0, f0 = self.xp[at], self.fp[at]
        between = (j < last) & (x != x0) & (x >= self.first[c])
        return np.where(between, self.slope[at] * (x - x0) + f0, f0)


def _table_row(curve: SlippageCurve, width: int) -> tuple:
    """One curve's rows of a :class:`_CurveTable`, padded to ``width`` (kept on the curve, which is
    shared by every keeper step until its venues trade): sale sizes, fractions, slopes, last index;
    the same for purchases (finite points only); then top size, last sale fraction, buy limit."""
    cached = getattr(curve, "_table_row", None)
    if cached is not None and len(cached[0]) == width:
        return cached
    finite = np.isfinite(curve.buy)
    row = []
    for xp, fp in ((curve.sizes, curve.sell), (curve.sizes[finite], curve.buy[finite])):
        slope = np.zeros(width)
        rise, run = np.diff(fp), np.diff(xp)
        np.divide(rise, run, out=slope[:len(xp) - 1], where=run != 0)
        pad = width - len(xp)
        row += [np.concatenate([xp, np.full(pad, xp[-1])]), np.concatenate([fp, np.full(pad, fp[-1])]), slope,
                len(xp) - 1]
    row += [float(curve.sizes[-1]), float(curve.sell[-1]), float(curve.buy_limit)]
    cached = tuple(row)
    setattr(curve, "_table_row", cached)    # noqa: B010 - a memo on the curve, not a declared field
    return cached


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

    Every (keeper, asset, side) trade is one entry of flat arrays, ordered by side, asset and queue
    position, so that both passes are a handful of array operations whatever the number of assets.
    """
    k = sell_units.shape[0]
    fractions = np.array(KEEPER_FRACTIONS)
    size_usd = (sell_units + buy_units) @ price
    order = np.argsort(-size_usd, kind="stable")
    queue = _Queue(sell_units[order], buy_units[order], order, price, curve, committed_sell, committed_buy)
    chosen = np.ones(k)
    best = np.zeros(k)
    for _ in range(2):
        base = held_usd[:, None] * fractions[None, :] - gas_usd          # (k, F): the keeper's own terms
        if not queue.size:
            profit = base
        else:
            before = queue.starts(chosen)
            # most keepers take the whole liquidation: the smaller fractions only for those it does not pay
            profit = base.copy()
            profit[:, :1] = queue.profit(base[:, :1], before, fractions[:1], np.arange(queue.size))
            short = ~(profit[:, 0] > 0)
            if short.any():
                entries = np.flatnonzero(short[queue.rows])
                profit[:, 1:] = queue.profit(base[:, 1:], before, fractions[1:], entries)
        pays = profit > 0
        best = np.where(pays.any(axis=1), fractions[np.argmax(pays, axis=1)], 0.0)
        chosen = best
    return best


class _Queue:
    """Every (keeper, side, asset) trade of a keeper step as one entry of flat arrays, ordered by
    side (sales, then purchases), asset and place in the queue, so that a pass of
    :func:`keeper_fraction` is a handful of array operations whatever the number of assets."""

    def __init__(self, sell_queued: np.ndarray, buy_queued: np.ndarray, order: np.ndarray, price: np.ndarray,
                 curve, committed_sell: np.ndarray, committed_buy: np.ndarray):
        sell_pos, sell_asset, sell_amount = _by_column_flat(sell_queued)
        buy_pos, buy_asset, buy_amount = _by_column_flat(buy_queued)
        self.n_sell = len(sell_pos)
        asset = np.concatenate([sell_asset, buy_asset])
        self.size = len(asset)
        self.rows = order[np.concatenate([sell_pos, buy_pos])]      # the keeper (row) of each entry
        self.units = np.concatenate([sell_amount, buy_amount])
        self.committed = np.concatenate([committed_sell[sell_asset], committed_buy[buy_asset]])
        self.signed_price = np.concatenate([price[sell_asset], -price[buy_asset]])
        new_group = np.ones(self.size, dtype=bool)
        new_group[1:] = asset[1:] != asset[:-1]
        if self.n_sell < self.size:
            new_group[self.n_sell] = True
        self.bounds = np.r_[np.flatnonzero(new_group), self.size]
        used, self.table_row = np.unique(asset, return_inverse=True)
        self.table = _CurveTable([curve(int(a)) for a in used]) if len(used) else None

    def starts(self, chosen: np.ndarray) -> np.ndarray:
        """Where each entry's trade starts: the round's earlier trades plus the keepers ahead of it,
        added in queue order (the reference round's sums), so that a keeper's trade at the share
        chosen ends on the very float where the next one's starts (one exact valuation for both)."""
        queued = self.units * chosen[self.rows]
        first = self.bounds[:-1]
        end = queued.copy()
        end[first] += self.committed[first]
        for s, e in zip(first, self.bounds[1:], strict=True):      # (side, asset) groups (tens)
            np.add.accumulate(end[s:e], out=end[s:e])               # where each keeper's trade ends
        start = np.empty(self.size)
        start[1:] = end[:-1]
        start[first] = self.committed[first]
        return start

    def profit(self, base: np.ndarray, before: np.ndarray, fractions: np.ndarray, entries: np.ndarray) -> np.ndarray:
        """``base`` (k, f) plus the value of the trades ``entries`` (sorted) at each fraction: each
        keeper's own terms first, then its trades in (side, asset) order (np.add.at's sums)."""
        k, width = base.shape
        start = before[entries]
        ends = np.empty((len(entries), width + 1))           # [before, before + f · units ...]
        ends[:, 0] = start
        ends[:, 1:] = start[:, None] + self.units[entries, None] * fractions[None, :]
        value = np.empty_like(ends)
        split = np.searchsorted(entries, self.n_sell)
        c = self.table_row[entries, None]
        assert self.table is not None      # entries are rows of used assets, which have a table
        value[:split] = self.table.proceeds(ends[:split], c[:split])
        with np.errstate(invalid="ignore"):    # a purchase beyond the venues: inf - inf
            value[split:] = self.table.cost(ends[split:], c[split:])
            value = self.signed_price[entries, None] * (value[:, 1:] - value[:, :1])
        value[np.isnan(value)] = -np.inf
        bins = (self.rows[entries, None] * width + np.arange(width)).ravel()
        profit = np.bincount(np.concatenate([np.arange(k * width), bins]),
                             weights=np.concatenate([base.ravel(), value.ravel()]),
                             minlength=k * width).reshape(k, width)
        if not self.table.is_decided[self.table_row[entries]].all():
            self._decide_exactly(profit, base, ends, entries, int(split), c, bins)
        return profit

    def _decide_exactly(self, profit: np.ndarray, base: np.ndarray, ends: np.ndarray, entries: np.ndarray,
                        split: int, c: np.ndarray, bins: np.ndarray) -> None:
        """Where the grid's bounds on a keeper's profit straddle zero, the profit from real trades on
        copies of the venues (:meth:`SlippageCurve.exact_value`), so that the keeper's decision is
        the exact rule's; elsewhere the sign of the interpolated profit is already the exact one. Only
        the sign of the largest share that pays matters (:func:`keeper_fraction` takes it), so a
        keeper's smaller shares are not valued once a larger one surely pays."""
        assert self.table is not None
        k, width = profit.shape
        low, high = np.empty_like(ends), np.empty_like(ends)
        low[:split], high[:split] = self.table.bounds(ends[:split], c[:split], True)
        low[split:], high[split:] = self.table.bounds(ends[split:], c[split:], False)
        price = self.signed_price[entries, None]
        with np.errstate(invalid="ignore"):
            spread = (low[:, 1:] - high[:, :1], high[:, 1:] - low[:, :1])
            worst = np.where(price > 0, price * spread[0], price * spread[1])
            best = np.where(price > 0, price * spread[1], price * spread[0])
        worst[np.isnan(worst)], best[np.isnan(best)] = -np.inf, np.inf
        sums = [np.bincount(np.concatenate([np.arange(k * width), bins]), weights=np.concatenate([base.ravel(),
                            bound.ravel()]), minlength=k * width).reshape(k, width) for bound in (worst, best)]
        undecided = (sums[0] <= 0) & (sums[1] > 0)
        pays = sums[0] > 0
        keeper_of = self.rows[entries]
        for keeper in np.flatnonzero(undecided.any(axis=1)):     # the few keepers near break-even
            own = np.flatnonzero(keeper_of == keeper)
            if undecided[keeper].sum() > 1:      # several shares to value: first bound them all at once
                ceiling = self._profit_ceiling(base[keeper], ends[own], price[own, 0], c[own, 0], own < split)
                if ceiling is not None:
                    declines = undecided[keeper] & (ceiling <= 0)
                    profit[keeper, declines] = ceiling[declines]
                    undecided[keeper, declines] = False
            for f in range(width):       # the keeper takes the largest share that pays: once one does, stop
                if pays[keeper, f]:
                    break
                if not undecided[keeper, f]:
                    continue
                total = float(base[keeper, f])
                for e in own:
                    curve, sell = self.table.curves[int(c[e, 0])], bool(e < split)
                    delta = curve.exact_value(ends[e, f + 1], sell) - curve.exact_value(ends[e, 0], sell)
                    total += float(price[e, 0]) * delta if math.isfinite(delta) else -math.inf
                profit[keeper, f] = total
                if total > 0:
                    break

    def _profit_ceiling(self, base: np.ndarray, ends: np.ndarray, price: np.ndarray, c: np.ndarray,
                        sells: np.ndarray) -> np.ndarray | None:
        """An upper bound on one keeper's profit at every share (``base`` (f,), its entries' ``ends``
        (n, f + 1) from the start, signed USD ``price``, curve row ``c``, ``sells``) from the
        marginal prices where its trades start: proceeds are concave in the size sold and costs
        convex in the size bought (the premise of the grid's bounds, :meth:`_CurveTable.bounds`), so
        a segment [s, s + x] earns at most x times the slope of the chord over [s − δ, s] (and a
        purchase costs at least that). Two exact valuations per trade (s − δ and s, often the end of
        the keeper ahead) instead of one per share; None where a trade starts at 0 (no chord) or a
        valuation is infinite."""
        assert self.table is not None
        ceiling = base.astype(float).copy()
        for row in range(len(ends)):
            start = float(ends[row, 0])
            size = ends[row, 1:] - start
            step = min(float(size.min()), start)          # the smallest share's size, within [0, start]
            if not step > 0:
                return None
            curve, sell = self.table.curves[int(c[row])], bool(sells[row])
            slope = (curve.exact_value(start, sell) - curve.exact_value(start - step, sell)) / step
            if not math.isfinite(slope):
                return None
            ceiling += float(price[row]) * size * slope
        return ceiling


def _by_column_flat(amounts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of a (k, m) array as (row, column, value), sorted by column then row."""
    used = np.flatnonzero(amounts.any(axis=0))       # a keeper step trades a few assets of many
    cols, rows = np.nonzero(amounts[:, used].T)
    cols = used[cols]
    return rows, cols, amounts[rows, cols]
