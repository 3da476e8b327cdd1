"""Evaluating a set of parameter changes: every stress scenario, settled then shocked.

A set of changes is applied to the snapshot by each protocol's own
:class:`~protocols.base.ParameterTuning` (offline, as its configurator would store them), then every
scenario runs through :func:`analyzer.engine.settle.settle_then_shock`: the liquidations the change
causes at today's prices first, the stress after. Sets are evaluated in batches, in-process or on
Dask like a sweep (:mod:`analyzer.sweep.run`: the snapshot is scattered to the workers once per
batch, each task is one set of changes on one scenario).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange, ParameterTuning

if TYPE_CHECKING:
    from analyzer.engine.prepare import Prepared


@dataclass(frozen=True)
class Outcome:
    """What one set of changes does: bad debt USD per scenario after settling and the stress, and
    what the settle phase liquidated at today's prices (the largest over scenarios: they differ
    only when their market behaviour does)."""

    bad_debt_usd: dict[str, float]
    settle_liquidated_usd: float
    settle_accounts: int
    # per scenario, (protocol, market, collateral asset) -> bad debt USD of the accounts left with
    # bad debt that hold that collateral (a parameter of that row may avoid it)
    bad_debt_collateral: dict[str, dict[tuple[str, str, str], float]] = dataclasses.field(default_factory=dict)

    def excess_usd(self, budget_usd: float) -> float:
        """Bad debt beyond the budget, summed over scenarios (0: every scenario is within it)."""
        return float(sum(max(v - budget_usd, 0.0) for v in self.bad_debt_usd.values()))


def tunings(snapshot: Snapshot) -> dict[str, ParameterTuning]:
    """The tuning capability of every protocol of ``snapshot`` whose plugin declares one."""
    from protocols import plugins

    present = set(snapshot.markets["protocol"])
    return {p.name: p.tuning() for p in plugins().values() if p.tuning is not None and p.name in present}


def tuned(snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
    """``snapshot`` with ``changes`` applied by each protocol's tuning."""
    found = tunings(snapshot)
    for protocol in sorted({c.protocol for c in changes}):
        if protocol not in found:
            raise ContagionError(f"recommend: protocol {protocol} has no parameter tuning")
        snapshot = found[protocol].apply(snapshot, [c for c in changes if c.protocol == protocol])
    return snapshot


def base_venues(snapshot: Snapshot, venue_models: dict | None) -> dict:
    """The snapshot's venues (asset address -> AssetVenues), built once: no risk parameter changes a
    pool, and building them (Uniswap V3 ticks) is most of :func:`~analyzer.engine.prepare.prepare`."""
    from analyzer.engine.prepare import prepare

    prep = prepare(snapshot, venue_models=venue_models or None)
    return {prep.assets[i]: v for i, v in prep.venues.items()}


def outcome(snapshot: Snapshot, scenarios: Sequence[ShockScenario], changes: Sequence[ParameterChange],
            venues: dict[str, dict] | None = None) -> Outcome:
    """Every scenario on ``snapshot`` with ``changes``, settled then shocked. The settle phase runs
    once per market behaviour (scenarios that differ only in their shocks share it). ``venues``:
    :func:`base_venues` by the scenarios' venue-model key (built here when absent)."""
    from analyzer.engine import simulate
    from analyzer.engine.prepare import prepare
    from analyzer.engine.settle import settle, settle_scenario, settled
    from analyzer.recommend.caps import book_at_caps

    venues = {} if venues is None else venues
    snap = book_at_caps(tuned(snapshot, changes))    # grown to the (tuned) caps when the cap analysis is on
    prepared: dict[str, Prepared] = {}
    settlements: dict[str, tuple] = {}
    bad_debt, settle_usd, settle_accounts, by_collateral = {}, 0.0, 0, {}
    for scenario in scenarios:
        key = models_key(scenario)
        if key not in prepared:
            if key not in venues:
                venues[key] = base_venues(snapshot, scenario.venue_models)
            prepared[key] = prepare(snap, venues=venues[key])
        calm = repr(dataclasses.replace(settle_scenario(scenario), name=""))
        if calm not in settlements:
            state, summary = settle(prepared[key], scenario)
            settlements[calm] = (summary, settled(prepared[key], state) if summary.total_accounts else prepared[key])
        summary, start = settlements[calm]
        result = simulate(start, scenario)
        bad_debt[scenario.name] = float(sum(result.bad_debt_usd.values()))
        by_collateral[scenario.name] = bad_debt_collateral(snap, result.accounts)
        settle_usd = max(settle_usd, summary.total_liquidated_usd)
        settle_accounts = max(settle_accounts, summary.total_accounts)
    return Outcome(bad_debt, settle_usd, settle_accounts, by_collateral)


