"""The cascade: protocol liquidations, receipt write-downs, options and price impact, to a fixed point.

One round (DESIGN.md, "The engine"), vectorised over accounts × assets:

1. each protocol's oracle reads the source price of each asset: the venue (market) price, or an
   exogenous (CEX) path, ``oracle_lag`` rounds late;
2. each protocol's own :class:`~protocols.base.Rules` finds the liquidatable accounts and a keeper
   liquidates them step by step while the rule allows and the bonus pays for slippage and gas
   (:mod:`analyzer.engine.market`); uncovered debt becomes that protocol's bad debt;
3. bad debt stays in the market (protocol, market) where it arose. It writes down only the receipt
   tokens whose issuer moves their redemption value with losses
   (:class:`~protocols.base.ReceiptWritedownRules`: Morpho's vault shares), which lowers every
   position that holds them in every consumer whose oracle reads that value (``convertToAssets``);
   an aToken or cToken keeps its value (Aave books a deficit, Compound V2's exchange rate keeps
   the bad debt in its borrows), so a consumer pricing it from the underlying's feed or the
   exchange rate sees nothing, and the loss is the suppliers' unrealised loss, reported beside the
   cascade (:func:`analyzer.engine.result.supplier_losses`), never as a price move;
4. option margin rules close undercollateralised shorts, pools re-hedge (:mod:`.options`);
5. all flows are netted per asset and traded through its venues, giving next round's prices; the
   vol spiral moves IVs; every price change is attributed (:mod:`.attribution`).

Repeated until a fixed point (no liquidation and every market and oracle price change below
``tolerance``) or ``max_rounds``. Units: token amounts in whole tokens, prices USD per token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.engine import attribution as attr
from analyzer.engine.arbitrage import arbitrage
from analyzer.engine.impact import reprice
from analyzer.engine.interest import accrue_round
from analyzer.engine.liquidate import HEALTH_MARGIN, liquidate_slot
from analyzer.engine.market import SlippageCurve, safe_trade, sampled_curve
from analyzer.engine.options import (
    OptionBook,
    bs_delta,
    long_gamma_damping,
    option_margin_liquidations,
    vol_spiral,
)
from analyzer.engine.prepare import Prepared
from analyzer.engine.state_books import StateBooks
from analyzer.scenarios import ShockScenario
from protocols.base import ReceiptWritedownRules


@dataclass
class CascadeState:
    """Everything that changes from round to round (engine-owned copies of books and venues)."""

    round: int
    price: np.ndarray                # (A,) market price entering the round, USD
    exogenous: np.ndarray            # (A,) exogenous (CEX) path, USD
    iv: np.ndarray                   # (A,)
    writedown: np.ndarray            # (A,) fraction of each asset's redemption value written down (receipts)
    books: StateBooks                # LendingBook per slot (the prepared ones plus the rows written)
    venues: dict                     # asset index -> AssetVenues
    venue_mid_pre: dict              # asset index -> mid before the shock
    oracle_from_venue: np.ndarray    # (A,) bool
    source_history: list             # per round index: (A,) price the oracles read
    source_attr_history: list        # per round index: (A, S) its change since before the shock, by source
    market_attr: np.ndarray          # (A, S)
    exogenous_attr: np.ndarray       # (A, S)
    pending_flows: np.ndarray        # (A, S) flows entering round 0 (forced sales)
    option_alive: np.ndarray         # (r,)
    hedge_spot: np.ndarray           # (A,) spot at the pools' last hedge
    hedge_iv: np.ndarray
    hedge_alive: np.ndarray
    account_events: list = field(default_factory=list)   # (slot, rows, round, repaid, seized, fee usd, causes)
    option_events: list = field(default_factory=list)    # (option rows, round, buy-back usd, causes)
    option_carry: dict = field(default_factory=dict)      # (protocol, market) -> its rule's carry to the next round
    contracts_bought: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (A,) bought back this round
    committed_sell: np.ndarray = field(default_factory=lambda: np.zeros(0))    # (A,) sold by keepers so far this round
    committed_buy: np.ndarray = field(default_factory=lambda: np.zeros(0))     # (A,) bought by keepers so far
    curve_cache: dict = field(default_factory=dict)       # asset -> SlippageCurve while its venues are unchanged
    last_oracle: list = field(default_factory=list)       # per slot: (m,) oracle prices last evaluated
    watch: list = field(default_factory=list)             # per slot: (n,) liquidatable when last evaluated
    bad_debt: list = field(default_factory=list)          # per slot: (n,) bad debt USD when last evaluated
    health_bound: list = field(default_factory=list)      # per slot: (n,) lower bound of the health factor
    asset_writedown: np.ndarray | None = None             # (A,) a receipt's own write-down; NaN: its issuer's


@dataclass
class RoundRecord:
    """What one round did. ``P`` = prepared.protocols, ``S`` = prepared.sources, ``A`` = assets."""

    round: int
    price: np.ndarray                # (A,) market price entering the round
    oracle_source: np.ndarray        # (A,) the price oracles read this round
    price_after: np.ndarray          # (A,) next round's market price
    iv_after: np.ndarray
    flows: np.ndarray                # (A, S) asset units sold (> 0) / bought (< 0)
    liquidations: np.ndarray         # (P,) accounts liquidated (lending) or option rows closed
    liquidation_steps: np.ndarray    # (P,) keeper transactions
    liquidated_usd: np.ndarray       # (P,) debt repaid (lending) or buy-back value (options), oracle USD
    seized_usd: np.ndarray           # (P,)
    bad_debt_usd: np.ndarray         # (P,) after the round (a level, not a flow)
    writedown: np.ndarray            # (A,) receipt write-down fraction after the round
    repaid_tokens: np.ndarray        # (P, A)
    seized_tokens: np.ndarray        # (P, A) all collateral taken (liquidator + protocol fee)
    fee_tokens: np.ndarray           # (P, A)
    contagion: np.ndarray            # (S, P) liquidated USD of this round by cause
    gamma_feedback: np.ndarray       # (A,) impact × dealer short gamma (linearised loop gain)
    market_bad_debt_usd: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) by (protocol, market)
    quiet: bool = False


def _oracle_view(prep: Prepared, state: CascadeState, lag: int, round_index: int):
    k = round_index - lag
    if k < 0:
        return prep.price_pre, np.zeros((len(prep.assets), len(prep.sources)))
    return state.source_history[k], state.source_attr_history[k]


def redeemable_units(prep: Prepared, writedown: np.ndarray, asset_writedown: np.ndarray | None = None) -> np.ndarray:
    """(A,) underlying units one unit of each asset redeems for (1 for plain assets), after the
    write-down ``writedown`` (A,) of each receipt by the markets it claims on, or the receipt's own
    (``asset_writedown``, NaN where none) when its issuer declares one."""
    return prep.receipt_ratio * (1.0 - effective_writedown(writedown, asset_writedown))


def effective_writedown(writedown: np.ndarray, asset_writedown: np.ndarray | None) -> np.ndarray:
    """(A,) the write-down that applies to each asset: the issuer's own account where it gives one."""
    return writedown if asset_writedown is None else np.where(np.isfinite(asset_writedown), asset_writedown,
                                                              writedown)


