"""Lyra V1 rules offline: the Black-Scholes mirror, min collateral, penalty split, vol spiral, engine hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr
from scipy.stats import norm

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from protocols import get
from protocols.lyra_v1 import blackscholes as bs
from protocols.lyra_v1 import rules as R

DAY = 86_400


def textbook_prices(t_years, vol, spot, strike, rate):
    d1 = (math.log(spot / strike) + (rate + vol * vol / 2) * t_years) / (vol * math.sqrt(t_years))
    d2 = d1 - vol * math.sqrt(t_years)
    call = spot * norm.cdf(d1) - strike * math.exp(-rate * t_years) * norm.cdf(d2)
    return call, call - spot + strike * math.exp(-rate * t_years)


def test_hart_cdf_of_the_library_is_the_normal_cdf_to_double_precision():
    x = np.linspace(-12, 12, 20001)
    np.testing.assert_allclose(bs.std_normal_cdf(x), ndtr(x), rtol=0, atol=2e-15)
    assert bs.std_normal_cdf(np.array([-40.0, 40.0])).tolist() == [0.0, 1.0]  # beyond |x| > 37


@pytest.mark.parametrize("tte_days,vol,spot,strike", [(14, 0.8, 3000, 3000), (35, 2.5, 2400, 3300),
                                                      (70, 0.55, 3600, 2500), (1, 1.8, 2000, 2100)])
def test_option_prices_are_black_scholes_on_a_365_day_year(tte_days, vol, spot, strike):
    call, put = bs.option_prices(tte_days * DAY, vol, spot, strike, 0.05)
    want_call, want_put = textbook_prices(tte_days / 365, vol, spot, strike, 0.05)
    assert float(call) == pytest.approx(want_call, rel=1e-11)
    assert float(put) == pytest.approx(want_put, rel=1e-11)


def test_gamma_is_the_spot_derivative_of_delta():
    args = (21 * DAY, 0.9, 3000.0, 3150.0, 0.05)
    h = 0.01
    up, _ = bs.delta(args[0], args[1], args[2] + h, args[3], args[4])
    down, _ = bs.delta(args[0], args[1], args[2] - h, args[3], args[4])
    assert float(bs.gamma(*args)) == pytest.approx(float((up - down) / (2 * h)), rel=1e-6)


def test_shock_vol_is_a_then_linear_then_b():
    p = R.LyraParams()
    weeks = np.array([1, 2, 5, 8, 12]) * 7 * DAY
    np.testing.assert_allclose(R.shock_vol(weeks, p), [2.5, 2.5, 2.15, 1.8, 1.8], rtol=1e-15)


def test_min_collateral_worked_examples():
    # a 14-day ATM put on 1 contract at spot 3000: Black-Scholes at 2400 (0.8 × spot) and 250% vol
    _, put = textbook_prices(14 / 365, 2.5, 2400, 3000, 0.05)
    got = R.min_collateral(np.array([R.SHORT_PUT_QUOTE]), np.array([3000.0]), np.array([14 * DAY]),
                           np.array([3000.0]), np.array([1.0]))
    assert float(got[0]) == pytest.approx(put, rel=1e-11)
    # base-collateralised call: value at 3600 (1.2 × spot) converted to base at 3600
    call, _ = textbook_prices(56 / 365, 1.8, 3600, 3300, 0.05)
    got = R.min_collateral(np.array([R.SHORT_CALL_BASE]), np.array([3300.0]), np.array([56 * DAY]),
                           np.array([3000.0]), np.array([2.0]))
    assert float(got[0]) == pytest.approx(2 * call / 3600, rel=1e-11)
    # floors and caps: static 200 quote / 0.2 base, full = amount (base calls) or strike × amount (puts)
    kinds = np.array([R.SHORT_CALL_QUOTE, R.SHORT_CALL_BASE, R.SHORT_PUT_QUOTE, R.SHORT_CALL_BASE])
    got = R.min_collateral(kinds, np.array([9000.0, 9000.0, 100.0, 1000.0]), np.full(4, 7 * DAY),
                           np.full(4, 3000.0), np.array([0.01, 0.01, 0.5, 0.1]))
    assert got.tolist() == [200.0, 0.01, 50.0, 0.1]


def test_liquidation_fees_split_the_penalty_as_get_liquidation_fees():
    fees = R.liquidation_fees(np.array([300.0, 300.0, 300.0]), np.array([1000.0, 310.0, 10.0]),
                              np.full(3, 15.0), np.ones(3))
    # solvent: penalty 20% of the 700 left = 140, split 30% SM, 40% liquidator, rest to the LPs
    assert fees["return_collateral"].tolist() == pytest.approx([560.0, 0.0, 0.0])
    assert fees["sm_fee"].tolist() == pytest.approx([42.0, 4.5, 3.0])
    assert fees["liquidator_fee"].tolist() == pytest.approx([56.0, 6.0, 4.0])
    assert fees["lp_fee"].tolist() == pytest.approx([42.0, 4.5, 3.0])
    assert fees["lp_premiums"].tolist() == pytest.approx([300.0, 295.0, 0.0])
    # insolvent: what the collateral does not cover of cost + min fee (or of the cost, below the min fee)
    assert fees["insolvent_amount"].tolist() == pytest.approx([0.0, 5.0, 300.0])


def test_vol_spiral_moves_base_iv_with_spot_and_skew_with_forced_buybacks():
    spiral = R.VolSpiral(spot_vol_beta=0.5)
    base, skew = spiral.step(np.array([0.8, 0.8]), np.array([1.0, 1.1]), 3000.0, 2400.0,
                             voluntary_buys=np.array([0.0, 0.0]), forced_buys=np.array([5.0, 0.0]))
    assert base.tolist() == pytest.approx([0.8 + 0.5 * math.log(1.25)] * 2)
    # 5 contracts = one standard size: 1 vol point × skewAdjustmentFactor 0.75 on the skew, base IV untouched
    assert skew.tolist() == pytest.approx([1.0075, 1.1])
    base, skew = spiral.step(np.array([0.8]), np.array([1.0]), 3000.0, 3000.0, np.array([-10.0]), np.array([0.0]))
    assert (base[0], skew[0]) == pytest.approx((0.78, 0.985))


def lyra_snapshot() -> Snapshot:
    market, base, quote = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    state = {"base_asset": base, "quote_asset": quote, "params": {"min_static_quote": 200.0}}
    markets = [{"protocol": "lyra-v1", "market": market, "asset": base, "params": json.dumps(state)}]
    now = 1_700_000_000
    rows = [("call", "short", base, 3300.0, 2.0, 0.9), ("put", "short", quote, 2800.0, 3.0, 2500.0),
            ("call", "short", quote, 3000.0, 1.0, 200.0), ("put", "long", "", 2800.0, 1.0, 0.0)]
    options = [{"protocol": "lyra-v1", "market": market, "account": "0x" + "44" * 20, "position_id": i + 1,
                "kind": k, "side": s, "collateral_asset": c, "strike": K, "expiry": now + 20 * DAY, "size": n,
                "collateral": col} for i, (k, s, c, K, n, col) in enumerate(rows)]
    return Snapshot(meta={"block_timestamp": now}, markets=pd.DataFrame(markets), options=pd.DataFrame(options))


def test_engine_hook_liquidates_what_the_rule_calls_liquidatable():
    snap = lyra_snapshot()
    rules = R.LyraOptionRules.from_snapshot(snap)
    opts = snap.options
    assert rules.option_type(opts).tolist() == [R.SHORT_CALL_BASE, R.SHORT_PUT_QUOTE, R.SHORT_CALL_QUOTE, R.LONG_PUT]
    now = snap.meta["block_timestamp"]
    for spot in (2100.0, 3000.0, 3900.0):
        hit = rules.liquidatable_rows(opts, spot, now)
        need = R.min_collateral(rules.option_type(opts), opts["strike"], opts["expiry"] - now, spot, opts["size"])
        assert hit.tolist() == [bool(c < m) and s == "short" for c, m, s in
                                zip(opts["collateral"], need, opts["side"], strict=True)]
        answer = rules.option_liquidations(opts, np.full(4, spot), np.full(4, 0.8), now)
        assert answer.liquidated.tolist() == hit.tolist()
        assert (answer.collateral_sold <= opts["collateral"].to_numpy() + 1e-12).all()
        assert ((answer.value_usd > 0) == hit).all()
    assert not rules.liquidatable_rows(opts, 3000.0, now)[3]  # longs never are


def test_rules_refuse_a_market_they_were_not_given():
    opts = lyra_snapshot().options
    with pytest.raises(ContagionError, match="not loaded"):
        R.LyraOptionRules().liquidatable_rows(opts, 3000.0, 0)


def test_plugin_has_all_four_parts_and_no_lending_books():
    plugin = get("lyra-v1")
    assert (plugin.reader, plugin.executor, plugin.devnet) != (None, None, None)
    assert plugin.devnet_order == 60
    assert plugin.rules().books(lyra_snapshot()) == []
