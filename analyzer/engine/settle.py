"""Settle, then shock: a risk-parameter change takes effect before the stress does.

A governance change (a lower liquidation threshold, a lower collateral factor) is executed on a
chain whose prices have not moved: the accounts it makes liquidatable are liquidated at today's
prices first, keepers sell what they seize, the venues move. Only then does a stress scenario hit,
and it hits the *settled* book at the *settled* prices. Applying the shock to the book as it stood
(``simulate(tuned snapshot, scenario)``) instead liquidates the accounts the change made unhealthy
at stressed prices, with more bad debt, and makes every cut look counterproductive.

:func:`settle_then_shock` runs two cascades with the same engine round
(:func:`analyzer.engine.cascade.run_round`):

1. **settle**: the scenario's market behaviour (impact, keeper gas, oracle sources, round limit)
   with no shock, from the snapshot's prices to a fixed point;
2. **stress**: the scenario's shocks, relative to the settled market prices, on the settled books
   and venues (:func:`settled`), to a fixed point.

Bad debt is a level carried by the books, so the stress result's bad debt includes any the settle
phase left. Options are carried unchanged: the settle phase moves no IV and a parameter of a lending
market changes no option margin, so it closes only options already under margin today (as the plain
cascade's first round would); the pools' hedges start again from the settled prices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from analyzer.engine.cascade import CascadeState, RoundRecord, run_round, simulate
from analyzer.engine.prepare import BookSlot, Prepared, prepare, start_state
from analyzer.engine.result import CascadeResult
from analyzer.scenarios import ShockScenario


@dataclass
class Settlement:
    """What the settle phase did, per protocol (``protocols``), in oracle USD at the time of each step."""

    protocols: list[str]
    rounds: list[RoundRecord]
    stop_reason: str
    price_before: np.ndarray       # (A,) market prices of the snapshot
    price_after: np.ndarray        # (A,) settled market prices (what the stress shock is relative to)
    accounts_liquidated: dict[str, int]     # distinct accounts liquidated, per protocol
    liquidated_usd: dict[str, float]        # debt repaid, per protocol
    bad_debt_usd: dict[str, float]          # level after settling, per protocol

    @property
    def total_accounts(self) -> int:
        return int(sum(self.accounts_liquidated.values()))

    @property
    def total_liquidated_usd(self) -> float:
        return float(sum(self.liquidated_usd.values()))


@dataclass
class SettledCascade:
    """The settle phase and the stress cascade that follows it."""

    settlement: Settlement
    stress: CascadeResult

    @property
    def bad_debt_usd(self) -> dict[str, float]:
        return self.stress.bad_debt_usd

    @property
    def total_bad_debt_usd(self) -> float:
        return float(sum(self.stress.bad_debt_usd.values()))


def settle_scenario(scenario: ShockScenario) -> ShockScenario:
    """``scenario``'s market behaviour without its shocks (no price, venue or IV move, no forced sale)."""
    return dataclasses.replace(scenario, name=f"{scenario.name}/settle", price_shocks={}, venue_shocks={},
                               iv_shocks={}, forced_sales=[])


def settle(prep: Prepared, scenario: ShockScenario) -> tuple[CascadeState, Settlement]:
    """Run the cascade at today's prices (``settle_scenario(scenario)``) to a fixed point."""
    calm = settle_scenario(scenario)
    state = start_state(prep, calm)
    records, stop = [], "round_limit"
    for _ in range(calm.max_rounds):
        records.append(run_round(prep, state, calm))
        if records[-1].quiet:
            stop = "fixed_point"
            break
    liquidated = np.zeros(len(prep.protocols), np.int64)
    for s, slot in enumerate(prep.slots):
        rows = [event[1] for event in state.account_events if event[0] == s]
        if rows:
            liquidated[prep.protocol_index[slot.protocol]] += len(np.unique(np.concatenate(rows)))
    repaid = np.sum([r.liquidated_usd for r in records], axis=0) if records else np.zeros(len(prep.protocols))
    summary = Settlement(list(prep.protocols), records, stop, prep.price_pre.copy(), state.price.copy(),
                         dict(zip(prep.protocols, liquidated.tolist(), strict=True)),
                         dict(zip(prep.protocols, repaid.tolist(), strict=True)),
                         dict(zip(prep.protocols, records[-1].bad_debt_usd.tolist(), strict=True)))
    return state, summary


def settled(prep: Prepared, state: CascadeState) -> Prepared:
    """``prep`` as it stands after ``state``: the settled books, venues and market prices, and
    every per-book figure the engine derives from them (``prep`` is not modified). Receipts are
    priced at their unwritten ratio: a loss the settle phase left is a bad-debt level in the books,
    and the next cascade's first round writes the receipts down from it."""
    price = state.price.copy()
    receipts = np.flatnonzero(prep.is_receipt)
    price[receipts] = prep.receipt_ratio[receipts] * price[prep.receipt_underlying[receipts]]
    slots = []
    for s, slot in enumerate(prep.slots):
        book = state.books[s].copy() if state.books.changed(s) else slot.book
        oracle = price[slot.cols] * slot.oracle_scale
        held = (book.collateral != 0) | (book.debt != 0)
        slots.append(dataclasses.replace(
            slot, book=book,
            initially_liquidatable=np.asarray(slot.rules.liquidatable(book, oracle), dtype=bool),
            bad_debt_pre=np.asarray(slot.rules.bad_debt_usd(book, oracle), dtype=float),
            health_pre=np.asarray(slot.rules.health_factor(book, oracle), dtype=float),
            holders=[np.flatnonzero(held[:, j]) for j in range(len(slot.cols))],
            collateral_total=book.collateral.sum(0)))
    venues = {a: v.copy() for a, v in state.venues.items()}
    return dataclasses.replace(prep, price_pre=price, slots=slots, venues=venues)


def settle_then_shock(snapshot_or_prepared, scenario: ShockScenario, **prepare_kwargs) -> SettledCascade:
    """Settle the book at today's prices, then run ``scenario`` on the settled state (module
    docstring). ``prepare_kwargs`` go to :func:`~analyzer.engine.prepare.prepare`.

    Example: a 75% threshold where the account's health is 0.94 liquidates it at today's $2,000
    (the settle phase), and a -10% shock then finds a smaller, healthier position::

        result = settle_then_shock(tuned_snapshot, ShockScenario(price_shocks={"WETH": -0.10}))
        result.settlement.accounts_liquidated, result.total_bad_debt_usd
    """
    if not isinstance(snapshot_or_prepared, Prepared) and scenario.venue_models:
        prepare_kwargs.setdefault("venue_models", scenario.venue_models)
    prep = snapshot_or_prepared if isinstance(snapshot_or_prepared, Prepared) else \
        prepare(snapshot_or_prepared, **prepare_kwargs)
    state, summary = settle(prep, scenario)
    if summary.total_accounts == 0:       # nothing to settle: the stress runs on the book as it is
        return SettledCascade(summary, simulate(prep, scenario))
    return SettledCascade(summary, simulate(settled(prep, state), scenario))


__all__ = ["BookSlot", "SettledCascade", "Settlement", "settle", "settle_then_shock", "settled"]