def receipt_writedown(prep: Prepared, market_bad_debt_usd: np.ndarray, market_deposits_usd: np.ndarray,
                      before: np.ndarray) -> np.ndarray:
    """(A,) write-down fraction of each receipt: the bad debt of the markets it claims on over the
    USD their books supplied, at most 1, never below ``before`` (not reversed within a cascade)."""
    bad, deposits = prep.receipt_claims @ market_bad_debt_usd, prep.receipt_claims @ market_deposits_usd
    fraction = np.minimum(np.divide(bad, deposits, out=np.zeros(len(bad)), where=deposits > 0), 1.0)
    return np.maximum(fraction, before)


def receipt_writedowns(prep: Prepared, books: Sequence[Any] | StateBooks, previous: np.ndarray | None) -> np.ndarray | None:
    """(A,) write-down of each receipt whose issuer's rules say which of its books' losses reach it
    (:class:`~protocols.base.ReceiptWritedownRules`: a Morpho vault over the markets it supplies),
    NaN for the others; None when no issuer declares one. Never reversed within a cascade."""
    issuers = {slot.protocol: slot.rules for slot in prep.slots if isinstance(slot.rules, ReceiptWritedownRules)}
    if not issuers:
        return previous
    out = np.full(len(prep.assets), np.nan) if previous is None else previous.copy()
    index = {a: i for i, a in enumerate(prep.assets)}
    for name, rules in issuers.items():
        own = [books[s] for s, slot in enumerate(prep.slots) if slot.protocol == name]
        for asset, fraction in rules.receipt_writedowns(prep.snapshot, own).items():
            a = index.get(asset)
            if a is not None and prep.is_receipt[a]:
                out[a] = max(float(fraction), out[a]) if np.isfinite(out[a]) else float(fraction)
    return out


