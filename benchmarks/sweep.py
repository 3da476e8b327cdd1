"""Benchmark of stress sweeps: scenarios per second on a synthetic 100k-position snapshot, 1 vs 2 workers.

The sweep is a 10k-scenario mix (default ``--scenarios 10000``): a grid of single-asset shocks
(−5% … −50% in 5% steps over up to 49 assets, ~5% of the scenarios) and seeded Monte Carlo joint
moves of all 49 risky assets (daily log-return vol 4%, pairwise correlation 0.5) for the rest. For
a smaller ``--scenarios`` both parts shrink in proportion, so the rate measured is that of the same
mix. Each worker count runs the whole sweep from an empty cache on a local Dask cluster (workers =
single-threaded processes) and the wall time includes starting the cluster, shipping the snapshot
and preparing it on each worker. ``cpus_used`` = worker CPU seconds / wall seconds: below the worker
count, the machine did not give the workers their cores. Prints JSON.

    .venv/bin/python benchmarks/sweep.py [--scenarios 10000] [--positions 100000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from analyzer.sweep import spec_from_dict, sweep  # noqa: E402
from analyzer.sweep.grid import expand  # noqa: E402
from benchmarks.synthetic import synthetic_snapshot  # noqa: E402

N_ASSETS = 50
SHOCKS = "-5%:-50%:5%"      # 10 sizes
DAILY_VOL, CORRELATION = 0.04, 0.5


def _worker_cpu_s() -> float:
    """CPU seconds of finished child processes (the LocalCluster's workers, once it has stopped):
    on a shared machine this separates the engine's cost from the cores it was given."""
    times = os.times()
    return times.children_user + times.children_system


def benchmark_spec(scenarios: int, batch_size: int):
    risky = [f"TKN{i}" for i in range(1, N_ASSETS)]
    grid_assets = risky[:max(1, min(len(risky), math.ceil(len(risky) * scenarios / 10_000)))]
    paths = max(1, scenarios - 1 - 10 * len(grid_assets))
    cov = (np.full((len(risky), len(risky)), CORRELATION) + np.eye(len(risky)) * (1 - CORRELATION)) * DAILY_VOL**2
    return spec_from_dict({"name": "benchmark", "assets": grid_assets, "shocks": SHOCKS, "static": False,
                           "batch_size": batch_size,
                           "montecarlo": {"paths": paths, "seed": 0, "assets": risky, "covariance": cov.tolist()}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=10_000)
    parser.add_argument("--positions", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    start = time.perf_counter()
    snapshot = synthetic_snapshot(args.positions, n_assets=N_ASSETS, seed=0)
    build_s = time.perf_counter() - start
    spec = benchmark_spec(args.scenarios, args.batch_size)
    count = len(expand(spec, snapshot))
    runs = []
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="sweep-bench-") as out:
            start, cpu_before = time.perf_counter(), _worker_cpu_s()
            sweep(snapshot, spec, out, workers=workers, progress=sys.stderr.isatty())
            wall, cpu = time.perf_counter() - start, _worker_cpu_s() - cpu_before
        runs.append({"workers": workers, "wall_s": round(wall, 2), "scenarios_per_s": round(count / wall, 3),
                     "worker_cpu_s": round(cpu, 2), "cpus_used": round(cpu / wall, 2),
                     "scenarios_per_cpu_s": round(count / cpu, 3) if cpu > 0 else None})
    base = runs[0]["scenarios_per_s"]
    for run in runs:
        run["speedup"] = round(run["scenarios_per_s"] / base, 3)
    print(json.dumps({"benchmark": "sweep", "scenarios": count, "positions": len(snapshot.positions),
                      "accounts": len(snapshot.accounts), "assets": N_ASSETS, "batch_size": args.batch_size,
                      "snapshot_build_s": round(build_s, 2), "runs": runs,
                      "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                                  "python": platform.python_version()}}, indent=2))


if __name__ == "__main__":   # LocalCluster spawns worker processes that re-import this file
    main()
