"""Dealer hedging in the cascade: the closed form of a constant-gamma dealer on a linear venue, the
sign of the effect of dealer gamma, and off-chain dealers as a source of their own (hedging:<venue>)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.engine.cascade import simulate
from analyzer.model import Snapshot
from analyzer.scenarios import ShockScenario
from benchmarks.synthetic import PROTOCOL, synthetic_snapshot
from protocols.aave_v3.rules import AaveV3Rules

USDC, X = to_checksum_address("0x" + "01" * 20), to_checksum_address("0x" + "02" * 20)


def _one_venue(gamma: float, depth_1pct: float, price: float) -> Snapshot:
    assets = pd.DataFrame({"address": [USDC, X], "symbol": ["USDC", "X"], "decimals": 18,
                           "price_usd": [1.0, price], "receipt_of": "", "iv": [np.nan, 0.5]})
    venues = pd.DataFrame({"protocol": "test", "venue": "lin", "asset": [X], "quote_asset": USDC, "model": "linear",
                           "params": json.dumps({"depth_1pct": depth_1pct, "price_usd": price})})
    hedgers = pd.DataFrame({"protocol": "dealers", "market": "m", "asset": [X], "net_delta": 0.0,
                            "net_gamma": gamma, "net_vega": 0.0, "hedge_position": 0.0})
    return Snapshot(meta={"chain_id": 1, "block_number": 1, "block_timestamp": 1}, assets=assets, venues=venues,
                    hedgers=hedgers)


@pytest.mark.parametrize("gamma, shock", [(-300.0, -0.1), (-900.0, -0.05), (250.0, -0.2), (-150.0, 0.15),
                                          (2500.0, -0.2), (6000.0, 0.1)])
def test_constant_gamma_on_linear_depth_follows_the_hand_computation(gamma, shock):
    """Linear venue p(Q) = p0 (1 - Q/D), one-round loop gain g = p0 Γ / D. A dealer of constant gamma Γ
    (base units per USD) short gamma (Γ < 0) sells Γ · Δp after each move Δp of the price from where it
    last hedged, so p_{t+1} - p_t = g (p_t - p_{t-1}): a geometric series. Long gamma (Γ > 0) hedges to
    the price its own trade leaves, q = Γ (Δp - q p0 / D) = Γ Δp / (1 + g), and is then hedged there:
    the price settles at Δp / (1 + g) from the last hedge at once, also when g > 1 (no overshoot)."""
    p0, depth_1pct = 100.0, 1000.0
    full = 100.0 * depth_1pct
    result = simulate(_one_venue(gamma, depth_1pct, p0), ShockScenario(price_shocks={"X": shock}, max_rounds=400),
                      rules={})
    hedging = result.sources.index("hedging:dealers")
    damping = 1.0 / (1.0 + gamma * p0 / full) if gamma > 0 else 1.0
    flow, hedged_at, price = full * -shock, p0, p0 * (1 + shock)
    for record in result.rounds:
        sold = gamma * (price - hedged_at) * damping
        flow += sold
        after = p0 * (1 - flow / full)
        assert record.price[1] == pytest.approx(price, rel=1e-9)
        assert record.flows[1, hedging] == pytest.approx(sold, rel=1e-9, abs=1e-9)
        assert record.price_after[1] == pytest.approx(after, rel=1e-9)
        hedged_at, price = hedged_at + (price - hedged_at) * damping, after
    assert result.stop_reason == "fixed_point"
    if gamma > 0:     # continuous hedging's level, never beyond the price before the shock
        assert result.rounds[-1].price_after[1] == pytest.approx(p0 * (1 + shock * damping), rel=1e-9)
        assert len(result.rounds) <= 2


def _seized_usd(result) -> float:
    return float(sum((r.seized_tokens @ result.price_before).sum() for r in result.rounds))


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), gamma_scale=st.floats(0.02, 3.0), shock=st.sampled_from([-0.1, -0.2, -0.3]))
def test_long_gamma_dealers_liquidate_no_more_and_short_gamma_no_less(seed, gamma_scale, shock):
    """Gamma in units of the pool's depth: a constant-product pool's price moves ~2p/x per unit sold,
    so ``gamma_scale`` s gives a one-round loop gain of about 2s, up to 6: long-gamma dealers hedge to
    the price their own trade leaves (no overshoot past the fall they answer), short-gamma dealers
    sell into the fall round after round."""
    base = synthetic_snapshot(200, n_markets=1, n_assets=3, seed=seed)
    pool = json.loads(base.venues["params"][base.venues["asset"] == base.assets["address"][1]].iloc[0])
    gamma = gamma_scale * pool["reserve_asset"] / base.assets["price_usd"][1]
    scenario = ShockScenario(price_shocks={"TKN1": shock}, max_rounds=40)
    rules = {PROTOCOL: AaveV3Rules()}
    seized = {}
    for name, g in (("long", gamma), ("none", 0.0), ("short", -gamma)):
        snapshot = synthetic_snapshot(200, n_markets=1, n_assets=3, seed=seed, hedger_gamma=g) if g else base
        seized[name] = _seized_usd(simulate(snapshot, scenario, rules=rules))
    assert seized["long"] <= seized["none"] * (1 + 1e-9) + 1e-6
    assert seized["short"] >= seized["none"] * (1 - 1e-9) - 1e-6
