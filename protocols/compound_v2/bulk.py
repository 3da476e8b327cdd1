"""``[protocols.compound-v2.bulk]``: a mainnet-sized Compound V2 population seeded many accounts
per transaction (:mod:`analyzer.devnet.bulk`).

Each account mints its collateral, approves the cToken and ``mint``s (``CErc20.mint``); a borrower
enters its collateral markets (``Comptroller.enterMarkets``) and ``borrow``s one other market for a
drawn share of its liquidity (Σ collateral × collateral factor, ``getHypotheticalAccountLiquidity``).
The native CEther market takes no bulk accounts (a clone holds no ether).
"""

from __future__ import annotations

import numpy as np

from analyzer.devnet.bulk import SELF, AccountPlan, bulk_spec, seed_accounts
from analyzer.multicall import Call
from protocols.compound_v2.constants import NATIVE_ASSET, PROTOCOL


def bulk_plans(scenario, deployment: dict, collateral_factors: dict[str, float],
               prices: dict[str, float]) -> list[AccountPlan]:
    spec = bulk_spec(scenario.protocol(PROTOCOL).get("bulk"), f"{scenario.path.name}: protocols.{PROTOCOL}.bulk")
    if spec is None or not spec.accounts:
        return []
    markets = {s: m for s, m in deployment["markets"].items() if m["underlying"] != NATIVE_ASSET}
    collaterals = [s for s in markets if collateral_factors.get(s, 0) > 0]
    rng = np.random.default_rng([scenario.seed, 4, spec.first])
    value, count, borrows, share = spec.draw(rng)
    plans = []
    for i, label in enumerate(spec.labels()):
        chosen = [collaterals[k] for k in rng.choice(len(collaterals), int(count[i]), replace=False)]
        calls, power = [], 0.0
        for s in chosen:
            m, usd = markets[s], value[i] / len(chosen)
            raw = int(usd / prices[s] * 10 ** m["decimals"])
            calls += [Call(m["underlying"], "mint(address,uint256)", (SELF, raw)),
                      Call(m["underlying"], "approve(address,uint256)", (m["cToken"], raw)),
                      Call(m["cToken"], "mint(uint256)", (raw,))]
            power += usd * collateral_factors[s]
        others = [s for s in markets if s not in chosen]
        if borrows[i] and others:
            debt = others[int(rng.integers(len(others)))]
            raw = int(power * share[i] / prices[debt] * 10 ** markets[debt]["decimals"])
            if raw:
                calls += [Call(deployment["comptroller"], "enterMarkets(address[])",
                               ([markets[s]["cToken"] for s in chosen],)),
                          Call(markets[debt]["cToken"], "borrow(uint256)", (raw,))]
        plans.append(AccountPlan(label, tuple(calls)))
    return sorted(plans, key=lambda p: p.calls[-1].signature.startswith("borrow"))


def seed_bulk(ctx, deployment: dict, collateral_factors: dict[str, float], prices: dict[str, float]) -> None:
    seed_accounts(ctx, bulk_plans(ctx.scenario, deployment, collateral_factors, prices),
                  f"{PROTOCOL} bulk population")
