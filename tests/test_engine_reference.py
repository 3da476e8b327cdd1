"""The vectorised engine against its plain reference round, and the invariants of a cascade.

Every snapshot here is synthetic (seeded) in the real Aave V3 reader's row format, and every
liquidation goes through the real rule, ``protocols/aave_v3/rules.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.engine import simulate
from analyzer.engine.cascade import run_round
from analyzer.engine.prepare import prepare, start_state
from analyzer.engine.reference import reference_round
from analyzer.scenarios import ShockScenario
from benchmarks.synthetic import synthetic_snapshot
from protocols.aave_v3.rules import AaveV3Rules

RULES = {"aave-v3": AaveV3Rules()}
FIELDS = ("price_after", "iv_after", "flows", "liquidations", "liquidation_steps", "liquidated_usd", "seized_usd",
          "bad_debt_usd", "market_bad_debt_usd", "writedown", "repaid_tokens", "seized_tokens", "fee_tokens",
          "contagion")


def _close(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(1.0, float(np.nanmax(np.abs(a))) if a.size else 1.0)
    return np.allclose(a, b, rtol=1e-9, atol=1e-9 * scale, equal_nan=True)


snapshots = st.fixed_dictionaries({
    "n_positions": st.integers(3, 45), "n_markets": st.integers(1, 3), "n_assets": st.integers(2, 6),
    "seed": st.integers(0, 10_000), "receipt": st.booleans(),
    "hedger_gamma": st.sampled_from([0.0, -0.5, -50.0]), "depth_multiple": st.sampled_from([0.3, 2.0, 50.0]),
    "hf_median_excess": st.sampled_from([0.05, 0.4])})
scenarios = st.fixed_dictionaries({
    "shock": st.floats(-0.7, -0.01), "oracle_lag": st.integers(0, 1), "sell_through": st.sampled_from([1.0, 0.5]),
    "keeper_gas_usd": st.sampled_from([0.0, 50.0]), "price_impact": st.booleans()})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots, scenarios)
def test_fast_round_equals_reference_round(snap_kw, scen_kw):
    snapshot = synthetic_snapshot(**snap_kw)
    prep = prepare(snapshot, rules=RULES)
    shock = scen_kw.pop("shock")
    scenario = ShockScenario(price_shocks={"TKN1": shock}, **scen_kw)
    state = start_state(prep, scenario)
    for _ in range(4):
        reference_state = copy.deepcopy(state)
        fast = run_round(prep, state, scenario)
        slow = reference_round(prep, reference_state, scenario)
        for name in FIELDS:
            assert _close(getattr(fast, name), getattr(slow, name)), (name, getattr(fast, name), getattr(slow, name))
        for mine, theirs in zip(state.books, reference_state.books, strict=True):
            assert _close(mine.collateral, theirs.collateral) and _close(mine.debt, theirs.debt)
        assert _close(state.market_attr, reference_state.market_attr)


def _run(snapshot, scenario):
    prep = prepare(snapshot, rules=RULES)
    return prep, simulate(prep, scenario)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.8, -0.05), st.booleans())
def test_no_negative_balance_and_tokens_are_conserved(seed, shock, impact):
    snapshot = synthetic_snapshot(60, n_markets=2, n_assets=5, seed=seed, depth_multiple=0.5, hf_median_excess=0.1)
    prep = prepare(snapshot, rules=RULES)
    scenario = ShockScenario(price_shocks={"TKN1": shock, "TKN2": shock}, price_impact=impact)
    state = start_state(prep, scenario)
    records = [run_round(prep, state, scenario) for _ in range(6)]
    repaid = sum(r.repaid_tokens for r in records)[0]
    seized = sum(r.seized_tokens for r in records)[0]
    before_coll = np.zeros(len(prep.assets))
    before_debt = np.zeros(len(prep.assets))
    after_coll = np.zeros(len(prep.assets))
    after_debt = np.zeros(len(prep.assets))
    for slot, book in zip(prep.slots, state.books, strict=True):
        assert (book.collateral >= 0).all() and (book.debt >= 0).all()
        np.add.at(before_coll, slot.cols, slot.book.collateral.sum(0))
        np.add.at(before_debt, slot.cols, slot.book.debt.sum(0))
        np.add.at(after_coll, slot.cols, book.collateral.sum(0))
        np.add.at(after_debt, slot.cols, book.debt.sum(0))
    np.testing.assert_allclose(after_coll + seized, before_coll, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(after_debt + repaid, before_debt, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.8, -0.05), st.sampled_from([0.05, 0.075, 0.1]))
def test_seized_is_repaid_times_one_plus_bonus_and_value_is_conserved(seed, shock, bonus):
    snapshot = synthetic_snapshot(90, n_markets=2, n_assets=5, seed=seed, bonus=bonus, hf_median_excess=0.1)
    prep = prepare(snapshot, rules=RULES)
    # prices stay at the shock (no impact): every party's value can be counted at one set of prices
    scenario = ShockScenario(price_shocks={"TKN1": shock}, price_impact=False)
    state = start_state(prep, scenario)
    records = [run_round(prep, state, scenario) for _ in range(3)]
    for _, _, _, repaid_usd, seized_usd, _, causes in state.account_events:
        np.testing.assert_allclose(seized_usd, repaid_usd * (1.0 + bonus), rtol=1e-9)
        np.testing.assert_allclose(causes.sum(1), 1.0, rtol=1e-12)
    oracle = state.source_history[0]
    liquidator = sum(((r.seized_tokens - r.fee_tokens - r.repaid_tokens)[0] * oracle).sum() for r in records)
    protocol_fees = sum((r.fee_tokens[0] * oracle).sum() for r in records)
    equity_before = bad_before = equity_after = bad_after = 0.0
    for slot, book in zip(prep.slots, state.books, strict=True):
        net_before = slot.book.collateral @ oracle[slot.cols] - slot.book.debt @ oracle[slot.cols]
        net_after = book.collateral @ oracle[slot.cols] - book.debt @ oracle[slot.cols]
        equity_before += np.maximum(net_before, 0).sum()
        bad_before += np.maximum(-net_before, 0).sum()
        equity_after += np.maximum(net_after, 0).sum()
        bad_after += np.maximum(-net_after, 0).sum()
    assert equity_before - bad_before == pytest.approx(equity_after - bad_after + liquidator + protocol_fees,
                                                       rel=1e-9, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_zero_shock_changes_nothing(seed, receipt):
    snapshot = synthetic_snapshot(60, n_markets=2, n_assets=5, seed=seed, receipt=receipt, hedger_gamma=-3.0)
    prep, result = _run(snapshot, ShockScenario())
    assert result.stop_reason == "fixed_point" and len(result.rounds) == 1
    assert result.total_liquidated_usd == 0.0
    np.testing.assert_array_equal(result.price_final, prep.price_pre)
    assert (result.rounds[0].flows == 0).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.8, -0.05))
def test_without_price_impact_the_cascade_is_the_static_liquidation_pass(seed, shock):
    snapshot = synthetic_snapshot(90, n_markets=2, n_assets=5, seed=seed, hf_median_excess=0.1)
    prep, result = _run(snapshot, ShockScenario(price_shocks={"TKN1": shock}, price_impact=False,
                                                max_keeper_steps=64))
    # the static pass: the rule alone, repeated at the shocked prices until nobody is liquidatable
    expected = 0.0
    for slot in prep.slots:
        prices = prep.price_pre[slot.cols] * slot.oracle_scale
        prices = np.where(prep.assets[slot.cols] == snapshot.address_of("TKN1"), prices * (1 + shock), prices)
        book = slot.book
        for _ in range(64):
            liq = slot.rules.liquidate(book, prices)
            if len(liq.rows) == 0:
                break
            expected += (liq.repaid @ prices).sum()
            book = slot.rules.apply(book, liq)
    assert result.total_liquidated_usd == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert result.stop_reason == "fixed_point" and len(result.rounds) <= 2
