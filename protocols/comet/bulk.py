"""``[protocols.comet.markets.<name>.bulk]``: a mainnet-sized Comet population seeded many accounts
per transaction (:mod:`analyzer.devnet.bulk`).

A lender mints the base asset and ``supply``s it; a borrower mints one or more collaterals,
``supply``s them and ``withdraw``s base beyond its balance (a borrow) for a drawn share of its
borrowing power (Σ collateral × borrowCollateralFactor, ``Comet.isBorrowCollateralized``), at least
``baseBorrowMin``. Lenders come first: theirs is the base the borrowers draw. Aave receipt-token
collaterals (``receipt_of``) take no bulk accounts.
"""

from __future__ import annotations

import numpy as np

from analyzer.devnet.bulk import SELF, AccountPlan, bulk_spec, seed_accounts
from analyzer.multicall import Call


def bulk_plans(scenario, name: str, config: dict, deployment: dict, tokens: dict[str, str]) -> list[AccountPlan]:
    spec = bulk_spec(config.get("bulk"), f"{scenario.path.name}: protocols.comet.markets.{name}.bulk")
    if spec is None or not spec.accounts:
        return []
    comet, base = deployment["comet"], config["base"]
    collaterals = [s for s, c in config["collaterals"].items() if not c.get("receipt_of")]
    price = {s: scenario.assets[s].price_usd for s in [base, *collaterals]}
    decimals = {s: scenario.assets[s].decimals for s in price}
    minimum = float(config.get("base_borrow_min", 0)) * price[base]
    rng = np.random.default_rng([scenario.seed, 5, spec.first])
    value, count, borrows, share = spec.draw(rng)
    plans = []

    def supply(symbol: str, usd: float) -> tuple[Call, ...]:
        raw = int(usd / price[symbol] * 10 ** decimals[symbol])
        return (Call(tokens[symbol], "mint(address,uint256)", (SELF, raw)),
                Call(tokens[symbol], "approve(address,uint256)", (comet, raw)),
                Call(comet, "supply(address,uint256)", (tokens[symbol], raw)))

    for i, label in enumerate(spec.labels()):
        if not borrows[i]:
            plans.append(AccountPlan(label, supply(base, value[i])))
            continue
        chosen = [collaterals[k] for k in rng.choice(len(collaterals), min(int(count[i]), len(collaterals)),
                                                       replace=False)]
        calls: list[Call] = []
        power = 0.0
        for s in chosen:
            calls += supply(s, value[i] / len(chosen))
            power += value[i] / len(chosen) * float(config["collaterals"][s]["borrow_collateral_factor"])
        borrow_usd = power * share[i]
        if borrow_usd > minimum * 1.01:
            raw = int(borrow_usd / price[base] * 10 ** decimals[base])
            calls.append(Call(comet, "withdraw(address,uint256)", (tokens[base], raw)))
        plans.append(AccountPlan(label, tuple(calls)))
    return sorted(plans, key=lambda p: p.calls[-1].signature.startswith("withdraw"))


def seed_bulk(ctx, name: str, config: dict, deployment: dict) -> None:
    seed_accounts(ctx, bulk_plans(ctx.scenario, name, config, deployment, ctx.book["tokens"]),
                  f"comet {name} bulk population")
