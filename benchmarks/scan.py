"""Scan throughput on the devnet: accounts read per second at 1,000 and 10,000 accounts.

The devnet's own accounts (a few hundred) are padded with addresses that hold nothing, which cost
the readers the same calls; every lending plugin is read, with no cache. Prints one JSON object.

    .venv/bin/python -m benchmarks.scan [--sizes 1000,10000] [--scenario mainnet-like]

``--scenario`` takes a scenario name or path (e.g. a copy of mainnet-like with ``[protocols.aave-v3]
version = "3.0"`` to compare Aave releases).
"""

from __future__ import annotations

import argparse
import json
import time

from eth_utils import keccak, to_checksum_address

from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import start_devnet
from analyzer.scan import ScanStats, scan
from protocols import parse_protocols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--protocols", default="aave-v3,compound-v2,comet")
    parser.add_argument("--scenario", default="mainnet-like")
    args = parser.parse_args()
    plugins = parse_protocols(args.protocols)
    out = {"protocols": [p.name for p in plugins], "scenario": args.scenario, "runs": []}
    with start_devnet(scenario_mod.load(args.scenario), plugins) as devnet:
        seeded = scan(devnet.url, plugins, book=devnet.book, cache_dir=None)
        real = sorted(set(seeded.positions["account"]))
        for size in (int(s) for s in args.sizes.split(",")):
            padding = [to_checksum_address(keccak(text=f"bench-{i}")[-20:]) for i in range(max(size - len(real), 0))]
            accounts = (real + padding)[:size]
            stats = ScanStats()
            started = time.perf_counter()
            snapshot = scan(devnet.url, plugins, book=devnet.book, accounts=accounts, cache_dir=None, stats=stats)
            seconds = time.perf_counter() - started
            out["runs"].append({"accounts": size, "seconds": round(seconds, 2),
                                "accounts_per_second": round(size / seconds, 1),
                                "positions": len(snapshot.positions), "eth_calls": stats.requests.get("eth_call", 0)})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
