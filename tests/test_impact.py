"""Price-impact models against their closed forms, routing, and the no-silent-zero-impact rule."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest

from analyzer.engine.impact import (
    AssetVenues,
    ConstantProduct,
    LinearDepth,
    SqrtLaw,
    build_venues,
    venue_row,
)
from analyzer.errors import ContagionError
from analyzer.model import Snapshot

WETH, USDC, WBTC = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20


# --- constant product ---------------------------------------------------------------------------

def test_constant_product_sale_matches_uniswap_v2_get_amount_out():
    pool = ConstantProduct(WETH, USDC, reserve_asset=1000.0, reserve_quote=3_000_000.0, fee=0.003)
    result = pool.trade(10.0)
    # getAmountOut: 997·dx·y / (1000·x + 997·dx)
    expected = 997 * 10 * 3_000_000 / (1000 * 1000 + 997 * 10)
    assert result.amount_out == pytest.approx(expected, rel=1e-13)
    assert result.price_before == pytest.approx(3000.0, rel=1e-15)
    assert result.price_after == pytest.approx((3_000_000 - expected) / 1010.0, rel=1e-13)


def test_constant_product_without_fee_keeps_k_and_buy_matches_get_amount_in():
    pool = ConstantProduct(WETH, USDC, 500.0, 1_500_000.0, fee=0.0)
    pool.trade(37.0)
    assert pool.reserve_asset * pool.reserve_quote == pytest.approx(500.0 * 1_500_000.0, rel=1e-13)
    pool = ConstantProduct(WETH, USDC, 500.0, 1_500_000.0, fee=0.003)
    bought = pool.trade(-20.0)
    # getAmountIn: 1000·x_quote·dy / (997·(x_asset - dy))
    assert bought.amount_in == pytest.approx(1000 * 1_500_000 * 20 / (997 * 480), rel=1e-13)
    assert bought.amount_out == 20.0
    assert bought.price_after > bought.price_before
    with pytest.raises(ContagionError, match="cannot buy"):
        pool.trade(-10_000.0)


def test_constant_product_depth_moves_price_by_that_fraction():
    pool = ConstantProduct(WETH, USDC, 1000.0, 3_000_000.0, fee=0.0)
    q = pool.depth(0.02, sell=True)
    assert q == pytest.approx(1000.0 * (1 / math.sqrt(0.98) - 1), rel=1e-13)
    assert pool.copy().trade(q).price_after == pytest.approx(3000.0 * 0.98, rel=1e-12)


# --- square-root law ----------------------------------------------------------------------------

def test_sqrt_law_final_price_and_two_thirds_average_price():
    sigma, volume, y, p0, q = 0.05, 40_000.0, 0.8, 3000.0, 900.0
    venue = SqrtLaw(WETH, USDC, p0, sigma=sigma, daily_volume=volume, y=y)
    result = venue.trade(q)
    impact = y * sigma * math.sqrt(q / volume)
    assert result.price_after == pytest.approx(p0 * (1 - impact), rel=1e-14)
    assert result.amount_out == pytest.approx(q * p0 * (1 - 2 / 3 * impact), rel=1e-13)
    buy = SqrtLaw(WETH, USDC, p0, sigma=sigma, daily_volume=volume, y=y).trade(-q)
    assert buy.price_after == pytest.approx(p0 * (1 + impact), rel=1e-14)
    assert buy.amount_in == pytest.approx(q * p0 * (1 + 2 / 3 * impact), rel=1e-13)


def test_sqrt_law_is_path_independent_and_floors_at_zero():
    one = SqrtLaw(WETH, USDC, 100.0, sigma=0.1, daily_volume=1000.0)
    two = one.copy()
    whole = one.trade(50.0).amount_out
    parts = two.trade(20.0).amount_out + two.trade(30.0).amount_out
    assert parts == pytest.approx(whole, rel=1e-13)
    crash = SqrtLaw(WETH, USDC, 100.0, sigma=0.1, daily_volume=1000.0)
    floor_flow = 1000.0 / 0.1 ** 2          # k·sqrt(Q) = 1
    result = crash.trade(10 * floor_flow)
    assert result.price_after == 0.0
    assert result.amount_out == pytest.approx(100.0 * floor_flow / 3, rel=1e-12)  # ∫(1-sqrt(Q/Qf)) = Qf/3


def test_sqrt_law_depth_inverts_the_price_function():
    venue = SqrtLaw(WETH, USDC, 3000.0, sigma=0.04, daily_volume=10_000.0)
    venue.trade(100.0)
    p = venue.mid_price()
    q = venue.depth(0.02, sell=True)
    assert venue.copy().trade(q).price_after == pytest.approx(0.98 * p, rel=1e-12)


# --- linear ---------------------------------------------------------------------------------------

def test_linear_depth_closed_forms():
    venue = LinearDepth(WBTC, USDC, 60_000.0, depth_1pct=5.0)
    result = venue.trade(25.0)                  # 5 % of the 500-unit full depth
    assert result.price_after == pytest.approx(60_000.0 * 0.95, rel=1e-14)
    assert result.amount_out == pytest.approx(60_000.0 * (25 - 25 ** 2 / 1000), rel=1e-14)
    assert venue.depth(0.01) == pytest.approx(0.01 * 0.95 * 500, rel=1e-14)
    back = venue.trade(-25.0)
    assert back.price_after == pytest.approx(60_000.0, rel=1e-14)
    assert back.amount_in == pytest.approx(result.amount_out, rel=1e-13)


def test_quote_price_converts_to_usd_and_quote_units():
    venue = LinearDepth(WETH, WBTC, 3000.0, depth_1pct=1e9, quote_price_usd=60_000.0)
    result = venue.trade(1.0)
    assert result.amount_out == pytest.approx(3000.0 / 60_000.0, rel=1e-6)   # in WBTC


# --- routing ----------------------------------------------------------------------------------------

def test_routing_splits_in_proportion_to_two_percent_depth():
    deep = ConstantProduct(WETH, USDC, 3000.0, 9_000_000.0, fee=0.0)
    thin = ConstantProduct(WETH, USDC, 1000.0, 3_000_000.0, fee=0.0)
    venues = AssetVenues(WETH, [deep, thin])
    assert venues.weights(True) == pytest.approx([0.75, 0.25], rel=1e-12)
    result = venues.trade(40.0)
    assert deep.reserve_asset == pytest.approx(3030.0) and thin.reserve_asset == pytest.approx(1010.0)
    # same relative size in both pools -> same final price in both
    assert deep.mid_price() == pytest.approx(thin.mid_price(), rel=1e-12)
    assert result.price_after == pytest.approx(deep.mid_price(), rel=1e-12)
    assert result.amount_in == pytest.approx(40.0)


# --- building from a snapshot -------------------------------------------------------------------------

def _snapshot(venues: list[dict]) -> Snapshot:
    assets = [{"address": a, "symbol": s, "decimals": d, "price_usd": p}
              for a, s, d, p in ((WETH, "WETH", 18, 3000.0), (USDC, "USDC", 6, 1.0), (WBTC, "WBTC", 8, 60000.0))]
    positions = [{"protocol": "aave-v3", "market": "m", "account": "a", "asset": a, "side": side, "amount": 1.0,
                  "raw": "1"} for a, side in ((WETH, "collateral"), (WBTC, "collateral"), (USDC, "debt"))]
    return Snapshot(meta={"chain_id": 1, "block_number": 1}, assets=assets, positions=positions, venues=venues)


def test_build_venues_names_an_asset_without_venue_and_uses_scenario_model():
    rows = [venue_row("test", "pool-1", WETH, USDC, "constant_product",
                      {"reserve_asset": 100.0, "reserve_quote": 300_000.0})]
    snapshot = _snapshot(rows)
    with pytest.raises(ContagionError, match="WBTC"):
        build_venues(snapshot)
    venues = build_venues(snapshot, {"WBTC": {"model": "sqrt_law", "sigma": 0.03, "daily_volume": 5000.0}})
    assert venues[WBTC].mid_price() == 60_000.0          # p0 from the snapshot price
    assert venues[WETH].mid_price() == pytest.approx(3000.0)
    assert venues[WBTC].trade(10.0).price_after < 60_000.0


def test_venue_row_params_round_trip_and_bad_model():
    row = venue_row("x", "v", WETH, USDC, "linear", {"depth_1pct": 3})
    assert json.loads(row["params"]) == {"depth_1pct": 3}
    with pytest.raises(ContagionError, match="model"):
        venue_row("x", "v", WETH, USDC, "magic", {})


# --- Uniswap V3 venue, offline ------------------------------------------------------------------------

def _v3_params(asset_is_token0: bool, full_range: bool = True) -> dict:
    """A WETH/USDC-like pool at 3000 USD: one position ±10% around the price (+ a thin full range)."""
    from analyzer.amm import concentrated_liquidity as v3

    token0, token1 = (WETH, USDC) if asset_is_token0 else (USDC, WETH)
    decimals0, decimals1 = (18, 6) if asset_is_token0 else (6, 18)
    raw_price = 3000 * 10**6 / 10**18 if asset_is_token0 else 10**18 / (3000 * 10**6)
    tick = round(math.log(raw_price) / math.log(1.0001))
    sqrt_price = v3.get_sqrt_ratio_at_tick(tick)
    lower, upper = (tick - 1000) // 10 * 10, (tick + 1000) // 10 * 10
    nets = {lower: 10**18, upper: -10**18}
    if full_range:
        nets.update({-887270: 10**16, 887270: -10**16})
    return {"token0": token0, "token1": token1, "decimals0": decimals0, "decimals1": decimals1, "fee": 500,
            "tick_spacing": 10, "sqrt_price_x96": str(sqrt_price), "tick": tick, "liquidity": str(10**18 + 10**16 *
            full_range), "ticks": [[t, str(n)] for t, n in nets.items()]}


@pytest.mark.parametrize("asset_is_token0", [True, False])
def test_v3_venue_price_and_depth_in_both_token_orders(asset_is_token0):
    from protocols.uniswap_v3.venue import UniswapV3Venue

    venue = UniswapV3Venue(WETH, USDC, _v3_params(asset_is_token0))
    assert venue.mid_price() == pytest.approx(3000.0, rel=1e-4)        # tick rounding: 1 bp
    for fraction, sell in ((0.02, True), (0.15, True), (0.02, False), (0.3, False)):
        mid = venue.mid_price()
        q = venue.depth(fraction, sell)
        result = venue.copy().trade((q if sell else -q) / (1 - 0.0005 if sell else 1))
        expected = mid * (1 - fraction if sell else 1 + fraction)
        assert result.price_after == pytest.approx(expected, rel=1e-6), (fraction, sell)
    sale = venue.copy().trade(1.0)
    assert 0.99 * 3000 * 0.9995 < sale.amount_out < 3000 * 0.9995       # about 1 ETH at mid less the fee, in USDC


def test_v3_venue_refuses_an_unfillable_purchase_and_keeps_its_state():
    from protocols.uniswap_v3.venue import UniswapV3Venue

    venue = UniswapV3Venue(WETH, USDC, _v3_params(True, full_range=False))
    before = venue.state.sqrt_price_x96
    with pytest.raises(ContagionError, match="cannot buy"):
        venue.trade(-1e6)
    assert venue.state.sqrt_price_x96 == before
    dump = venue.trade(1e6)                            # a sale beyond all liquidity fills partly
    assert dump.amount_in < 1e6 and dump.price_after < 1e-6 * dump.price_before


def test_routing_across_a_v3_pool_and_a_constant_product_pool():
    from protocols.uniswap_v3.venue import UniswapV3Venue

    v3_venue = UniswapV3Venue(WETH, USDC, _v3_params(True))
    mid = v3_venue.mid_price()
    cp = ConstantProduct(WETH, USDC, 1000.0, 1000.0 * mid, fee=0.0)
    venues = AssetVenues(WETH, [v3_venue, cp])
    size = v3_venue.depth(0.02) + cp.depth(0.02)
    singles = [AssetVenues(WETH, [v.copy()]).trade(size).amount_out for v in (v3_venue, cp)]
    result = venues.trade(size)
    # both venues end at one marginal sale price net of fee: the V3 pool's mid over (1 - 0.05%)
    keep = 1 - v3_venue.fee_fraction
    assert v3_venue.mid_price() * keep == pytest.approx(cp.mid_price(), rel=1e-6)
    assert cp.mid_price() == pytest.approx(0.98 * mid, rel=2e-3)
    assert result.amount_out > max(singles)


def _proceeds_usd(venues, amounts) -> float:
    return sum(v.copy().trade(q).amount_out * v.quote_price_usd for v, q in zip(venues, amounts, strict=True) if q > 0)


def test_a_routed_sale_beats_every_other_split_of_two_pools():
    """Independent check of the optimum: a fine grid of splits never earns more than the router."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        pools = [ConstantProduct(WETH, USDC, x, x * 3000.0 * rng.uniform(0.99, 1.01), fee=f)
                 for x, f in ((rng.uniform(100, 5000), rng.choice([0.0005, 0.003, 0.01])) for _ in range(2))]
        size = rng.uniform(1, 3000)
        routed = AssetVenues(WETH, [p.copy() for p in pools]).trade(size).amount_out
        grid = max(_proceeds_usd(pools, (t * size, (1 - t) * size)) for t in np.linspace(0, 1, 401))
        assert routed >= grid * (1 - 1e-9)