def curve_source(venues: Mapping[int, Any], price_impact: bool, cache: dict[int, SlippageCurve],
                 shared: bool = False):
    """``curve(a)``: the slippage curve of asset index a on ``venues`` (AssetVenues by asset index)
    at the round's start, sampled on first use into ``cache`` and shared by all books of the round
    (only assets a keeper trades are sampled); flat without ``price_impact`` or venues. The replay
    samples the fork's own pools through it. ``shared``: also reuse a curve sampled on an equal
    venue state by an earlier cascade of this process (:func:`~analyzer.engine.market.sampled_curve`)."""
    sample = sampled_curve if shared else SlippageCurve.sample

    def curve(a: int) -> SlippageCurve:
        a = int(a)
        if a not in cache:
            asset_venues = venues.get(a)
            cache[a] = sample(asset_venues) if (asset_venues is not None and price_impact) \
                else SlippageCurve.flat()
        return cache[a]

    return curve


def run_round(prep: Prepared, state: CascadeState, scenario: ShockScenario) -> RoundRecord:
    """One round of the cascade (module docstring); advances ``state`` in place."""
    n_assets, n_sources, n_protocols = len(prep.assets), len(prep.sources), len(prep.protocols)
    t = state.round
    accrue_round(prep, state, scenario, HEALTH_MARGIN)
    oracle_source, source_attr = _oracle_view(prep, state, scenario.oracle_lag, t)
    flows = state.pending_flows.copy()
    state.pending_flows[:] = 0.0
    record = RoundRecord(
        round=t, price=state.price.copy(), oracle_source=oracle_source.copy(), price_after=state.price,
        iv_after=state.iv, flows=flows, liquidations=np.zeros(n_protocols, np.int64),
        liquidation_steps=np.zeros(n_protocols, np.int64), liquidated_usd=np.zeros(n_protocols),
        seized_usd=np.zeros(n_protocols), bad_debt_usd=np.zeros(n_protocols), writedown=state.writedown.copy(),
        repaid_tokens=np.zeros((n_protocols, n_assets)), seized_tokens=np.zeros((n_protocols, n_assets)),
        fee_tokens=np.zeros((n_protocols, n_assets)), contagion=np.zeros((n_sources, n_protocols)),
        gamma_feedback=np.zeros(n_assets), market_bad_debt_usd=np.zeros(len(prep.markets)))
    unit_value = redeemable_units(prep, state.writedown, state.asset_writedown)
    curves = curve_source(state.venues, scenario.price_impact, state.curve_cache, shared=True)
    state.committed_sell, state.committed_buy = np.zeros(n_assets), np.zeros(n_assets)
    deposits_usd = np.zeros(len(prep.markets))
    for s, slot in enumerate(prep.slots):
        p = prep.protocol_index[slot.protocol]
        steps, candidates, causes = liquidate_slot(prep, state, scenario, s, oracle_source, source_attr, curves,
                                                   unit_value)
        oracle = oracle_source[slot.cols] * slot.oracle_scale
        source = prep.source_index[attr.liquidation_source(slot.protocol)]
        touched = []
        for local, liq, net_sold in steps:   # keeper steps (a handful per round), each vectorised over accounts
            rows = candidates[local]
            repaid, seized, fee = liq.repaid.sum(0), liq.seized.sum(0), liq.fee.sum(0)
            np.add.at(record.repaid_tokens[p], slot.cols, repaid)
            np.add.at(record.seized_tokens[p], slot.cols, seized)
            np.add.at(record.fee_tokens[p], slot.cols, fee)
            flows[:, source] += net_sold
            repaid_usd, seized_usd, fee_usd = liq.repaid @ oracle, liq.seized @ oracle, liq.fee @ oracle
            step_causes = causes[local]
            record.liquidated_usd[p] += repaid_usd.sum()
            record.seized_usd[p] += seized_usd.sum()
            record.liquidation_steps[p] += len(rows)
            record.contagion[:, p] += repaid_usd @ step_causes
            state.account_events.append((s, rows, t, repaid_usd, seized_usd, fee_usd, step_causes))
            touched.append(rows)
        if touched:
            record.liquidations[p] += len(np.unique(np.concatenate(touched)))
        record.bad_debt_usd[p] += state.bad_debt[s].sum()
        record.market_bad_debt_usd[slot.market_index] += state.bad_debt[s].sum()
        deposits_usd[slot.market_index] += slot.collateral_total @ oracle
    writedown = receipt_writedown(prep, record.market_bad_debt_usd, deposits_usd, state.writedown)
    asset_writedown = receipt_writedowns(prep, state.books, state.asset_writedown)
    _options_round(prep, state, scenario, record, flows, oracle_source, source_attr)
    _move_prices(prep, state, scenario, record, flows, writedown, asset_writedown)
    return record


