"""``contagion recommend``: search, describe each recommendation, write recommendations.json and
the report section (recommend.html with the trade-off figure).

Per recommendation (:func:`describe`): the new value; the bad debt it avoids in each scenario (all
recommendations against all but this one); the accounts and debt USD it alone makes liquidatable
at today's prices (each protocol's own rule: ``liquidatable_now_*``); what the settle phase then
liquidates with it alone (``settle_*``: the cascade at today's prices that those liquidations and
their sales start; today's parameters may already settle some: ``settle_before``); and the
distances to cascade of its asset (:mod:`analyzer.recommend.distance`): the fall that breaks the
budget (what the recommendations move beyond the scenarios' falls) and the fall creating the first
bad debt, with today's parameters and with all recommendations, settled then shocked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.recommend.distance import NAMES, asset_distances
from analyzer.recommend.evaluate import Evaluator, liquidatable_now
from analyzer.recommend.search import Key, Search, greedy, parameters_of, prune
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange

SCHEMA = "defi-contagion/recommendations"
MAX_SCENARIOS = 100   # every search step evaluates each scenario: the run grows with their number


@dataclass
class Recommendation:
    protocol: str
    market: str
    asset: str
    symbol: str
    parameter: str
    old_value: float
    new_value: float
    steps: int
    step: float
    bad_debt_avoided_usd: dict[str, float]
    liquidatable_now_accounts: int
    liquidatable_now_usd: float
    settle_accounts: int
    settle_liquidated_usd: float
    # the distances to cascade of its asset (:mod:`analyzer.recommend.distance`; relative moves, None:
    # not within -95%): the fall that breaks the budget and the fall creating the first bad debt,
    # with today's parameters and with every recommendation; the furthest any scenario falls the asset
    worst_scenario_fall: float | None
    distance_to_budget_before: float | None
    distance_to_budget_after: float | None
    distance_to_first_bad_debt_before: float | None
    distance_to_first_bad_debt_after: float | None
    bad_debt_without_usd: dict[str, float]   # per scenario: every recommendation but this one
    bad_debt_with_usd: dict[str, float]      # per scenario: every recommendation


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def describe(snapshot: Snapshot, search: Search, evaluator: Evaluator, scenarios: Sequence[ShockScenario],
             budget_usd: float, with_distance: bool = True) -> list[Recommendation]:
    symbols = snapshot.symbol_of()
    everything = evaluator.one(search.changes())
    evaluator.evaluate([search.changes({k: n for k, n in search.steps.items() if k != key}) for key in search.steps]
                       + [search.changes({key: n}) for key, n in search.steps.items()])     # one batch (Dask)
    assets = sorted({k[2] for k in search.steps})
    distances = asset_distances(snapshot, assets, search.changes(), scenarios, budget_usd, evaluator.client,
                                evaluator.snapshot_key) if with_distance else {}
    out = []
    for key in sorted(search.steps):
        protocol, market, asset, parameter = key
        others = evaluator.one(search.changes({k: n for k, n in search.steps.items() if k != key}))
        alone = liquidatable_now(snapshot, search.changes({key: search.steps[key]}))
        settled_alone = evaluator.one(search.changes({key: search.steps[key]}))
        p = search.parameters[key]
        out.append(Recommendation(protocol, market, asset, str(symbols.get(asset, asset)), parameter, p.value,
                                  search.value(key, search.steps[key]), search.steps[key], p.step,
                                  {s: others.bad_debt_usd[s] - everything.bad_debt_usd[s] for s in everything.bad_debt_usd},
                                  len(alone["accounts"]), alone["debt_usd"], settled_alone.settle_accounts,
                                  settled_alone.settle_liquidated_usd, **_distances(distances.get(asset)),
                                  bad_debt_without_usd=dict(others.bad_debt_usd),
                                  bad_debt_with_usd=dict(everything.bad_debt_usd)))
    return out


def _distances(found: dict[str, float | None] | None) -> dict[str, float | None]:
    fields = ["worst_scenario_fall", *(f"{n}_{w}" for n in NAMES for w in ("before", "after"))]
    return {f: (found or {}).get(f) for f in fields}


def collateral_rows(snapshot: Snapshot) -> set[tuple[str, str, str]]:
    """(protocol, market, asset) of every collateral position of the snapshot."""
    pos = snapshot.positions
    held = pos.loc[pos["side"] == "collateral", ["protocol", "market", "asset"]].drop_duplicates()
    return {(str(p), str(m), str(a)) for p, m, a in held.itertuples(index=False)}


def margin_schedules(snapshot: Snapshot, scenarios: Sequence[ShockScenario], assets: Sequence[str],
                     target: float | None, evaluator: Evaluator | None = None) -> list[dict[str, Any]]:
    """The dynamic-margin schedule of each of ``assets`` (:func:`analyzer.recommend.margin.schedule`):
    for a target fall ``target``, or (None) the largest fall any scenario gives the asset, with that
    scenario's market behaviour."""
    from analyzer.recommend.margin import schedule

    out = []
    for name in assets:
        address = snapshot.address_of(name)
        falls = [(-float(move), s) for s in scenarios for key, move in s.price_shocks.items()
                 if snapshot.address_of(key) == address and float(move) < 0]
        if target is None and not falls:
            raise ContagionError(f"--margin {name}: no scenario shocks it down; give --margin-target")
        worst, behaviour = max(falls, key=lambda f: f[0]) if falls else (0.0, scenarios[0])
        venues = evaluator.venues(behaviour) if evaluator is not None else None
        out.append(schedule(snapshot, name, target if target is not None else worst, behaviour, venues=venues))
    return out


