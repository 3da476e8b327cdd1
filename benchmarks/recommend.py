"""Benchmark of ``contagion recommend``: seconds per evaluation on a snapshot, and (``--full``) the
whole search at one or more budgets.

An evaluation is one set of parameter changes over every stress scenario, settled then shocked
(:func:`analyzer.recommend.evaluate.outcome`, in-process). Measured: today's parameters
(``today_s``, per scenario in ``scenario_s``), and the first growth level of the search (each
candidate parameter of :func:`analyzer.recommend.search.candidates` moved one step on the scenarios
over the budget, ``first_level_s``). ``--full`` also runs :func:`analyzer.recommend.run.recommend`
(no distances, no margin; ``--workers N``: on a local Dask cluster) per budget and reports its wall
time, engine runs, whether it is feasible, the steps taken and the bad debt per scenario before and
after. With no ``--snapshot``, the default devnet is started from the cache
(``~/.cache/defi-contagion/devnet``) and scanned first. Prints JSON.

    .venv/bin/python benchmarks/recommend.py [--snapshot DIR] [--budget 2000000,500000] [--markets WETH] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.model import Snapshot  # noqa: E402
from analyzer.recommend.evaluate import outcome  # noqa: E402
from analyzer.recommend.run import collateral_rows, load_scenarios, recommend  # noqa: E402
from analyzer.recommend.search import Search, candidates, parameters_of  # noqa: E402
from analyzer.sweep.run import _client  # noqa: E402


def devnet_snapshot(into: Path) -> Path:
    """A scan of the default (mainnet-like) devnet, written to ``into``."""
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from analyzer.scan import scan
    from protocols import parse_protocols, plugins

    running = start_devnet(scenario_mod.load("mainnet-like"), parse_protocols(None))
    try:
        scan(running.url, list(plugins().values()), book=running.book, cache_dir=None).write(into)
    finally:
        running.anvil.stop()
    return into


def measure(snapshot: Snapshot, spec: str, budgets: list[float], markets: list[str] | None, full: bool,
            workers: int | None) -> dict:
    scenarios = load_scenarios(spec, snapshot)
    parameters = parameters_of(snapshot, markets)
    venues: dict[str, dict] = {}
    outcome(snapshot, scenarios[:1], [], venues)          # venues built once, as the Evaluator does
    scenario_s = {}
    for scenario in scenarios:
        started = time.perf_counter()
        today = outcome(snapshot, [scenario], [], venues)
        scenario_s[scenario.name] = round(time.perf_counter() - started, 2)
    today = outcome(snapshot, scenarios, [], venues)
    over = [s for s in scenarios if today.bad_debt_usd[s.name] > min(budgets)]
    search = Search(parameters, {}, collateral=collateral_rows(snapshot))
    keys = candidates(search, today, [s.name for s in over])
    started = time.perf_counter()
    for key in keys:
        outcome(snapshot, over, search.changes({key: 1}), venues)
    out = {
        "scenarios": len(scenarios), "parameters": len(parameters), "candidates": len(keys),
        "bad_debt_before_usd": today.bad_debt_usd, "today_s": round(sum(scenario_s.values()), 2),
        "scenario_s": scenario_s, "first_level_s": round(time.perf_counter() - started, 2), "runs": [],
    }
    for budget in budgets if full else ():
        with _client(workers, None) as client:
            started = time.perf_counter()
            doc = recommend(snapshot, scenarios, budget, markets=markets, client=client, with_distance=False)
            total = time.perf_counter() - started
        out["runs"].append({
            "budget_usd": budget, "full_s": round(total, 1), "engine_runs": doc["engine_runs"],
            "feasible": doc["feasible"], "steps": sum(r["steps"] for r in doc["recommendations"]),
            "changes": doc["changes"], "bad_debt_after_usd": doc["bad_debt_after_usd"],
            "worst_after_usd": max(doc["bad_debt_after_usd"].values())})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", help="a snapshot directory (default: scan the cached default devnet)")
    parser.add_argument("--scenarios", default="demo")
    parser.add_argument("--budget", default="2000000,500000", help="comma-separated USD budgets")
    parser.add_argument("--markets", default="", help="comma-separated; empty: every market")
    parser.add_argument("--workers", type=int, default=None, help="a local Dask cluster of N workers")
    parser.add_argument("--full", action="store_true", help="also run the whole search per budget")
    args = parser.parse_args()
    markets = [m for m in args.markets.split(",") if m] or None
    budgets = [float(b) for b in args.budget.split(",") if b]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.snapshot) if args.snapshot else devnet_snapshot(Path(tmp) / "snapshot")
        snapshot = Snapshot.read(path)
        result = measure(snapshot, args.scenarios, budgets, markets, args.full, args.workers)
    print(json.dumps({"benchmark": "recommend", "snapshot": args.snapshot or "default devnet",
                      "markets": markets, "cpus": os.cpu_count(), "python": platform.python_version(),
                      **result}, indent=2))


if __name__ == "__main__":
    main()