def test_a_routed_sale_is_never_worse_than_the_best_single_venue_and_pays_gas():
    from protocols.uniswap_v3.venue import UniswapV3Venue

    rng = np.random.default_rng(8)
    for _ in range(15):
        v3_venue = UniswapV3Venue(WETH, USDC, _v3_params(True))
        reserve = rng.uniform(10, 3000)
        others = [ConstantProduct(WETH, USDC, reserve, reserve * 3000.0 * rng.uniform(0.98, 1.02), fee=0.003),
                  SqrtLaw(WETH, USDC, 3000.0, sigma=0.04, daily_volume=rng.uniform(1e3, 1e6))]
        venues = [v3_venue, *others]
        gas = float(rng.choice([0.0, 50.0]))
        size = float(10 ** rng.uniform(-2, 3.5))
        split = AssetVenues(WETH, [v.copy() for v in venues], swap_gas_usd=gas).split(size)
        assert split.sum() == pytest.approx(size, rel=1e-12) and (split >= 0).all()
        routed = _proceeds_usd(venues, split) - gas * np.count_nonzero(split)
        best_single = max(_proceeds_usd([v], [size]) - gas for v in venues)
        assert routed >= best_single * (1 - 1e-12)


def test_a_dust_sale_goes_to_one_venue_when_each_swap_costs_gas():
    deep = ConstantProduct(WETH, USDC, 3000.0, 9_000_000.0, fee=0.003)
    other = ConstantProduct(WETH, USDC, 2000.0, 6_000_000.0, fee=0.003)
    assert np.count_nonzero(AssetVenues(WETH, [deep, other], swap_gas_usd=5.0).split(0.01)) == 1
    assert np.count_nonzero(AssetVenues(WETH, [deep, other]).split(0.01)) == 2


