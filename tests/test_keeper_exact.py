"""The keeper decides on the exact venue simulation, not the sampled slippage curve: across two
venues (a routed sale), a keeper near break-even takes the share the exact rule gives, where the
24-point interpolated curve alone would misjudge its proceeds."""

from __future__ import annotations

import numpy as np

from analyzer.engine.impact import AssetVenues, ConstantProduct, SqrtLaw
from analyzer.engine.market import KEEPER_FRACTIONS, SlippageCurve, keeper_fraction


def _venues() -> AssetVenues:
    pool = ConstantProduct("WETH", "USDC", 1_000.0, 3_000_000.0, fee=0.003, venue="pool")
    centralised = SqrtLaw("WETH", "USDC", 3_000.0, sigma=0.04, daily_volume=20_000.0, venue="cex")
    return AssetVenues("WETH", [pool, centralised])


def _exact_share(venues: AssetVenues, units: float, repaid_usd: float, gas_usd: float) -> float:
    """The rule by hand: the largest fraction whose routed sale, on a fresh copy, pays for the debt
    bought and the gas."""
    for fraction in KEEPER_FRACTIONS:
        proceeds = venues.copy().trade(fraction * units).amount_out
        if proceeds - fraction * repaid_usd - gas_usd > 0:
            return fraction
    return 0.0


def test_a_keeper_near_break_even_takes_the_share_of_the_exact_rule():
    venues = _venues()
    curve = SlippageCurve.sample(venues)
    flat = SlippageCurve.flat()
    mid = venues.mid_price()
    units = 400.0                                   # between two sampled sizes: the curve is ~1e-4 off
    proceeds = venues.copy().trade(units).amount_out
    # debt bought for sales just around break-even: proceeds within ±0.03% of the sale, 80 keepers
    repaid = proceeds * (1.0 - np.linspace(-3e-4, 3e-4, 80)) - 1.0
    gas = 1.0
    decided, by_hand, misjudged = [], [], 0
    for r in repaid:                                 # one keeper per case: nobody queues ahead
        sell = np.array([[0.0, units]])
        buy = np.array([[r, 0.0]])
        share = keeper_fraction(sell, np.zeros(1), buy, np.array([1.0, mid]),
                                lambda a: curve if a == 1 else flat, np.zeros(2), np.zeros(2), gas)
        decided.append(float(share[0]))
        by_hand.append(_exact_share(venues, units, r, gas))
        interpolated = units * float(curve.sell_fraction(units)) * mid
        misjudged += (interpolated - r - gas > 0) != (proceeds - r - gas > 0)
    assert misjudged > 0          # the sampled curve alone decides some of these cases wrongly
    assert decided == by_hand
