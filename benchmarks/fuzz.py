"""Fuzz every command at scale: ``python -m benchmarks.fuzz [--cases 5000] [--workers 2] [--seed 0]``.

Generated inputs (tests/fuzzcases.py: URLs, flags, scenario and sweep TOML, corrupted snapshots,
books, account lists, output paths) run through ``analyzer.cli.main`` in worker processes, each
case in a fresh folder. Printed as JSON: cases by kind and outcome, tracebacks (status 1) with
their last line, hangs (a case over ``--timeout`` seconds: the worker is killed and replaced),
refusals that wrote output, the slowest case and the workers' peak RSS. Acceptance (issue 26):
≥ 5,000 cases, 0 tracebacks, 0 hangs over 60 s, peak memory < 2 GB, nothing written on refusal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

MEMORY_LIMIT_BYTES = 4 * 2 ** 30   # a runaway case fails with MemoryError instead of taking the machine


def _prepare(root: Path) -> Path:
    from benchmarks.synthetic import synthetic_snapshot

    return synthetic_snapshot(n_positions=300, n_markets=2, n_assets=5, seed=3).write(root / "snapshot")


def _worker(conn, snapshot: str, node_url: str, seed: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from analyzer.cli import main
    from tests.fuzzcases import check, make_case

    while True:
        index = conn.recv()
        if index is None:
            return
        folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
        rng = random.Random(seed * 1_000_003 + index)
        started = time.monotonic()
        try:
            case = make_case(rng, folder, Path(snapshot), node_url)
            before = set(folder.rglob("*"))
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                status = main(case.args)
            problem = check(case, status, stderr.getvalue(), folder, before)
            conn.send((index, case.kind, status, problem, time.monotonic() - started, case.args))
        except BaseException as exc:  # the generator or the check itself failed: report, keep going
            conn.send((index, "harness", 1, f"{type(exc).__name__}: {exc}", time.monotonic() - started, []))
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def run(cases: int, workers: int, seed: int, timeout_s: float, max_seconds: float | None = None) -> dict:
    from tests.rpcserver import FakeNode

    root = Path(tempfile.mkdtemp(prefix="fuzz-root-"))
    snapshot = _prepare(root)
    node = FakeNode({"eth_chainId": "0x7a69", "eth_blockNumber": "0x10", "web3_clientVersion": "Geth/v1.13",
                     "eth_getBlockByNumber": {"number": "0x10", "timestamp": "0x5f5e100", "stateRoot": "0x" + "0" * 64}})
    context = mp.get_context("spawn")
    outcomes: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    tracebacks, hangs, wrote, slowest = [], [], [], (0.0, [])
    seconds_by_kind: dict[str, list[float]] = {}
    next_index, done = 0, 0
    pool: list = []

    def start():
        parent, child = context.Pipe()
        proc = context.Process(target=_worker, args=(child, str(snapshot), node.url, seed), daemon=True)
        proc.start()
        return {"proc": proc, "conn": parent, "index": None, "since": 0.0}

    started = time.monotonic()
    with node:
        pool = [start() for _ in range(workers)]
        while done < cases:
            if max_seconds is not None and time.monotonic() - started > max_seconds and next_index > done:
                cases = next_index   # out of time: finish the cases in flight, start no more
            for i, slot in enumerate(pool):
                if slot["index"] is None and next_index < cases:
                    slot["conn"].send(next_index)
                    slot["index"], slot["since"] = next_index, time.monotonic()
                    next_index += 1
                if slot["index"] is None:
                    continue
                if slot["conn"].poll(0.01):
                    index, kind, status, problem, seconds, args = slot["conn"].recv()
                    slot["index"] = None
                    done += 1
                    outcomes["ok" if problem is None else ("traceback" if status not in (0, 2) else "wrote")] += 1
                    by_kind.setdefault(kind, Counter())[{0: "accepted", 2: "refused"}.get(status, "other")] += 1
                    if problem and status not in (0, 2):
                        tracebacks.append({"index": index, "kind": kind, "args": args, "problem": problem})
                    elif problem:
                        wrote.append({"index": index, "kind": kind, "args": args, "problem": problem})
                    seconds_by_kind.setdefault(kind, []).append(seconds)
                    if seconds > slowest[0]:
                        slowest = (seconds, args)
                elif time.monotonic() - slot["since"] > timeout_s:
                    hangs.append({"index": slot["index"]})
                    slot["proc"].kill()
                    slot["proc"].join()
                    done += 1
                    pool[i] = start()
        for slot in pool:
            slot["conn"].send(None)
            slot["proc"].join(timeout=30)
    shutil.rmtree(root, ignore_errors=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "cases": done, "seed": seed, "workers": workers, "seconds": round(time.monotonic() - started, 1),
        "outcomes": dict(outcomes), "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "tracebacks": len(tracebacks), "hangs_over_timeout": len(hangs), "timeout_s": timeout_s,
        "tracebacks_by_problem": dict(Counter(f"{t['kind']}: {t['problem']}" for t in tracebacks).most_common()),
        "refusals_that_wrote_output": len(wrote), "peak_worker_rss_mb": round(peak_kb / 1024, 1),
        "mean_seconds_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(seconds_by_kind.items())},
        "slowest_case_s": round(slowest[0], 2), "slowest_case_args": slowest[1],
        "examples": {"tracebacks": tracebacks[:10], "hangs": hangs[:10], "wrote": wrote[:10]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=None, help="stop starting cases after this long")
    args = parser.parse_args(argv)
    result = run(args.cases, args.workers, args.seed, args.timeout, args.max_seconds)
    print(json.dumps(result, indent=2, default=str))
    return 0 if not (result["tracebacks"] or result["hangs_over_timeout"] or result["refusals_that_wrote_output"]) else 1


if __name__ == "__main__":
    sys.exit(main())
