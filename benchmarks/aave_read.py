"""Accounts read per second on a local devnet: the Aave V3 reader (Multicall3) against one
``Pool.getUserAccountData`` eth_call per account. Prints one JSON object.

    .venv/bin/python -m benchmarks.aave_read [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

from analyzer.books import market_of
from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import start_devnet
from analyzer.multicall import Call, multicall, single_call
from protocols import get
from protocols.aave_v3 import abi
from protocols.aave_v3.reader import AaveV3Reader
from protocols.base import ReadContext


def best_rate(count: int, run, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec = scenario_mod.load("mainnet-like")
    with start_devnet(spec, [get("aave-v3")]) as devnet:
        w3, deployment = devnet.w3, market_of(devnet.book, "aave-v3")
        block = w3.eth.block_number
        def get_logs(address, topics, from_block, to_block):
            return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                          "fromBlock": from_block, "toBlock": to_block})]

        ctx = ReadContext(w3, w3.eth.chain_id, block, partial(multicall, w3, block=block), get_logs)
        reader = AaveV3Reader(ctx, deployment)
        reader.read_markets()
        accounts = reader.discover_accounts(0, block)
        pool = deployment["pool"]
        result = {
            "accounts": len(accounts),
            "reserves": len(deployment["reserves"]),
            "block": block,
            "multicall_reader_accounts_per_s": round(best_rate(len(accounts), lambda: reader.read_accounts(accounts),
                                                               args.repeat), 1),
            "multicall_getUserAccountData_accounts_per_s": round(best_rate(len(accounts), lambda: multicall(
                w3, [Call(pool, abi.GET_USER_ACCOUNT_DATA, (a,)) for a in accounts], block=block), args.repeat), 1),
            "eth_call_getUserAccountData_accounts_per_s": round(best_rate(len(accounts), lambda: [
                single_call(w3, Call(pool, abi.GET_USER_ACCOUNT_DATA, (a,)), block=block) for a in accounts],
                args.repeat), 1),
            "note": "reader = every reserve's aToken + flagged debt tokens per account; best of --repeat runs",
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
