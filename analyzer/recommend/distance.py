"""Distance to cascade of a recommendation's asset, with today's parameters and with the changes.

Two falls of one asset (the other prices unmoved, one scenario's market behaviour), each on the book
settled at today's prices first, as every evaluation of the search
(:mod:`analyzer.engine.settle`), each the smallest fall that crosses a line:

- ``distance_to_budget``: the smallest fall at which the bad debt exceeds the budget (0 when the
  settled book already does). This is what a recommendation moves: when it keeps a scenario that
  falls the asset by x within the budget, and bad debt grows with the fall, the fall that breaks
  the budget lies beyond x.
- ``distance_to_first_bad_debt``: the smallest fall creating bad debt (more than
  :data:`MIN_BAD_DEBT_USD` beyond the settled book's own), the criterion of
  :func:`analyzer.sweep.systemic.distance_to_cascade`. A change that keeps bad debt under a
  budget need not move it: the first account to go under may stay where it is.

Both are relative moves (-0.2 = a 20% fall), the failing end of the last bracket (a fall that
crosses the line, at most :data:`TOLERANCE` beyond the first that does), None when even
:data:`PROBES`' last fall does not. The search probes the falls of :data:`PROBES` in order and
bisects the first bracket that crosses, rather than bisecting [0, 95%]: a deep fall's cascade is
the expensive one (a -95% WETH cascade runs ~100 s on the devnet, a -20% one ~1 s), and the probes
stop before it unless the line lies that far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from analyzer.model import Snapshot
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange

PROBES = (0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.95)    # falls, tried in order
TOLERANCE = 0.01
MIN_BAD_DEBT_USD = 1.0
NAMES = ("distance_to_budget", "distance_to_first_bad_debt")


def smallest_fall(crosses: Callable[[float], bool], probes: Sequence[float] = PROBES,
                  tolerance: float = TOLERANCE) -> float | None:
    """The smallest fall (a positive share) for which ``crosses(fall)``, to ``tolerance``: the
    probes in order, then bisection of the bracket (last fall that does not, first that does);
    the failing end, or None when no probe crosses. ``crosses(0)`` is the caller's to check."""
    safe, failing = 0.0, None
    for fall in probes:
        if crosses(fall):
            failing = fall
            break
        safe = fall
    if failing is None:
        return None
    while failing - safe > tolerance:
        middle = round((safe + failing) / 2.0, 12)
        if crosses(middle):
            failing = middle
        else:
            safe = middle
    return failing


def falls(snapshot: Snapshot, scenario: ShockScenario, asset: str, budget_usd: float,
          venues: dict | None = None) -> dict[str, float | None]:
    """The module docstring's two distances of ``asset`` on ``snapshot`` (parameters as they stand
    in it), ``scenario``'s market behaviour; ``venues``: the snapshot's
    (:func:`analyzer.recommend.evaluate.base_venues`), when built. The cascade of each fall runs
    once (both searches share them)."""
    from analyzer.engine import simulate
    from analyzer.engine.prepare import prepare
    from analyzer.engine.settle import settle, settle_scenario, settled

    prep = prepare(snapshot, venue_models=scenario.venue_models or None, venues=venues)
    state, summary = settle(prep, scenario)
    start = settled(prep, state) if summary.total_accounts else prep
    calm = replace(settle_scenario(scenario), name="distance")
    bad_debt: dict[float, float] = {}

    def bad_debt_at(fall: float) -> float:
        if fall not in bad_debt:
            shocked = replace(calm, price_shocks={asset: -fall}) if fall else calm
            bad_debt[fall] = float(sum(simulate(start, shocked).bad_debt_usd.values()))
        return bad_debt[fall]

    settled_level = bad_debt_at(0.0)
    to_budget = 0.0 if settled_level > budget_usd else smallest_fall(lambda f: bad_debt_at(f) > budget_usd)
    first = smallest_fall(lambda f: bad_debt_at(f) - settled_level > MIN_BAD_DEBT_USD)
    return {"distance_to_budget": None if to_budget is None else -to_budget,
            "distance_to_first_bad_debt": None if first is None else -first}


def behaviour_of(scenarios: Sequence[ShockScenario], snapshot: Snapshot, asset: str) -> tuple[ShockScenario, float | None]:
    """The scenario that falls ``asset`` furthest (its market behaviour measures the asset's
    distances) and that fall (a relative move, None when no scenario falls it: the first scenario)."""
    moves = [(float(move), s) for s in scenarios for name, move in s.price_shocks.items()
             if snapshot.address_of(name) == asset and float(move) < 0]
    if not moves:
        return scenarios[0], None
    move, scenario = min(moves, key=lambda m: m[0])
    return scenario, move


def _falls_task(snapshot: Snapshot, key: str, scenario: ShockScenario, asset: str, budget_usd: float,
                changes: list[ParameterChange]) -> dict[str, float | None]:
    from analyzer.recommend.caps import book_at_caps
    from analyzer.recommend.evaluate import base_venues, models_key, process_venues, tuned

    venues = process_venues(snapshot, key)
    if models_key(scenario) not in venues:
        venues[models_key(scenario)] = base_venues(snapshot, scenario.venue_models)
    # the book the search evaluated: tuned, grown to the (tuned) caps when the cap analysis is on
    return falls(book_at_caps(tuned(snapshot, changes)), scenario, asset, budget_usd, venues[models_key(scenario)])


def asset_distances(snapshot: Snapshot, assets: Sequence[str], changes: Sequence[ParameterChange],
                    scenarios: Sequence[ShockScenario], budget_usd: float, client, snapshot_key: str
                    ) -> dict[str, dict[str, float | None]]:
    """Per asset of ``assets``: the worst scenario fall of it (``worst_scenario_fall``), and
    :func:`falls` with today's parameters (``*_before``) and with ``changes`` (``*_after``), each
    a task (in parallel on Dask: ``client``)."""
    from analyzer.sweep.run import _execute

    tasks, worst = [], {}
    for asset in assets:
        scenario, worst[asset] = behaviour_of(scenarios, snapshot, asset)
        tasks += [(_falls_task, scenario, asset, budget_usd, []), (_falls_task, scenario, asset, budget_usd, list(changes))]
    found = dict(_execute(client, snapshot, snapshot_key, tasks))
    out = {}
    for i, asset in enumerate(assets):
        before, after = found[2 * i], found[2 * i + 1]
        out[asset] = {"worst_scenario_fall": worst[asset],
                      **{f"{n}_before": before[n] for n in NAMES}, **{f"{n}_after": after[n] for n in NAMES}}
    return out


__all__ = ["NAMES", "asset_distances", "behaviour_of", "falls", "smallest_fall"]
