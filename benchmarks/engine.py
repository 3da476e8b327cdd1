"""Benchmark of the cascade engine on seeded synthetic snapshots (prints JSON).

    .venv/bin/python benchmarks/engine.py [--sizes 10000,100000,1000000] [--seed 0] [--markets 4] [--assets 50]

Each size runs in its own process so that its peak memory (ru_maxrss) is its own, on one core: the
BLAS thread pools are held to one thread (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS), as
a sweep worker runs. Reported per size:
seconds to generate and to prepare the snapshot (once per snapshot), seconds per scenario (mean of
the scenarios below, each to its fixed point or round limit; ``cpu_seconds``: the process's CPU time,
which a machine shared with other work inflates less than the elapsed time), rounds, and peak RSS in MB. At the
smallest size it also times one round of the plain reference implementation against the fast
round from the same state (``reference_ratio``). Snapshots follow the real Aave V3 reader's row
format and every liquidation goes through protocols/aave_v3/rules.py.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ONE_CORE = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SCENARIOS = ({"TKN1": -0.30, "TKN2": -0.30, "TKN3": -0.30}, {"TKN1": -0.15, "TKN4": -0.25, "TKN5": -0.40})


def run_one(n_positions: int, seed: int, markets: int, assets: int, reference: bool) -> dict:
    from analyzer.engine import simulate
    from analyzer.engine.cascade import run_round
    from analyzer.engine.prepare import prepare, start_state
    from analyzer.engine.reference import reference_round
    from analyzer.scenarios import ShockScenario
    from benchmarks.synthetic import synthetic_snapshot
    from protocols.aave_v3.rules import AaveV3Rules

    t0 = time.perf_counter()
    snapshot = synthetic_snapshot(n_positions, n_markets=markets, n_assets=assets, seed=seed, receipt=True,
                                  hedger_gamma=-5.0)
    t1 = time.perf_counter()
    prep = prepare(snapshot, rules={"aave-v3": AaveV3Rules()})
    t2 = time.perf_counter()
    runs = []
    for shocks in SCENARIOS:
        start, start_cpu = time.perf_counter(), time.process_time()
        result = simulate(prep, ShockScenario(price_shocks=shocks, max_rounds=50, seed=seed))
        runs.append({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - start_cpu,
                     "rounds": len(result.rounds),
                     "stop_reason": result.stop_reason, "liquidated_usd": result.total_liquidated_usd,
                     "liquidations": int(sum(result.liquidations.values()))})
    out = {"positions": int(len(snapshot.positions)), "accounts": int(len(snapshot.accounts)), "markets": markets,
           "assets": assets, "seed": seed, "generate_seconds": t1 - t0, "prepare_seconds": t2 - t1,
           "seconds_per_scenario": sum(r["seconds"] for r in runs) / len(runs),
           "cpu_seconds_per_scenario": sum(r["cpu_seconds"] for r in runs) / len(runs), "scenarios": runs}
    if reference:
        scenario = ShockScenario(price_shocks=SCENARIOS[0])
        state = start_state(prep, scenario)
        slow_state = copy.deepcopy(state)
        start = time.perf_counter()
        run_round(prep, state, scenario)
        fast = time.perf_counter() - start
        start = time.perf_counter()
        reference_round(prep, slow_state, scenario)
        slow = time.perf_counter() - start
        out.update({"round_seconds_fast": fast, "round_seconds_reference": slow, "reference_ratio": slow / fast})
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markets", type=int, default=4)
    parser.add_argument("--assets", type=int, default=50)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.seed, args.markets, args.assets, args.reference)))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = []
    for i, size in enumerate(sizes):
        command = [sys.executable, __file__, "--one", str(size), "--seed", str(args.seed), "--markets",
                   str(args.markets), "--assets", str(args.assets)] + (["--reference"] if i == 0 else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, **ONE_CORE})
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"benchmark": "engine", "seed": args.seed, "results": results}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
