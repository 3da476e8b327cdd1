"""The fidelity suite: the engine against real liquidations and swaps on an anvil fork.

The mainnet-like devnet at WETH shocks of -10/-20/-30/-40% and a joint ETH + WBTC shock: each is
replayed on a fresh fork (analyzer/replay/) and simulated by the engine from the same
pre-shock snapshot; prints the errors per shock as one JSON object (analyzer/fidelity.py).

    .venv/bin/python -m benchmarks.fidelity [--scenario mainnet-like] [--protocols aave-v3,uniswap-v3]
        [--shocks weth-10,eth-wbtc]
"""

from __future__ import annotations

import argparse
import json
import time

from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import start_devnet
from analyzer.replay import replay_and_compare
from analyzer.scenarios import ShockScenario
from protocols import parse_protocols

SHOCKS = [ShockScenario(name=f"weth-{p}", price_shocks={"WETH": -p / 100}) for p in (10, 20, 30, 40)] + [
    ShockScenario(name="eth-wbtc", price_shocks={"WETH": -0.30, "wstETH": -0.30, "WBTC": -0.25})]
DEFAULT = [s.name for s in SHOCKS]
# the option book's checks (issue 24): run with --scenario lyra-thin-b --protocols uniswap-v3,lyra-v1
SHOCKS += [ShockScenario(name="weth-15", price_shocks={"WETH": -0.15}),
           ShockScenario(name="weth-wsteth-wbtc", price_shocks={"WETH": -0.12, "wstETH": -0.14, "WBTC": -0.18}),
           ShockScenario(name="weth-10-iv+40", price_shocks={"WETH": -0.10}, iv_shocks={"WETH": 0.40}),
           ShockScenario(name="weth+20", price_shocks={"WETH": 0.20})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="aave-v3,compound-v2,comet,uniswap-v3,uniswap-v2,stableswap")
    parser.add_argument("--scenario", default="mainnet-like", help="devnet scenario (fixtures/scenarios)")
    parser.add_argument("--shocks", default=",".join(DEFAULT),
                        help="comma-separated names among " + ", ".join(s.name for s in SHOCKS))
    args = parser.parse_args()
    wanted = [name.strip() for name in args.shocks.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {s.name for s in SHOCKS})
    if unknown:
        parser.error(f"unknown shock {unknown[0]!r}")
    plugins = parse_protocols(args.protocols)
    out = {"protocols": [p.name for p in plugins], "shocks": {}}
    with start_devnet(scenario_mod.load(args.scenario), plugins) as devnet:
        for shock in [s for s in SHOCKS if s.name in wanted]:
            started = time.perf_counter()
            fidelity = replay_and_compare(devnet.url, devnet.book, shock, plugins).fidelity
            out["shocks"][shock.name] = {
                "passed": fidelity["passed"], "seconds": round(time.perf_counter() - started, 1),
                "protocols": {name: {k: v for k, v in p.items() if k not in ("only_in_engine", "only_in_replay")}
                              | {"only_in_engine": len(p["only_in_engine"]), "only_in_replay": len(p["only_in_replay"])}
                              for name, p in fidelity["protocols"].items()},
                "final_prices": fidelity["final_prices"], "replay_rounds": fidelity["replay"]["rounds"],
                "engine_rounds": fidelity["engine"]["rounds_run"]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
