"""Aave V3 scan throughput, v3.6 against v3.0: accounts read per second on the Aave-only devnet of
each release (the mainnet-like scenario, ``[protocols.aave-v3] version`` set), the seeded accounts
padded with empty addresses, through the lens and through Multicall3. Prints one JSON object.

    .venv/bin/python -m benchmarks.aave_versions [--accounts 5000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from eth_utils import keccak, to_checksum_address

from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import start_devnet
from analyzer.scan import ScanStats, scan
from protocols import parse_protocols


def scenario_of(version: str, folder: Path):
    text = scenario_mod.resolve("mainnet-like").read_text()
    path = folder / "mainnet-like.toml"
    path.write_text(text.replace('\nversion = "3.6"\n', f'\nversion = "{version}"\n'))
    return scenario_mod.load(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=5_000)
    args = parser.parse_args()
    aave = parse_protocols("aave-v3")
    out: dict = {"accounts": args.accounts, "versions": {}}
    for version in ("3.6", "3.0"):
        with tempfile.TemporaryDirectory() as folder, start_devnet(scenario_of(version, Path(folder)), aave) as devnet:
            block = devnet.w3.eth.block_number
            real = sorted(set(scan(devnet.url, aave, book=devnet.book, block=block, cache_dir=None).accounts["account"]))
            padding = [to_checksum_address(keccak(text=f"bench-{i}")[-20:]) for i in range(args.accounts - len(real))]
            accounts = (real + padding)[:args.accounts]
            row = {"real_accounts": len(real)}
            for path, use_lens in (("lens", True), ("multicall", False)):
                stats = ScanStats()
                started = time.perf_counter()
                scan(devnet.url, aave, book=devnet.book, block=block, accounts=accounts, cache_dir=None,
                     use_lens=use_lens, stats=stats)
                seconds = time.perf_counter() - started
                row[path] = {"seconds": round(seconds, 2), "accounts_per_second": round(len(accounts) / seconds, 1),
                             "eth_calls": stats.requests.get("eth_call", 0)}
            out["versions"][version] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