def recommend(snapshot: Snapshot, scenarios: Sequence[ShockScenario], budget_usd: float, *,
              markets: Sequence[str] | None = None, client=None, with_distance: bool = True,
              margin_assets: Sequence[str] = (), margin_target: float | None = None, caps: bool = False,
              say: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """The recommendations document (see the module docstring and :mod:`analyzer.recommend.search`);
    ``margin_assets``: also their dynamic-margin schedules (:func:`margin_schedules`); ``caps``: every
    scenario on the book grown to the caps, and the caps searched (:mod:`analyzer.recommend.caps`)."""
    if not scenarios:
        raise ContagionError("recommend: no stress scenarios")
    if not (math.isfinite(budget_usd) and budget_usd >= 0):
        raise ContagionError(f"recommend: --budget must be a finite USD amount >= 0, got {budget_usd}")
    if caps:
        from analyzer.recommend.caps import at_caps

        snapshot = at_caps(snapshot)
    parameters = parameters_of(snapshot, markets)
    if not parameters:
        raise ContagionError("recommend: no protocol of the snapshot has a tunable parameter")
    evaluator = Evaluator(snapshot, scenarios, client)
    search = Search(parameters, {}, snapshot.symbol_of(), collateral_rows(snapshot))
    today = evaluator.one([])
    say(f"recommend: {len(parameters)} parameters, {len(scenarios)} scenarios, worst bad debt "
        f"${max(today.bad_debt_usd.values()):,.0f} against a budget of ${budget_usd:,.0f}")
    feasible = greedy(search, evaluator, budget_usd, say)
    if feasible:
        say(f"recommend: pruning {len(search.steps)} changed parameters to the steps each scenario needs")
        prune(search, evaluator, budget_usd)
    else:
        reached = evaluator.one(search.changes())
        worst = max(reached.bad_debt_usd, key=lambda n: reached.bad_debt_usd[n])
        say(f"recommend: feasible=false: the budget ${budget_usd:,.0f} is out of reach; the search's lowest "
            f"worst bad debt is ${reached.bad_debt_usd[worst]:,.0f} ({worst})")
    from analyzer.recommend.caps import cap_table

    recs = describe(snapshot, search, evaluator, scenarios, budget_usd, with_distance) if feasible else []
    after = evaluator.one(search.changes())
    total_now = liquidatable_now(snapshot, search.changes())
    if margin_assets:
        say(f"recommend: dynamic margin of {', '.join(margin_assets)}")
    margin = margin_schedules(snapshot, scenarios, margin_assets, margin_target, evaluator) if margin_assets else []
    return _clean({
        "schema": SCHEMA, "version": 1, "budget_usd": budget_usd, "feasible": feasible,
        "scenarios": [s.to_dict() for s in scenarios],
        "bad_debt_before_usd": today.bad_debt_usd, "bad_debt_after_usd": after.bad_debt_usd,
        "changes": [vars(c) for c in search.changes()] if feasible else [],
        "recommendations": [vars(r) for r in recs],
        "liquidatable_now": {"accounts": total_now["accounts"], "debt_usd": total_now["debt_usd"]} if feasible
        else {"accounts": [], "debt_usd": 0.0},
        "settle_before": {"accounts": today.settle_accounts, "liquidated_usd": today.settle_liquidated_usd},
        "settle_after": {"accounts": after.settle_accounts, "liquidated_usd": after.settle_liquidated_usd},
        "engine_runs": evaluator.runs,
        "dynamic_margin": margin,
        "stress_at_caps": caps, "caps": cap_table([vars(r) for r in recs]) if caps else [],
        "snapshot": {k: snapshot.meta.get(k) for k in ("chain_id", "block_number", "path")},
    })


def load_scenarios(spec: str, snapshot: Snapshot) -> list[ShockScenario]:
    """``demo``: the demo's stress scenarios (:func:`analyzer.demo.default_scenarios`); otherwise a
    TOML file of ``[[scenario]]`` tables (each a scenario as ``contagion simulate --scenario`` reads
    it, with a ``name``), or of one scenario."""
    from analyzer.inputs import read_toml
    from analyzer.scenarios import load_scenario, scenario_from_dict

    if spec == "demo":
        from analyzer.demo import default_scenarios

        return default_scenarios(snapshot)
    path = Path(spec)
    if not path.is_file():
        raise ContagionError(f'--scenarios "{spec}": not a file (give a TOML of [[scenario]] tables, or "demo")')
    raw = read_toml(path, "scenarios file")
    if "scenario" not in raw:
        return [load_scenario(path)]
    tables = raw["scenario"]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ContagionError(f"{path.name}: [[scenario]] must be an array of tables")
    if len(tables) > MAX_SCENARIOS:
        raise ContagionError(f"{path.name}: {len(tables):,} scenarios; the limit is {MAX_SCENARIOS} "
                             "(each search step evaluates every one)")
    return [scenario_from_dict({"name": f"scenario-{i + 1}", **t}, f"{path.name}: scenario {i + 1}")
            for i, t in enumerate(tables)]


def recommend_to_dir(snapshot_dir: str | Path, scenarios_spec: str, budget_usd: float, out_dir: str | Path, *,
                     markets: Sequence[str] | None = None, workers: int | None = None, scheduler: str | None = None,
                     prove_on: tuple[str, str | Path] | None = None,
                     margin_assets: Sequence[str] = (), margin_target: float | None = None, caps: bool = False,
                     previous: str | Path | None = None, say: Callable[[str], None] = lambda text: None) -> Path:
    """``contagion recommend``: write recommendations.json, recommend.html and
    figures/recommend_tradeoff.png into ``out_dir`` (all at once); returns recommendations.json.
    ``prove_on``: (RPC URL, address book path): also prove the changes on a fork of that chain
    (:func:`analyzer.recommend.prove.prove`) into proof.json and the section; ``margin_assets`` /
    ``margin_target``: dynamic-margin schedules (:func:`margin_schedules`); ``caps``: the cap analysis;
    ``previous``: no search, the document a previous one wrote on this snapshot (its scenarios, budget
    and changes: :func:`analyzer.recommend.prove.read_recommendations`), proven."""
    from analyzer.atomic import (
        atomic_write_bytes,
        atomic_write_text,
        check_output_dir,
        final_path,
        staged_folder,
    )
    from analyzer.recommend.section import section_html, tradeoff_figure
    from analyzer.sweep.run import _client

    check_output_dir(out_dir)
    snapshot = Snapshot.read(snapshot_dir)
    snapshot.meta["path"] = str(Path(snapshot_dir).resolve())
    if previous is not None:
        from analyzer.recommend.prove import read_recommendations

        doc, scenarios = read_recommendations(previous, snapshot)
        caps = bool(doc.get("stress_at_caps"))
    else:
        scenarios = load_scenarios(scenarios_spec, snapshot)
    address_book = None
    if prove_on is not None:
        from analyzer.books import load_book
        from analyzer.rpcurl import check_rpc_url

        check_rpc_url(prove_on[0], "--rpc")
        address_book = load_book(Path(prove_on[1])) or {}
        if not address_book.get("protocols"):
            raise ContagionError(f"--book {prove_on[1]}: no protocols in the address book")
    if previous is None:
        with _client(workers, scheduler) as client:
            doc = recommend(snapshot, scenarios, budget_usd, markets=markets, client=client, say=say,
                            margin_assets=margin_assets, margin_target=margin_target, caps=caps)
    proof = None
    if prove_on is not None and doc["feasible"]:
        from analyzer.recommend.prove import prove
        from protocols import plugins

        # with --caps the search's bad debt is the book's grown to the caps; the fork holds today's
        # book, so its replays are set beside the engine's on today's book with the same changes
        predicted = None
        if caps:
            from analyzer.recommend.evaluate import outcome

            predicted = outcome(snapshot, scenarios, [ParameterChange(**c) for c in doc["changes"]]).bad_debt_usd
        proof = prove(prove_on[0], address_book or {}, doc, scenarios, list(plugins().values()),
                      predicted_usd=predicted, progress=say)
        proof["book"] = "today's, as on the chain (the search's bad debt at the caps is the engine's alone)" if caps \
            else "today's, as on the chain"
        doc["proof"] = {"liquidatable_now_ok": proof["liquidatable_now_ok"],
                        "parameters_on_fork_ok": proof["parameters_on_fork_ok"],
                        "recommendations_alone_ok": all(r["ok"] for r in proof["recommendations_alone"]),
                        "within_budget": {r["scenario"]: r.get("within_budget") for r in proof["scenarios"]},
                        "within_budget_to_model_error": {r["scenario"]: r.get("within_budget_to_model_error")
                                                         for r in proof["scenarios"]}}
    figure = tradeoff_figure(doc)
    with staged_folder(out_dir) as stage:
        written = atomic_write_text(stage / "recommendations.json",
                                    json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
        if figure is not None:
            (stage / "figures").mkdir(exist_ok=True)
            atomic_write_bytes(stage / "figures" / "recommend_tradeoff.png", figure)
        if proof is not None:
            atomic_write_text(stage / "proof.json", json.dumps(_clean(proof), indent=2, sort_keys=True,
                                                               allow_nan=False, default=str) + "\n")
        atomic_write_text(stage / "recommend.html", section_html(doc, figure, proof))
    return final_path(written, stage, Path(out_dir))


__all__ = ["Key", "Recommendation", "load_scenarios", "recommend", "recommend_to_dir"]
