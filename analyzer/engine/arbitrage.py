"""Arbitrage between an asset's centralised market and its on-chain pools, once per round.

Between two blocks, arbitrageurs trade every pool of an asset against the centralised exchange
(CEX) until the pool's price sits in its no-arbitrage band around the CEX price: a pool whose fee
is f keeps its own price p_pool with ``p_cex (1 − f) <= p_pool <= p_cex / (1 − f)``, because
beyond it buying on one side and selling on the other pays (Milionis, Moallemi, Roughgarden and
Zhang, "Automated market making and loss-versus-rebalancing", 2022: the arbitrageur trades the pool
to the edge of the fee band, not to the CEX price itself). The CEX is not infinitely deep here:
the arbitrageur's offsetting CEX trade moves the CEX price by the CEX's own impact (square-root law,
Tóth et al. 2011 / Almgren et al. 2005, or the levels of an order book), as the cascade's CEX
sales do. So one arbitrage of size q (asset units bought from the pool and sold on the CEX, or the
reverse) solves

    p_pool(after buying q) / (1 − f) = p_cex(after selling q)        (pool below the band)
    p_pool(after selling q) · (1 − f) = p_cex(after buying q)       (pool above the band)

whose left side rises (falls) and right side falls (rises) with q, found by bisection on copies of
the venues (each pool's exact simulation). An asset's pools are arbitraged one after another in
their order, repeated until none is outside its band (each arbitrage moves the CEX, which may
push an earlier pool out again). Prices in USD: a pool's mid in its quote token valued at the
quote's current USD price. The engine applies :func:`arbitrage` to its own venues after each
round's trades; the replay computes the same trades on its read of the fork and sends the pool
legs as real swaps (:func:`analyzer.replay.trades.arbitrage_on_fork`).
"""

from __future__ import annotations

import math

from analyzer.engine.venues import VenueModel
from analyzer.errors import ContagionError

BAND_TOLERANCE = 1e-10   # relative: a pool this close to its band's edge is left alone
MAX_SWEEPS = 8           # passes over an asset's pools (each arbitrage moves the CEX)
BISECTION_STEPS = 200    # a 2^-200 bracket: the steps stop at the float's resolution well before


def centralised_of(venues) -> VenueModel | None:
    """The one centralised venue among an :class:`AssetVenues`' venues (None without exactly one)."""
    found = [v for v in venues.venues if v.centralised]
    return found[0] if len(found) == 1 else None


def _gap(pool: VenueModel, cex: VenueModel, units: float, buy_from_pool: bool) -> float:
    """Signed distance from the band's edge after an arbitrage of ``units``: negative while the
    arbitrage still pays (inf when the pool cannot fill it)."""
    keep = 1.0 - pool.fee_fraction
    trial_pool, trial_cex = pool.copy(), cex.copy()
    try:
        trial_pool.trade(-units if buy_from_pool else units)
        trial_cex.trade(units if buy_from_pool else -units)
    except ContagionError:
        return math.inf
    if buy_from_pool:       # the pool's price rises to the CEX's over 1/(1 − f)
        return trial_pool.mid_price() / keep - trial_cex.mid_price()
    return trial_cex.mid_price() - trial_pool.mid_price() * keep


def arbitrage_amount(pool: VenueModel, cex: VenueModel) -> float:
    """Asset units the arbitrageur sells into ``pool`` (< 0: buys from it) to bring it to the edge of
    its no-arbitrage band around the CEX price, the CEX moving with the offsetting trade; 0 inside."""
    keep = 1.0 - pool.fee_fraction
    pool_mid, cex_mid = pool.mid_price(), cex.mid_price()
    if not (pool_mid > 0 and cex_mid > 0 and math.isfinite(pool_mid) and math.isfinite(cex_mid)):
        return 0.0
    if pool_mid / keep < cex_mid * (1.0 - BAND_TOLERANCE):
        buy_from_pool = True
        first_guess = pool.depth(cex_mid * keep / pool_mid - 1.0, False)
    elif pool_mid * keep > cex_mid * (1.0 + BAND_TOLERANCE):
        buy_from_pool = False
        first_guess = pool.depth(1.0 - cex_mid / (pool_mid * keep), True)
    else:
        return 0.0
    high = first_guess if first_guess > 0 and math.isfinite(first_guess) else 1e-12
    for _ in range(200):          # bracket the edge: double until the arbitrage has gone past it
        if _gap(pool, cex, high, buy_from_pool) >= 0:
            break
        high *= 2.0
    low = 0.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if not low < middle < high:
            break
        if _gap(pool, cex, middle, buy_from_pool) >= 0:
            high = middle
        else:
            low = middle
    return -low if buy_from_pool else low


def arbitrage(venues) -> list[tuple[int, float]]:
    """Arbitrage every pool of ``venues`` (an :class:`AssetVenues` with one centralised venue) to its
    band around the CEX, in place; returns the trades as (venue index, asset units sold into the
    pool, negative when bought from it), in the order made. Nothing without a centralised venue."""
    cex = centralised_of(venues)
    if cex is None:
        return []
    trades: list[tuple[int, float]] = []
    for _ in range(MAX_SWEEPS):
        made = False
        for index, pool in enumerate(venues.venues):
            if pool is cex:
                continue
            units = arbitrage_amount(pool, cex)
            if units == 0.0:
                continue
            pool.trade(units)
            cex.trade(-units)
            trades.append((index, units))
            made = True
        if not made:
            break
    return trades
