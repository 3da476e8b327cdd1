"""Benchmark of the price-impact models: simulated swaps per second.

Prints JSON: for the exact Uniswap V3 simulation, swaps/s at 1, 10 and 100 initialised ticks
crossed (a synthetic pool with 300 nested positions, spacing 10, as deep as a large mainnet pool);
for the closed-form models, trades/s. Each figure is the best of ``--repeat`` timed loops.

    .venv/bin/python benchmarks/impact.py [--repeat 5] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyzer.amm import concentrated_liquidity as v3  # noqa: E402
from analyzer.engine.venues import ConstantProduct, LinearDepth, SqrtLaw  # noqa: E402
from protocols.uniswap_v3.venue import UniswapV3Venue  # noqa: E402

SPACING = 10
POSITIONS = 300
LIQUIDITY_PER_POSITION = 10**21
TOKEN0, TOKEN1 = "0x" + "aa" * 20, "0x" + "bb" * 20


def ladder_pool() -> v3.PoolState:
    """Positions [-k·s, +k·s] for k = 1..POSITIONS around tick 0: an initialised tick every spacing."""
    nets = {}
    for k in range(1, POSITIONS + 1):
        nets[-k * SPACING] = LIQUIDITY_PER_POSITION
        nets[k * SPACING] = -LIQUIDITY_PER_POSITION
    ticks = sorted(nets)
    return v3.PoolState(v3.get_sqrt_ratio_at_tick(0) + 1, 0, POSITIONS * LIQUIDITY_PER_POSITION, 500, SPACING,
                        ticks, nets)


def amount_crossing(pool: v3.PoolState, crossings: int) -> int:
    """token0 wei whose sale crosses exactly ``crossings`` initialised ticks (stops mid-range after)."""
    limit = v3.get_sqrt_ratio_at_tick(-crossings * SPACING - SPACING // 2)
    needed = v3.swap(pool.copy(), True, 10**40, limit).amount0
    result = v3.swap(pool.copy(), True, needed)
    assert result.ticks_crossed == crossings, (crossings, result.ticks_crossed)
    return needed


def rate(fn, seconds: float, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(20):
                fn()
            count += 20
        best = max(best, count / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    pool = ladder_pool()
    results = {"python": platform.python_version(), "machine": platform.machine(),
               "uniswap_v3_exact_swaps_per_s": {}, "uniswap_v3_steps": {}}
    for crossings in (1, 10, 100):
        amount = amount_crossing(pool, crossings)
        results["uniswap_v3_steps"][str(crossings)] = v3.swap(pool.copy(), True, amount).steps
        results["uniswap_v3_exact_swaps_per_s"][str(crossings)] = round(
            rate(lambda a=amount: v3.swap(pool.copy(), True, a), args.seconds, args.repeat), 1)
    params = {"token0": TOKEN0, "token1": TOKEN1, "decimals0": 18, "decimals1": 18, "fee": pool.fee_pips,
              "tick_spacing": SPACING, "sqrt_price_x96": str(pool.sqrt_price_x96), "tick": pool.tick,
              "liquidity": str(pool.liquidity), "ticks": [[t, str(n)] for t, n in pool.liquidity_net.items()]}
    venue = UniswapV3Venue(TOKEN0, TOKEN1, params)
    amount_10 = amount_crossing(pool, 10) / 1e18
    results["uniswap_v3_venue_trades_per_s_10_ticks"] = round(
        rate(lambda: venue.copy().trade(amount_10), args.seconds, args.repeat), 1)
    closed_form = {
        "constant_product": ConstantProduct(TOKEN0, TOKEN1, 1e4, 3e7),
        "sqrt_law": SqrtLaw(TOKEN0, TOKEN1, 3000.0, sigma=0.04, daily_volume=1e6),
        "linear": LinearDepth(TOKEN0, TOKEN1, 3000.0, depth_1pct=1e3),
    }
    results["closed_form_trades_per_s"] = {
        name: round(rate(lambda m=model: m.copy().trade(10.0), args.seconds, args.repeat), 1)
        for name, model in closed_form.items()}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