def bad_debt_collateral(snapshot: Snapshot, accounts) -> dict[tuple[str, str, str], float]:
    """(protocol, market, collateral asset) -> bad debt USD of the accounts of ``accounts`` (a
    cascade's per-account frame) left with bad debt that hold that collateral in the snapshot."""
    bad = accounts.loc[accounts["bad_debt_usd"] > 0, ["protocol", "market", "account", "bad_debt_usd"]] \
        if len(accounts) else accounts
    if not len(bad):
        return {}
    pos = snapshot.positions
    held = pos.loc[pos["side"] == "collateral", ["protocol", "market", "account", "asset"]].drop_duplicates()
    keys = {"protocol": str, "market": str, "account": str}
    rows = bad.astype(keys).merge(held.astype(keys), on=list(keys))
    sums = rows.groupby(["protocol", "market", "asset"])["bad_debt_usd"].sum()
    return {(str(p), str(m), str(a)): float(v) for (p, m, a), v in sums.items()}


def models_key(scenario: ShockScenario) -> str:
    return json.dumps(scenario.venue_models, sort_keys=True, default=str)


_VENUES: dict[str, dict] = {}    # per process: snapshot key -> venues by venue-model key


def process_venues(snapshot: Snapshot, key: str) -> dict[str, dict]:
    """This process's :func:`base_venues` of the snapshot keyed ``key``, by venue-model key (one
    snapshot per process at a time)."""
    if key not in _VENUES:
        _VENUES.clear()
        _VENUES[key] = {}
    return _VENUES[key]


def _outcome_task(snapshot: Snapshot, key: str, scenarios: list[ShockScenario], changes: list[ParameterChange]):
    return outcome(snapshot, scenarios, changes, process_venues(snapshot, key))


