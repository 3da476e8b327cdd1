"""Benchmark of ``contagion recommend``: seconds per evaluation on a snapshot, and (``--full``) the
whole search.

An evaluation is one set of parameter changes over every stress scenario, settled then shocked
(:func:`analyzer.recommend.evaluate.outcome`, in-process). Measured: today's parameters (no change,
``today_s``) and each tunable parameter moved one greedy jump (``candidate_s``: the set of moves one
greedy iteration ranks, on the scenarios it ranks them on, i.e. those with bad debt above half the
budget); ``greedy_step_s`` is their sum, the cost of one search step before any jump doubling.
``--full`` also runs :func:`analyzer.recommend.run.recommend` (no distances, no margin) and reports
its engine runs and wall time. With no ``--snapshot``, the default devnet is started from the cache
(``~/.cache/defi-contagion/devnet``) and scanned first. Prints JSON.

    .venv/bin/python benchmarks/recommend.py [--snapshot DIR] [--budget 500000] [--markets WETH] [--full]
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
from analyzer.recommend.run import load_scenarios, recommend  # noqa: E402
from analyzer.recommend.search import Search, parameters_of  # noqa: E402


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


def measure(snapshot: Snapshot, spec: str, budget: float, markets: list[str] | None, jump: int,
            full: bool) -> dict:
    scenarios = load_scenarios(spec, snapshot)
    parameters = parameters_of(snapshot, markets)
    venues: dict[str, dict] = {}
    outcome(snapshot, scenarios[:1], [], venues)          # venues built once, as the Evaluator does
    started = time.perf_counter()
    today = outcome(snapshot, scenarios, [], venues)
    today_s = time.perf_counter() - started
    ranked = [s for s in scenarios if today.bad_debt_usd[s.name] > 0.5 * budget]
    search = Search(parameters, {})
    candidate_s = {}
    for key in sorted(parameters):
        started = time.perf_counter()
        outcome(snapshot, ranked, search.changes({key: min(jump, search.limit(key))}), venues)
        candidate_s["/".join((key[0], key[3]))] = round(time.perf_counter() - started, 2)
    out = {
        "scenarios": len(scenarios), "ranked_scenarios": len(ranked), "parameters": len(parameters),
        "worst_bad_debt_usd": max(today.bad_debt_usd.values()), "budget_usd": budget,
        "today_s": round(today_s, 2), "seconds_per_scenario_run": round(today_s / len(scenarios), 2),
        "candidate_s": candidate_s, "greedy_step_s": round(sum(candidate_s.values()), 2),
    }
    if full:
        started = time.perf_counter()
        doc = recommend(snapshot, scenarios, budget, markets=markets, jump=jump, with_distance=False)
        total = time.perf_counter() - started
        out |= {"full_s": round(total, 1), "engine_runs": doc["engine_runs"], "feasible": doc["feasible"],
                "seconds_per_engine_run": round(total / max(doc["engine_runs"], 1), 2),
                "changes": doc["changes"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshot", help="a snapshot directory (default: scan the cached default devnet)")
    parser.add_argument("--scenarios", default="demo")
    parser.add_argument("--budget", type=float, default=500_000.0)
    parser.add_argument("--markets", default="WETH", help="comma-separated; empty: every market")
    parser.add_argument("--jump", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also run the whole search")
    args = parser.parse_args()
    markets = [m for m in args.markets.split(",") if m] or None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.snapshot) if args.snapshot else devnet_snapshot(Path(tmp) / "snapshot")
        snapshot = Snapshot.read(path)
        result = measure(snapshot, args.scenarios, args.budget, markets, args.jump, args.full)
    print(json.dumps({"benchmark": "recommend", "snapshot": args.snapshot or "default devnet",
                      "markets": markets, "cpus": os.cpu_count(), "python": platform.python_version(),
                      **result}, indent=2))


if __name__ == "__main__":
    main()