def _options_round(prep: Prepared, state: CascadeState, scenario: ShockScenario, record: RoundRecord,
                   flows: np.ndarray, oracle_source: np.ndarray, source_attr: np.ndarray) -> None:
    book: OptionBook = prep.options
    n_assets = len(prep.assets)
    state.contracts_bought = np.zeros(n_assets)
    if book.empty:
        return
    closed, answers = option_margin_liquidations(prep.option_rules, book, state.option_alive, oracle_source,
                                                 state.iv, n_assets, state.option_carry)
    for protocol, answer in answers.items():
        p, source = prep.protocol_index[protocol], prep.source_index[attr.option_source(protocol)]
        rows = np.flatnonzero(answer.liquidated)
        record.liquidations[p] += len(rows)
        record.liquidation_steps[p] += len(rows)
        record.liquidated_usd[p] += answer.value_usd[rows].sum()
        ok = rows[book.collateral_asset[rows] >= 0]
        np.add.at(flows[:, source], book.collateral_asset[ok], answer.collateral_sold[ok])
        np.add.at(state.contracts_bought, book.underlying[rows], np.abs(book.user_sign_size[rows]))
        exposure = book.user_sign_size[rows] * bs_delta(book.is_call[rows], oracle_source[book.underlying[rows]],
                                                         book.strike[rows], book.years[rows],
                                                         state.iv[book.underlying[rows]])
        contribution = exposure[:, None] * source_attr[book.underlying[rows]]
        causes = attr.causes_from_contribution(contribution, np.zeros(len(rows), dtype=bool))
        record.contagion[:, p] += answer.value_usd[rows] @ causes
        state.option_events.append((rows, state.round, answer.value_usd[rows], causes))
    alive_after = state.option_alive & ~closed
    hedged = book.hedge_sales(state.hedge_spot, state.price, state.hedge_iv, state.iv, state.hedge_alive,
                              alive_after, n_assets)
    # net long-gamma dealers hedge to the price their own trade leaves (continuous hedging, no overshoot)
    damping = np.ones(n_assets)
    if scenario.price_impact:
        gamma = book.net_gamma(state.price, state.iv, alive_after, n_assets)
        depth = np.array([sum(v.depth(0.01, True) for v in state.venues[a].venues) if a in state.venues and
                          gamma[a] > 0 else 0.0 for a in range(n_assets)])
        damping = long_gamma_damping(gamma, state.price, depth)
    for protocol, sold in hedged.items():
        flows[:, prep.source_index[attr.hedging_source(protocol)]] += sold * damping
    # where damped, the dealers are hedged at the price they targeted, not at the round's
    hedged_at = state.hedge_spot + (state.price - state.hedge_spot) * damping
    state.hedge_spot, state.hedge_iv, state.hedge_alive = hedged_at, state.iv.copy(), alive_after
    state.option_alive = alive_after