class Evaluator:
    """Outcomes of sets of changes, cached by the set; ``client``: a Dask client or None (in-process)."""

    def __init__(self, snapshot: Snapshot, scenarios: Sequence[ShockScenario], client=None):
        names = [s.name for s in scenarios]
        if len(set(names)) != len(names):
            raise ContagionError(f"recommend: scenario names must be distinct (got {', '.join(names)})")
        self.snapshot, self.scenarios, self.client = snapshot, list(scenarios), client
        self.cache: dict[tuple, float] = {}                  # (changes key, scenario) -> bad debt USD
        self.settle: dict[tuple, tuple[float, int]] = {}     # changes key -> (settle USD, accounts)
        self.collateral: dict[tuple, dict] = {}              # (changes key, scenario) -> bad debt by collateral
        self.runs = 0
        from analyzer.sweep.run import snapshot_key

        self.snapshot_key = snapshot_key(snapshot)

    def venues(self, scenario: ShockScenario) -> dict:
        """This process's :func:`base_venues` of the snapshot for ``scenario``'s venue models."""
        own = process_venues(self.snapshot, self.snapshot_key)
        key = models_key(scenario)
        if key not in own:
            own[key] = base_venues(self.snapshot, scenario.venue_models)
        return own[key]

    @staticmethod
    def key(changes: Sequence[ParameterChange]) -> tuple:
        return tuple(sorted((c.protocol, c.market, c.asset, c.parameter, round(c.value, 6)) for c in changes))

    def evaluate(self, change_sets: Sequence[Sequence[ParameterChange]],
                 names: Sequence[str] | None = None) -> list[Outcome]:
        """Outcomes of ``change_sets`` over the scenarios ``names`` (default: all), each (set,
        scenario) run once; the settle figures are those of the scenarios run for the set."""
        from analyzer.sweep.run import _execute

        names = [s.name for s in self.scenarios] if names is None else list(names)
        todo: dict[tuple, tuple[list[ParameterChange], list[str]]] = {}
        for changes in change_sets:
            key = self.key(changes)
            missing = [n for n in names if (key, n) not in self.cache]
            if missing and key not in todo:
                todo[key] = (list(changes), missing)
        if todo:
            # in-process: one task per set (scenarios sharing a market behaviour share its settle
            # phase); on Dask: one per (set, scenario), so that even one set runs in parallel
            keys = [k for k in todo for _ in range(len(todo[k][1]) if self.client is not None else 1)]
            groups = [[n] for k in todo for n in todo[k][1]] if self.client is not None else \
                [todo[k][1] for k in todo]
            by_name = {s.name: s for s in self.scenarios}
            tasks = [(_outcome_task, [by_name[n] for n in group], todo[k][0]) for k, group in zip(keys, groups, strict=True)]
            for i, result in _execute(self.client, self.snapshot, self.snapshot_key, tasks):
                for name, value in result.bad_debt_usd.items():
                    self.cache[(keys[i], name)] = value
                    self.collateral[(keys[i], name)] = result.bad_debt_collateral.get(name, {})
                settle = self.settle.get(keys[i], (0.0, 0))
                self.settle[keys[i]] = (max(settle[0], result.settle_liquidated_usd),
                                        max(settle[1], result.settle_accounts))
                self.runs += len(result.bad_debt_usd)
        out = []
        for changes in change_sets:
            key = self.key(changes)
            settle_usd, settle_accounts = self.settle[key]
            out.append(Outcome({n: self.cache[(key, n)] for n in names}, settle_usd, settle_accounts,
                               {n: self.collateral[(key, n)] for n in names}))
        return out

    def one(self, changes: Sequence[ParameterChange], names: Sequence[str] | None = None) -> Outcome:
        return self.evaluate([changes], names)[0]


def liquidatable(snapshot: Snapshot) -> dict[tuple[str, str, str], float]:
    """Every account liquidatable at the snapshot's oracle prices by its protocol's own rule:
    (protocol, market, account) -> its debt USD at those prices."""
    from analyzer.engine.prepare import prepare

    prep = prepare(snapshot, venues={})       # books and oracle prices only
    out: dict[tuple[str, str, str], float] = {}
    for slot in prep.slots:
        rows = np.flatnonzero(slot.initially_liquidatable)
        debt_usd = slot.book.debt[rows] @ (prep.price_pre[slot.cols] * slot.oracle_scale)
        out |= {(slot.protocol, str(slot.book.market), str(slot.book.accounts[r])): float(d)
                for r, d in zip(rows, debt_usd, strict=True)}
    return out


def newly_liquidatable(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """The accounts liquidatable in ``after`` and not in ``before`` (:func:`liquidatable`):
    ``{"accounts": [[protocol, market, account], ...], "debt_usd": their debt in ``after``}``."""
    was, now = liquidatable(before), liquidatable(after)
    new = sorted(k for k in now if k not in was)
    return {"accounts": [list(k) for k in new], "debt_usd": float(sum(now[k] for k in new))}


def liquidatable_now(snapshot: Snapshot, changes: Sequence[ParameterChange]) -> dict[str, Any]:
    """The accounts ``changes`` make liquidatable at today's oracle prices (:func:`newly_liquidatable`)."""
    return newly_liquidatable(snapshot, tuned(snapshot, changes))


__all__ = ["Evaluator", "Outcome", "process_venues", "liquidatable", "liquidatable_now", "newly_liquidatable", "outcome", "tuned",
           "tunings"]
