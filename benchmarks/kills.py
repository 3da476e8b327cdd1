"""Kill every writing command at random points: ``python -m benchmarks.kills [--kills 20] [--seed 0]``.

For each of scan, simulate, sweep, graph and report (tests/test_fuzz_kills.py has the procedure):
``--kills`` SIGKILLs at random points of a run over a previous complete run, on the cached
devnet. Prints JSON: per command how many kills left the previous run and how many the new one;
any kill that leaves a mixed folder stops the runner with the files that differ. Acceptance
(issue 26): 100 kills (20 per command), every one "previous" or "new".
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per command")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from analyzer.scan import scan
    from protocols import parse_protocols, plugins
    from tests.test_fuzz_kills import COMMANDS, commands, kill_trials

    root = Path(tempfile.mkdtemp(prefix="kills-"))
    started = time.monotonic()
    devnet = start_devnet(scenario_mod.load("mainnet-like"), parse_protocols(None))
    result: dict = {"kills_per_command": args.kills, "seed": args.seed, "commands": {}}
    try:
        (root / "book.json").write_text(json.dumps(devnet.book))
        snapshot = scan(devnet.url, [plugins()["aave-v3"]], book=devnet.book, cache_dir=None)
        (root / "accounts.txt").write_text("\n".join(sorted(set(snapshot.positions["account"]))[:2]) + "\n")
        rng = random.Random(args.seed)
        for name in COMMANDS:
            before, killed, folder = commands(root, devnet.url)[name]
            result["commands"][name] = kill_trials(root, name, before, killed, folder, args.kills, rng)
    except AssertionError as exc:
        result["mixed"] = str(exc)
    finally:
        devnet.anvil.stop()
        shutil.rmtree(root, ignore_errors=True)
    result["total_kills"] = sum(sum(c.values()) for c in result["commands"].values())
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
    return 1 if "mixed" in result else 0


if __name__ == "__main__":
    sys.exit(main())