def _move_prices(prep: Prepared, state: CascadeState, scenario: ShockScenario, record: RoundRecord,
                 flows: np.ndarray, writedown: np.ndarray, asset_writedown: np.ndarray | None = None) -> None:
    """Net flows through the venues, receipts repriced, attribution, IV; the fixed-point test."""
    net = flows.sum(axis=1)
    new_price = state.price.copy()
    if scenario.price_impact:
        for a in np.flatnonzero(net):          # assets (tens), not accounts
            if int(a) in state.venues:
                safe_trade(state.venues[int(a)], float(net[a]))
                state.curve_cache.pop(int(a), None)
        reprice(state.venues, new_price, prep.price_pre, state.venue_mid_pre, prep.assets)
        if scenario.cex_arbitrage and _arbitrage_round(state):
            reprice(state.venues, new_price, prep.price_pre, state.venue_mid_pre, prep.assets)
        moved = set(prep.assets[new_price != state.price])
        for a, venues in state.venues.items():   # a curve is relative to the mid; a moved quote re-weights routes
            if len(venues.venues) > 1 and any(v.quote in moved for v in venues.venues):
                state.curve_cache.pop(a, None)
    change = attr.split_price_change(new_price - state.price, flows)
    change[prep.is_receipt] = 0.0
    exo_change = np.zeros_like(change)
    old_unit = redeemable_units(prep, state.writedown, state.asset_writedown)
    new_unit = redeemable_units(prep, writedown, asset_writedown)
    receipts = np.flatnonzero(prep.is_receipt)
    under = prep.receipt_underlying[receipts]
    new_price[receipts] = new_unit[receipts] * new_price[under]
    exogenous = state.exogenous.copy()
    exogenous[receipts] = new_unit[receipts] * exogenous[under]
    change[receipts] = new_unit[receipts, None] * change[under]
    issued = prep.receipt_protocol_index[receipts] >= 0      # a native coin has no issuer to write it down
    wd_cols = np.array([prep.source_index[attr.writedown_source(prep.protocols[p])]
                        for p in prep.receipt_protocol_index[receipts][issued]], dtype=np.int64)
    lost = (old_unit[receipts] - new_unit[receipts])[issued]
    np.add.at(change, (receipts[issued], wd_cols), -lost * state.price[under[issued]])
    np.add.at(exo_change, (receipts[issued], wd_cols), -lost * state.exogenous[under[issued]])
    state.market_attr += change
    state.exogenous_attr += exo_change
    iv_after = vol_spiral(state.iv, state.price, new_price, scenario.spot_vol_beta, state.contracts_bought,
                          scenario.iv_per_contract)
    short_gamma = prep.options.short_gamma(new_price, iv_after, state.option_alive, len(prep.assets)) \
        if not prep.options.empty else np.zeros(len(prep.assets))
    for a, venues in state.venues.items():
        if short_gamma[a] > 0:
            depth = sum(v.depth(0.01, True) for v in venues.venues)
            record.gamma_feedback[a] = 0.01 * new_price[a] / depth * short_gamma[a] if depth > 0 else np.inf
    source, source_attr = prep.derive_oracles(
        np.where(state.oracle_from_venue, new_price, exogenous),
        np.where(state.oracle_from_venue[:, None], state.market_attr, state.exogenous_attr))
    state.source_history.append(source)
    state.source_attr_history.append(source_attr.copy())
    next_oracle, _ = _oracle_view(prep, state, scenario.oracle_lag, state.round + 1)
    tol = scenario.tolerance
    price_quiet = np.all(np.abs(new_price - state.price) <= tol * np.maximum(np.abs(state.price), 1e-300))
    oracle_quiet = np.all(np.abs(next_oracle - record.oracle_source) <= tol * np.maximum(record.oracle_source,
                                                                                          1e-300))
    record.quiet = bool(record.liquidation_steps.sum() == 0 and price_quiet and oracle_quiet)
    record.price_after, record.iv_after = new_price, iv_after
    record.writedown = effective_writedown(writedown, asset_writedown)
    state.price, state.exogenous, state.iv, state.writedown = new_price, exogenous, iv_after, writedown
    state.asset_writedown = asset_writedown
    state.round += 1


