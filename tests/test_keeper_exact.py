"""The keeper decides on the exact venue simulation, not the sampled slippage curve: across two
venues (a routed sale), a keeper near break-even takes the share the exact rule gives, where the
24-point interpolated curve alone would misjudge its proceeds."""

from __future__ import annotations

import numpy as np

from analyzer.engine.impact import AssetVenues, ConstantProduct, SqrtLaw
from analyzer.engine.keeper_share import KEEPER_FRACTIONS, keeper_fraction
from analyzer.engine.market import SlippageCurve


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


def _pool_and_book() -> AssetVenues:
    """WETH in a concentrated-liquidity pool (a wide and a narrow range, walked tick by tick), a
    constant-product pool and a centralised book: a sale is routed across all three."""
    from fractions import Fraction

    from analyzer.amm import concentrated_liquidity as cl
    from analyzer.amm.layout import range_ticks, sqrt_price_x96_of
    from analyzer.amm.venue import ConcentratedLiquidityVenue

    price = sqrt_price_x96_of(Fraction(3000), Fraction(1), 18, 6, True)
    nets: dict[int, int] = {}
    for half_width, liquidity in ((0.5, 4 * 10 ** 16), (0.05, 2 * 10 ** 17)):
        lower, upper = range_ticks(price, half_width, 60)
        nets[lower], nets[upper] = nets.get(lower, 0) + liquidity, nets.get(upper, 0) - liquidity
    tick = cl.get_tick_at_sqrt_ratio(price)
    params = {"token0": "WETH", "token1": "USDC", "decimals0": 18, "decimals1": 6, "fee": 3000, "tick_spacing": 60,
              "sqrt_price_x96": price, "tick": tick, "liquidity": sum(n for t, n in nets.items() if t <= tick),
              "ticks": sorted(nets.items())}
    pool = ConcentratedLiquidityVenue("WETH", "USDC", params, venue="cl")
    return AssetVenues("WETH", [pool, ConstantProduct("WETH", "USDC", 300.0, 900_000.0, venue="cp"),
                                SqrtLaw("WETH", "USDC", 3_000.0, sigma=0.04, daily_volume=5_000.0, venue="cex")])


def _queue_by_hand(venues: AssetVenues, units: np.ndarray, repaid: np.ndarray, committed: float,
                   gas: float) -> list[float]:
    """The keeper rule of :func:`keeper_fraction` written out: keepers queue largest first; each
    takes the largest fraction whose routed sale, from where those ahead of it left the venues
    (fresh copies, every trade simulated), pays for the debt bought and the gas; twice, the second
    time behind what the first pass chose."""
    mid = venues.mid_price()
    order = sorted(range(len(units)), key=lambda i: -(units[i] * mid + repaid[i]))   # USD sizes
    proceeds = lambda q: venues.copy().trade(q).amount_out if q > 0 else 0.0     # noqa: E731
    chosen = [1.0] * len(units)
    for _ in range(2):
        sold, best = committed, [0.0] * len(units)
        for i in order:
            for fraction in KEEPER_FRACTIONS:
                if proceeds(sold + fraction * units[i]) - proceeds(sold) - fraction * repaid[i] - gas > 0:
                    best[i] = fraction
                    break
            sold += units[i] * chosen[i]
        chosen = best
    return chosen


def test_a_queue_of_keepers_on_routed_pools_takes_the_shares_of_the_exact_rule():
    venues = _pool_and_book()
    curve = SlippageCurve.sample(venues)
    flat = SlippageCurve.flat()
    mid = venues.mid_price()
    rng = np.random.default_rng(7)
    decided_near_zero = 0
    for case in range(6):
        k = 12
        units = rng.uniform(20.0, 400.0, k)
        committed = float(rng.choice([0.0, 150.0]))
        units = np.sort(units)[::-1]                 # queued in this order (the largest first)
        start = committed + np.concatenate([[0.0], np.cumsum(units)[:-1]])
        segment = np.array([venues.copy().trade(s + u).amount_out - (venues.copy().trade(s).amount_out if s else 0.0)
                            for s, u in zip(start, units, strict=True)])
        # debt bought for within ±0.2% of each segment's proceeds: around break-even
        repaid = segment * (1.0 + rng.uniform(-2e-3, 2e-3, k)) - 1.0
        sell = np.stack([np.zeros(k), units], axis=1)
        buy = np.stack([repaid, np.zeros(k)], axis=1)
        share = keeper_fraction(sell, np.zeros(k), buy, np.array([1.0, mid]), lambda a: curve if a == 1 else flat,
                                np.array([0.0, committed]), np.zeros(2), 1.0)
        expected = _queue_by_hand(venues, units, repaid, committed, 1.0)
        assert list(share) == expected, case
        decided_near_zero += sum(0 < s < 1 for s in expected) + sum(s == 0 for s in expected)
    assert decided_near_zero > 0       # some keepers are cut down or decline: the cases are close calls
