"""``[protocols.aave-v3.bulk]``: a mainnet-sized Aave V3 population seeded many accounts per
transaction (:mod:`analyzer.devnet.bulk`).

Each account mints its collateral (the devnet's tokens mint openly), approves the Pool and
``supply``s it for itself (collateral enabled on first supply, ``ValidationLogic.
validateAutomaticUseAsCollateral``); a borrower then ``borrow``s one other asset at variable rate
for a drawn share of its borrowing power (Σ collateral × LTV, so ``validateBorrow`` accepts it).
Collateral is drawn among every listed reserve with an LTV and no debt ceiling, debt among every
borrowable one: a book spread over all the market's reserves, as mainnet's is.
"""

from __future__ import annotations

import numpy as np

from analyzer.devnet.bulk import SELF, AccountPlan, bulk_spec, seed_accounts
from analyzer.multicall import Call
from protocols.aave_v3 import params as P

MAX_UINT = 2**256 - 1
VARIABLE_RATE = 2


def bulk_plans(scenario, deployment: dict, version: str) -> list[AccountPlan]:
    spec = bulk_spec(scenario.protocol("aave-v3").get("bulk"), f"{scenario.path.name}: protocols.aave-v3.bulk")
    if spec is None or not spec.accounts:
        return []
    listings = P.reserves(version)
    pool = deployment["pool"]
    tokens = {s: r["asset"] for s, r in deployment["reserves"].items()}
    collaterals = [s for s in tokens if listings[s].ltv and not listings[s].debt_ceiling_usd]
    debts = [s for s in tokens if listings[s].borrowable]
    price = {s: scenario.assets[s].price_usd for s in tokens}
    decimals = {s: scenario.assets[s].decimals for s in tokens}
    rng = np.random.default_rng([scenario.seed, 3, spec.first])
    value, count, borrows, share = spec.draw(rng)
    plans = []
    for i, label in enumerate(spec.labels()):
        chosen = [collaterals[k] for k in rng.choice(len(collaterals), int(count[i]), replace=False)]
        calls, power = [], 0.0
        for s in chosen:
            usd = value[i] / len(chosen)
            raw = int(usd / price[s] * 10 ** decimals[s])
            calls += [Call(tokens[s], "mint(address,uint256)", (SELF, raw)),
                      Call(tokens[s], "approve(address,uint256)", (pool, raw)),
                      Call(pool, "supply(address,uint256,address,uint16)", (tokens[s], raw, SELF, 0))]
            power += usd * listings[s].ltv / 1e4
        others = [s for s in debts if s not in chosen]
        if borrows[i] and others:
            debt = others[int(rng.integers(len(others)))]
            raw = int(power * share[i] / price[debt] * 10 ** decimals[debt])
            if raw:
                calls.append(Call(pool, "borrow(address,uint256,uint256,uint16,address)",
                                  (tokens[debt], raw, VARIABLE_RATE, 0, SELF)))
        plans.append(AccountPlan(label, tuple(calls)))
    # suppliers first: their supply is the liquidity the borrowers draw on
    return sorted(plans, key=lambda p: p.calls[-1].signature.startswith("borrow"))


def seed_bulk(ctx, deployment: dict, version: str) -> None:
    seed_accounts(ctx, bulk_plans(ctx.scenario, deployment, version), "aave-v3 bulk population")