def _arbitrage_round(state: CascadeState) -> bool:
    """Arbitrageurs pull every pool back to its fee band around its asset's CEX price, after the
    round's trades (:mod:`analyzer.engine.arbitrage`); whether any pool was traded."""
    traded = False
    for a in sorted(state.venues):          # assets (tens), in the replay's order
        if arbitrage(state.venues[a]):
            state.curve_cache.pop(a, None)
            traded = True
    return traded


def simulate(snapshot_or_prepared, scenario: ShockScenario, **prepare_kwargs):
    """Run ``scenario`` on a snapshot to a fixed point or the round limit.

    Parameters
    ----------
    snapshot_or_prepared : Snapshot or Prepared
        A scan (:class:`~analyzer.model.Snapshot`), or one already turned into arrays by
        :func:`~analyzer.engine.prepare.prepare` (to run many scenarios on one snapshot).
    scenario : ShockScenario
        The shocks and the market's behaviour after them; ``max_rounds`` and ``tolerance`` set
        when the cascade stops (no liquidation and every price change within ``tolerance``).
    **prepare_kwargs
        Passed to :func:`~analyzer.engine.prepare.prepare` (``rules``, ``venues``,
        ``venue_models``) when given a Snapshot.

    Returns
    -------
    CascadeResult
        Per round, protocol and account: what was liquidated, the bad debt, the prices; its
        ``to_json`` is ``cascade.json`` (:mod:`analyzer.engine.result`).

    Raises
    ------
    ContagionError
        The scenario names an asset or account the snapshot does not hold, or a venue model it
        cannot apply.
    """
    from analyzer.engine.memory import keep_freed_memory
    from analyzer.engine.prepare import prepare, start_state
    from analyzer.engine.result import (
        CascadeResult,
        accounts_frame,
        left_liquidatable_usd,
        receipt_losses_usd,
        supplier_losses,
    )

    keep_freed_memory()         # a round's arrays reuse the last round's pages (analyzer/engine/memory.py)
    if not isinstance(snapshot_or_prepared, Prepared) and scenario.venue_models:
        prepare_kwargs.setdefault("venue_models", scenario.venue_models)
    prep = snapshot_or_prepared if isinstance(snapshot_or_prepared, Prepared) else \
        prepare(snapshot_or_prepared, **prepare_kwargs)
    state = start_state(prep, scenario)
    price_after_shock = state.price.copy()
    records, stop = [], "round_limit"
    for _ in range(scenario.max_rounds):
        records.append(run_round(prep, state, scenario))
        if records[-1].quiet:
            stop = "fixed_point"
            break
    shocks = {}
    for table in ("price_shocks", "venue_shocks"):
        for name, move in getattr(scenario, table).items():
            shocks[prep.asset(name, f"scenario {scenario.name}: {table}")] = float(move)
    final_oracle = state.source_history[-1]
    return CascadeResult(
        scenario=scenario.to_dict(), snapshot_meta=dict(getattr(prep.snapshot, "meta", {})), assets=prep.assets,
        symbols=prep.symbols, protocols=prep.protocols, sources=prep.sources, rounds=records, stop_reason=stop,
        price_before=prep.price_pre, price_after_shock=price_after_shock, iv_before=prep.iv_pre, shocks=shocks,
        accounts=accounts_frame(prep, state, final_oracle), receipt_writedown_usd=receipt_losses_usd(prep, state),
        unliquidated_usd=left_liquidatable_usd(prep, state, final_oracle), markets=list(prep.markets),
        receipt_protocol=prep.receipt_protocol_index,
        supplier_loss=supplier_losses(prep, state, final_oracle, state.source_attr_history[-1]))
