"""Scans under injected faults at full scale: ``python -m benchmarks.faults [--rate 0.25] [--seeds 5]``.

tests/rpcserver.FaultProxy sits between the scan and the cached devnet and injects each of the ten
fault kinds (then all mixed) on ``--rate`` of the requests, with stalls of ``--stall`` seconds
against a client timeout of half that (so a stall is a timeout, retried). Every scan reads the
head itself (no --block) and must equal a clean scan at the devnet's head. Prints JSON: per kind
and seed, faults injected, requests, seconds, and whether the snapshot was identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--stall", type=float, default=2.0)
    args = parser.parse_args(argv)

    import pandas as pd

    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from analyzer.model import TABLES
    from analyzer.rpc import RpcClient
    from analyzer.scan import scan
    from protocols import parse_protocols
    from tests.rpcserver import FAULT_KINDS, FaultProxy

    def same(a, b) -> bool:
        for name in TABLES:
            left = a.table(name).sort_values(list(a.table(name).columns)).reset_index(drop=True)
            right = b.table(name).sort_values(list(b.table(name).columns)).reset_index(drop=True)
            if not left.equals(right) and not _frames_equal(left, right):
                return False
        return True

    def _frames_equal(left, right) -> bool:
        try:
            pd.testing.assert_frame_equal(left, right)
            return True
        except AssertionError:
            return False

    plugins = parse_protocols(None)
    devnet = start_devnet(scenario_mod.load("mainnet-like"), plugins)
    runs, failures = [], 0
    try:
        lenders = [p for p in plugins if p.name in devnet.book.get("protocols", {})]
        head = devnet.w3.eth.block_number
        clean = scan(devnet.url, lenders, book=devnet.book, cache_dir=None)
        for faults in [*[(kind,) for kind in FAULT_KINDS], FAULT_KINDS]:
            for seed in range(args.seeds):
                started = time.monotonic()
                with FaultProxy(devnet.url, faults=faults, rate=args.rate, seed=seed, delay_s=args.stall) as proxy:
                    client = RpcClient(proxy.url, timeout=args.stall / 2, backoff_s=0.01, max_backoff_s=0.5,
                                       max_retries=16, seed=seed)
                    try:
                        got = scan(proxy.url, lenders, book=devnet.book, cache_dir=None, client=client)
                        ok = got.meta["block_number"] == head and same(got, clean)
                        error = None
                    except Exception as exc:  # recorded, the runner goes on
                        ok, error = False, f"{type(exc).__name__}: {exc}"
                failures += not ok
                runs.append({"faults": "all" if len(faults) > 1 else faults[0], "seed": seed, "identical": ok,
                             "error": error, "injected": sum(proxy.injected.values()),
                             "requests": sum(proxy.forwarded.values()) + sum(proxy.injected.values()),
                             "seconds": round(time.monotonic() - started, 1)})
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)   # progress, one line a scan
    finally:
        devnet.anvil.stop()
    print(json.dumps({"rate": args.rate, "seeds": args.seeds, "head_block": head, "scans": len(runs),
                      "identical": len(runs) - failures, "runs": runs}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