def test_a_routed_purchase_costs_no_more_than_the_cheapest_single_venue():
    pools = [ConstantProduct(WETH, USDC, 1000.0, 3_000_000.0, fee=0.003),
             ConstantProduct(WETH, USDC, 400.0, 1_210_000.0, fee=0.0005)]
    for size in (0.5, 50.0, 600.0):
        routed = AssetVenues(WETH, [p.copy() for p in pools]).trade(-size).amount_in
        singles = []
        for pool in pools:
            with contextlib.suppress(ContagionError):   # a purchase beyond the pool's reserve
                singles.append(pool.copy().trade(-size).amount_in)
        assert routed <= min(singles) * (1 + 1e-12)


def test_collateral_assets_are_those_pandas_finds():
    """The assets of collateral positions, by Arrow over Arrow text in chunks (a chunk of one side,
    of both, an asset held only as debt, a side that is neither) and by pandas over other columns:
    what a mask of the frame gives."""
    import pandas as pd
    import pyarrow as pa
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from analyzer.engine.impact import _collateral_assets

    texts = st.sampled_from(["0xA", "0xB", "0xC", "", "collateral", "debt", "Collateral"])

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.lists(st.tuples(texts, st.sampled_from(["collateral", "debt", "debt ", ""])), max_size=6),
                    max_size=4), st.booleans())
    def check(chunks, arrow):
        rows = [row for chunk in chunks for row in chunk]
        if arrow:
            def column(i):
                return pd.arrays.ArrowStringArray(pa.chunked_array(
                    [pa.array([r[i] for r in chunk], type=pa.large_string()) for chunk in chunks],
                    type=pa.large_string()))
            positions = pd.DataFrame({"asset": column(0), "side": column(1)})
        else:
            positions = pd.DataFrame({"asset": [r[0] for r in rows], "side": [r[1] for r in rows]}, dtype=object)
        want = {asset for asset, side in rows if side == "collateral"}
        assert _collateral_assets(positions) == want

    check()
