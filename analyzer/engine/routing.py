"""How a sale (or purchase) of one asset is split across its venues, as an aggregator splits it.

An aggregator (1inch, 0x, CoW) fills an order so that the next unit costs the same wherever it
goes: it sells into each venue until the venues' marginal prices, net of their fees, meet at one
level L, and leaves out a venue whose share does not pay its swap's gas. This is that rule:

- a venue's marginal sale price is its mid times (1 − fee), so it takes the asset units that move
  its mid down to ``L / (1 − fee)`` (``VenueModel.depth``); L is found by Brent's method
  (:mod:`analyzer.engine.roots`) so that the shares add up to the order (for a purchase: mid / (1 − fee) up to L);
- the split over every venue, the splits over the venues left after dropping the smallest share
  one at a time, and each venue alone are all simulated on copies (exactly, for pool models), and
  the one with the best proceeds net of ``swap_gas_usd`` per venue used wins. A routed sale hence
  never does worse than the best single venue.

References: the "marginal price equalisation" of order routing, e.g. Angeris, Evans, Chitra and
Boyd, "Optimal routing for constant function market makers" (EC 2022), whose optimum for convex
venues is exactly equal marginal prices among the venues used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from analyzer.engine.roots import bracket_root
from analyzer.engine.venues import VenueModel
from analyzer.errors import ContagionError

LEVEL_PRECISION = 2.0**-48   # relative precision of the common marginal price level


def _fill(venue: VenueModel, level: float, sell: bool) -> float:
    """Asset units ``venue`` takes before its fee-adjusted marginal price reaches ``level`` (USD)."""
    keep = 1.0 - venue.fee_fraction
    mid = venue.mid_price()
    if not (mid > 0 and math.isfinite(mid)):
        return 0.0
    if sell:
        target = level / keep          # the mid at which a sale there earns ``level`` per unit
        # the fee is taken from the asset paid in: depth counts what reaches the reserves
        return venue.depth(1.0 - target / mid, True) / keep if target < mid else 0.0
    target = level * keep              # the mid at which a purchase there costs ``level`` per unit
    return venue.depth(target / mid - 1.0, False) if target > mid else 0.0


def equal_marginal_split(venues: Sequence[VenueModel], amount: float, sell: bool) -> np.ndarray:
    """Asset units per venue (summing to ``amount`` > 0) that leave every venue used at one
    fee-adjusted marginal price."""
    effective = np.array([v.mid_price() * ((1.0 - v.fee_fraction) if sell else 1.0 / (1.0 - v.fee_fraction))
                          for v in venues])
    low, high = (0.0, float(effective.max())) if sell else (float(effective.min()), float(effective.max()))
    if not sell:   # widen until the purchase fits
        while sum(_fill(v, high, False) for v in venues) < amount and high < effective.min() * 1e6:
            high *= 2.0
    tried: dict[float, tuple[float, np.ndarray]] = {}

    def excess(level: float) -> float:
        fills = np.array([_fill(v, level, sell) for v in venues])
        fills[~np.isfinite(fills)] = amount
        tried[level] = (float(fills.sum() - amount), fills)
        return tried[level][0]

    # a sale: a lower level sells more; a purchase: a higher level buys more. The level where the
    # venues take the most is one precision step inside the range (a sale at level 0 prices nothing)
    most, least = (low, high) if sell else (high, low)
    most += (least - most) * LEVEL_PRECISION
    excess_most = excess(most)
    level = most                                  # the order does not fit: every venue takes all it can
    if excess_most > 0 and (excess_least := excess(least)) < 0:
        level = min(bracket_root(excess, most, least, excess_most, excess_least, LEVEL_PRECISION),
                    key=lambda x: abs(tried[x][0]))
    fills = tried[level][1]
    total = fills.sum()
    if not total > 0:
        best = int(np.argmax(effective) if sell else np.argmin(effective))
        fills = np.zeros(len(venues))
        fills[best] = amount
        return fills
    return fills * (amount / total)


def _net_usd(venues: Sequence[VenueModel], amounts: np.ndarray, sell: bool, swap_gas_usd: float) -> float:
    """USD received (sale) or minus USD paid (purchase), net of gas, on copies of ``venues``."""
    total = 0.0
    for venue, amount in zip(venues, amounts, strict=True):
        if amount <= 0:
            continue
        try:
            result = venue.copy().trade(amount if sell else -amount)
        except ContagionError:
            return -math.inf
        total += (result.amount_out if sell else -result.amount_in) * venue.quote_price_usd - swap_gas_usd
    return total


def route(venues: Sequence[VenueModel], asset_amount: float, swap_gas_usd: float = 0.0) -> np.ndarray:
    """Signed asset units per venue for a net flow ``asset_amount`` (> 0 sells, < 0 buys): the
    candidate split with the best net proceeds (see the module's rule)."""
    n = len(venues)
    if n == 1 or asset_amount == 0:
        return np.full(n, float(asset_amount)) if n == 1 else np.zeros(n)
    sell, amount = asset_amount > 0, abs(asset_amount)
    candidates = []
    active = list(range(n))
    while len(active) > 1:      # down to one venue: that is a single below, with no level to find
        split = np.zeros(n)
        split[active] = equal_marginal_split([venues[i] for i in active], amount, sell)
        candidates.append(split)
        active.remove(min(active, key=lambda i: split[i]))
    for i in range(n):
        single = np.zeros(n)
        single[i] = amount
        candidates.append(single)
    scores = [_net_usd(venues, c, sell, swap_gas_usd) for c in candidates]
    best = candidates[int(np.argmax(scores))]
    return best if sell else -best
