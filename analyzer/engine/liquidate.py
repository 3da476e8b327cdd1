"""Step 2 of a round (:mod:`analyzer.engine.cascade`): keepers on one book at the round's oracle prices.

Screening hands the protocol's rule only the accounts that can have become liquidatable; the rule
finds the candidates; keepers liquidate them step by step while the rule allows and the bonus pays
(:func:`analyzer.engine.keeper.keeper_take`); the accounts are written back to the state's books
(:class:`~analyzer.engine.state_books.StateBooks`: only the rows written are copied) with their new
health-factor bounds and bad debt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from analyzer.engine import attribution as attr
from analyzer.engine.keeper import keeper_take
from analyzer.engine.prepare import BookSlot, Prepared
from analyzer.engine.state_books import book_wide, write_rows
from analyzer.scenarios import ShockScenario
from protocols.base import LendingBook, Liquidation

if TYPE_CHECKING:
    from analyzer.engine.cascade import CascadeState

HEALTH_MARGIN = 1e-3   # screening slack: Aave floors the weighted threshold to whole bp (< 1.3e-4 relative)


def liquidate_slot(prep: Prepared, state: CascadeState, scenario: ShockScenario, slot_index: int,
                   oracle_source: np.ndarray, source_attr: np.ndarray, curves, unit_value: np.ndarray):
    """Run keepers on one book at this round's oracle prices. Returns the steps taken as
    ``(rows, Liquidation, net asset units sold (A,))`` (rows index ``candidates``), the candidates
    (rows of the book liquidatable at the round's start) and their causes ``(k, S)``."""
    slot, books = prep.slots[slot_index], state.books
    oracle = oracle_source[slot.cols] * slot.oracle_scale
    no_causes = np.zeros((0, len(prep.sources)))
    rows = screened_rows(slot, state, slot_index, oracle)
    if len(rows) == 0:
        return [], rows, no_causes
    view = books[slot_index] if len(rows) == books.accounts(slot_index) else books.take(slot_index, rows)
    health, liquidatable = slot.rules.health_and_liquidatable(view, oracle)
    candidates = rows[liquidatable]
    if len(candidates) == 0:
        _record_health(slot, state, slot_index, oracle, rows, view, health, candidates, None)
        return [], candidates, no_causes
    sub = books.take(slot_index, candidates)
    exposure = sub.collateral * slot.threshold - sub.debt
    causes = attr.account_causes(exposure, source_attr[slot.cols] * slot.oracle_scale[:, None],
                                 slot.initially_liquidatable[candidates])
    steps, sub = keeper_steps(prep, state, scenario, slot, oracle, sub, curves, unit_value)
    if steps:       # with the protocol's own state (Comet's reserves, Aave's deficits)
        books.write(slot_index, candidates, sub)
    _record_health(slot, state, slot_index, oracle, rows, view, health, candidates, sub)
    return steps, candidates, causes


def screened_rows(slot: BookSlot, state: CascadeState, slot_index: int, oracle: np.ndarray) -> np.ndarray:
    """Rows of the book the protocol's rule must look at under ``oracle`` (m,); lowers their bounds.

    Screening, exact for health factors that are a ratio of two price-linear sums (collateral ×
    threshold over debt: Aave, Compound, Comet): a column whose price moves by a factor r moves a
    holder's health factor by at least min(r, 1/r). Only accounts whose bound falls under 1 (plus a
    margin for Aave's whole-bp threshold floor), that have bad debt to reprice, or that were left
    liquidatable last round are handed to the protocol's rule."""
    bound, last = state.health_bound[slot_index], state.last_oracle[slot_index]
    touched = np.zeros(len(bound), dtype=bool)
    for j in np.flatnonzero(oracle != last):    # columns (tens)
        ratio = oracle[j] / last[j] if last[j] > 0 else 0.0
        if ratio > 0:
            bound[slot.holders[j]] *= min(ratio, 1.0 / ratio)
        else:       # a price at 0: every holder's bound is 0, but a debt-free account's stays infinite
            holders = slot.holders[j]
            bound[holders[np.isfinite(bound[holders])]] = 0.0
        touched[slot.holders[j]] = True
    state.last_oracle[slot_index] = oracle
    screened = state.watch[slot_index] | (touched & ((bound < 1.0 + HEALTH_MARGIN)
                                                      | (state.bad_debt[slot_index] > 0)))
    return np.flatnonzero(screened)


def keeper_steps(prep: Prepared, state: CascadeState, scenario: ShockScenario, slot: BookSlot,
                 oracle: np.ndarray, sub: LendingBook, curves, unit_value: np.ndarray):
    """Keepers on the candidates ``sub`` (a book of them), step by step, up to
    ``scenario.max_keeper_steps``. Returns the steps (rows index ``sub``) and ``sub`` as they left it;
    adds what they traded to ``state.committed_sell`` / ``committed_buy``."""
    sale_idx = prep.receipt_underlying[slot.cols]
    sale_units = unit_value[slot.cols]
    active = np.ones(len(sub.accounts), dtype=bool)
    steps: list[tuple[np.ndarray, Liquidation, np.ndarray]] = []
    for _ in range(scenario.max_keeper_steps):
        act = np.flatnonzero(active)
        if len(act) == 0:
            break
        # the rule runs on the accounts still in play only: prices are fixed within a round, so an
        # account that was not liquidated in a step will not be in a later one
        work = sub if len(act) == len(sub.accounts) else sub.take(act)
        liq = slot.rules.liquidate(work, oracle)
        if len(liq.rows) == 0:
            break
        left_out = np.ones(len(act), dtype=bool)
        left_out[liq.rows] = False
        active[act[left_out]] = False
        take = keeper_take(slot.rules, work, liq, oracle, cols=slot.cols, sale_index=sale_idx, sale_units=sale_units,
                           price=state.price, curves=curves, committed_sell=state.committed_sell,
                           committed_buy=state.committed_buy, sell_through=scenario.sell_through,
                           gas_usd=scenario.keeper_gas_usd)
        share, sell_units, buy_units = take.share, take.sell_units, take.buy_units
        if not liq.absorbed_by_protocol:
            # the protocol absorbs the whole account whatever a buyer takes (Comet); otherwise a
            # keeper that declines, or takes only the part that pays, is done with the account this round
            active[act[liq.rows[share < 1.0]]] = False
            taken = share > 0
            liq = liq.select(taken).scaled(share[taken])
            sell_units, buy_units = sell_units[taken], buy_units[taken]
            if len(liq.rows) == 0:
                continue
        state.committed_sell += sell_units.sum(0)
        state.committed_buy += buy_units.sum(0)
        work = slot.rules.apply(work, liq)
        if len(act) == len(sub.accounts):
            sub = work
        else:
            write_rows(sub, act, work)
        steps.append((act[liq.rows], liq, sell_units.sum(0) - buy_units.sum(0)))
    return steps, sub


def _record_health(slot: BookSlot, state: CascadeState, slot_index: int, oracle: np.ndarray, rows: np.ndarray,
                   view: LendingBook, health: np.ndarray, candidates: np.ndarray, sub: LendingBook | None) -> None:
    """After the keepers, for the screened ``rows`` (``view``: them before the keepers, ``health``:
    their health factors): the candidates still liquidatable (``sub``: them as the keepers left them), watched
    next round; the bad debt of those that can have any; every screened account's health factor,
    its new bound (only the candidates' changed)."""
    # bad debt needs debt beyond *all* collateral, so health factor < 1 (thresholds are <= 1): only
    # candidates and accounts that already had bad debt (no collateral left) need a new figure
    bad_debt = state.bad_debt[slot_index]
    indebted = rows[bad_debt[rows] > 0]
    state.watch[slot_index][:] = False
    bad_debt[rows] = 0.0
    state.health_bound[slot_index][rows] = health
    if len(candidates):
        assert sub is not None      # the keepers' book of the candidates
        health_after, still = slot.rules.health_and_liquidatable(sub, oracle)
        state.watch[slot_index][candidates[still]] = True
        state.health_bound[slot_index][candidates] = health_after
        indebted = np.setdiff1d(indebted, candidates, assume_unique=True)
    if len(indebted):
        # not candidates, so the keepers did not touch them: their rows of the view, with the
        # protocol's own state as the keepers left it (Comet's reserves)
        owing = view.take(np.searchsorted(rows, indebted))
        if sub is not None:
            owing.extra.update(book_wide(sub))
        bad_debt[indebted] = slot.rules.bad_debt_usd(owing, oracle)
    if len(candidates):
        assert sub is not None
        bad_debt[candidates] = slot.rules.bad_debt_usd(sub, oracle)
