"""Benchmark: build the collateral graph, its metrics and exports on a synthetic snapshot.

    .venv/bin/python -m benchmarks.graph --accounts 10000 --fold-accounts 2000

Accounts hold random collateral (WETH, WBTC, wstETH, an aToken) against stablecoin debt in three
lending protocols, so the overlap and receipt channels are all present. Prints seconds per stage
and the size of the exported files. No rule is needed (curves are skipped for protocol names
without a registered plugin).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from analyzer.graph import build_graph, exposure_metrics, write_graph_outputs
from analyzer.model import Snapshot


def synthetic_snapshot(accounts: int, seed: int = 7) -> Snapshot:
    rng = np.random.default_rng(seed)
    symbols = ["WETH", "WBTC", "wstETH", "USDC", "DAI", "aWETH"]
    address = {s: "0x" + f"{i + 1:040x}" for i, s in enumerate(symbols)}
    price = {"WETH": 3000.0, "WBTC": 60000.0, "wstETH": 3500.0, "USDC": 1.0, "DAI": 1.0, "aWETH": 3000.0}
    assets = [{"address": address[s], "symbol": s, "decimals": 18, "price_usd": price[s],
               "receipt_of": f"bench-a:{address['WETH']}" if s == "aWETH" else ""} for s in symbols]
    protocols = {"bench-a": ["WETH", "WBTC", "wstETH"], "bench-b": ["WETH", "WBTC", "aWETH"],
                 "bench-c": ["wstETH", "aWETH"]}
    markets, frames = [], []
    for k, (protocol, collateral) in enumerate(protocols.items()):
        market = "0x" + f"{0x100 + k:040x}"
        for s in collateral + ["USDC", "DAI"]:
            markets.append({"protocol": protocol, "market": market, "asset": address[s], "oracle_price_usd": price[s],
                            "liquidation_threshold": 0.8 if s in collateral else 0.0})
        n = accounts // 2
        holders = rng.choice(accounts, size=n, replace=False)
        coll_symbol = rng.choice(collateral, size=n)
        coll_usd = rng.lognormal(8, 2, size=n)
        debt_symbol = rng.choice(["USDC", "DAI"], size=n)
        debt_usd = coll_usd * rng.uniform(0, 0.8, size=n)
        for side, sym, value in (("collateral", coll_symbol, coll_usd), ("debt", debt_symbol, debt_usd)):
            amount = value / np.array([price[s] for s in sym])
            frames.append({"protocol": [protocol] * n, "market": [market] * n,
                           "account": ["0x" + f"{0x10000 + h:040x}" for h in holders],
                           "asset": [address[s] for s in sym], "side": [side] * n, "amount": amount,
                           "raw": [str(int(a * 1e6)) for a in amount]})
    import pandas as pd

    positions = pd.concat([pd.DataFrame(f) for f in frames], ignore_index=True)
    return Snapshot(meta={"chain_id": 1, "block_number": 1}, assets=assets, markets=markets, positions=positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--fold-accounts", type=int, default=2000, help="keep this many accounts as nodes")
    args = parser.parse_args()
    snapshot = synthetic_snapshot(args.accounts)
    from protocols import plugins

    plugins()  # import every plugin (web3 and all) before the clock starts
    timings = {}
    start = time.perf_counter()
    graph = build_graph(snapshot, fold_below_usd=None, max_accounts=args.fold_accounts)
    timings["build_graph"] = time.perf_counter() - start
    start = time.perf_counter()
    exposure_metrics(snapshot, graph)
    timings["exposure_metrics"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = write_graph_outputs(graph, tmp)
        timings["write_graph_outputs"] = time.perf_counter() - start
        sizes = {name: Path(p).stat().st_size for name, p in paths.items()}
    print(f"positions={len(snapshot.positions)} accounts={snapshot.positions['account'].nunique()} "
          f"nodes={graph.number_of_nodes()} edges={graph.number_of_edges()} "
          f"folded_accounts={graph.graph['folded_accounts']} fold_below_usd={graph.graph['fold_below_usd']:.0f}")
    print(" ".join(f"{k}={v:.2f}s" for k, v in timings.items()))
    print(" ".join(f"{k}={v / 1e6:.2f}MB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
