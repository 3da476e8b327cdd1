"""Seed the scenario's Aave V3 positions on the devnet with real transactions.

The ``[protocols.aave-v3]`` table of a scenario names lenders' liquidity, explicit accounts and a
seeded random population (see fixtures/scenarios/mainnet-like.toml). Supplies are made by the
deployer ``onBehalfOf`` each account (``Pool.supply``), so only ``setUserEMode`` and ``borrow``
need the account itself (impersonated). Transactions are sent without waiting and their
receipts checked together at the end: seeding speed is what a clean CI build waits for.

Health factors near 1 cannot be opened directly: ``ValidationLogic.validateBorrow`` caps debt at
the LTV, which is below the liquidation threshold. Mainnet accounts reach them by price moves;
here every collateral LTV (and the e-mode LTV) is raised to threshold − 1 bp while the population
borrows and restored right after, so the prices stay those of the scenario for every protocol.

On v3.6 an account enters its e-mode before anything is supplied for it (an asset that is
collateral only inside an e-mode is enabled as collateral on supply only then); an isolated
asset is enabled as collateral by the account itself (3.6 never enables it automatically,
``ValidationLogic.validateAutomaticUseAsCollateral``); ltvzero bits are set after seeding.
``[protocols.aave-v3.emode_population]`` (v3.6) seeds accounts in every e-mode category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from eth_utils import to_checksum_address

from analyzer.chain import rpc
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from analyzer.multicall import Call
from protocols.aave_v3 import params as P

ZERO = "0x0000000000000000000000000000000000000000"
MAX_UINT = 2**256 - 1
VARIABLE_RATE = 2
GAS = 1_500_000


@dataclass
class Position:
    label: str
    supply: dict[str, float] = field(default_factory=dict)   # symbol -> whole tokens
    borrow: dict[str, float] = field(default_factory=dict)
    e_mode: int = 0


def _version(scenario) -> str:
    from protocols.aave_v3.devnet import scenario_version
    return scenario_version(scenario)


def _emode_threshold(version: str, category: int) -> int:
    table = P.EMODE_CATEGORIES if version == "3.0" else P.EMODE_CATEGORIES_V36
    return table[category].liquidation_threshold


def _weights(table: Any, where: str, scenario) -> tuple[list[str], np.ndarray]:
    if not isinstance(table, dict) or not table:
        raise ContagionError(f"{scenario.path.name}: {where}: expected a table of asset = weight")
    for symbol in table:
        scenario.asset(symbol, where)
        if symbol not in P.RESERVES:
            raise ContagionError(f'{scenario.path.name}: {where}: "{symbol}" is not an Aave V3 reserve here '
                                 f'(known: {", ".join(P.RESERVES)})')
    weights = np.array([float(v) for v in table.values()])
    return list(table), weights / weights.sum()


def population(scenario) -> list[Position]:
    """The random population of ``[protocols.aave-v3.population]``, from ``scenario.seed``."""
    spec = scenario.protocol("aave-v3").get("population")
    if not spec:
        return []
    where = "protocols.aave-v3.population"
    rng = np.random.default_rng(scenario.seed)
    n = int(spec.get("accounts", 0))
    hf_lo, hf_hi = (float(x) for x in spec.get("health_factor", [1.01, 5.0]))
    usd_lo, usd_hi = (float(x) for x in spec.get("collateral_usd", [2000, 2_000_000]))
    if not (1.0 < hf_lo < hf_hi and 0 < usd_lo < usd_hi):
        raise ContagionError(f"{scenario.path.name}: {where}: health_factor must be 1 < lo < hi and "
                             f"collateral_usd 0 < lo < hi")
    coll_syms, coll_w = _weights(spec.get("collateral"), f"{where}.collateral", scenario)
    debt_syms, debt_w = _weights(spec.get("debt"), f"{where}.debt", scenario)
    isolated = spec.get("isolated_asset", "CRV")
    price = {s: a.price_usd for s, a in scenario.assets.items()}

    hf = hf_lo + (hf_hi - hf_lo) * rng.random(n) ** float(spec.get("hf_power", 2.0))
    value = np.exp(rng.uniform(math.log(usd_lo), math.log(usd_hi), n))
    kind = rng.random(n)
    emode_cut = float(spec.get("emode_share", 0.0))
    iso_cut = emode_cut + float(spec.get("isolated_share", 0.0))
    second_coll = rng.random(n) < float(spec.get("second_collateral_share", 0.0))
    second_debt = rng.random(n) < float(spec.get("second_debt_share", 0.0))
    split = rng.uniform(0.2, 0.8, n)
    first_coll = rng.choice(len(coll_syms), n, p=coll_w)
    other_coll = rng.choice(len(coll_syms), n, p=coll_w)
    first_debt = rng.choice(len(debt_syms), n, p=debt_w)
    other_debt = rng.choice(len(debt_syms), n, p=debt_w)

    out = []
    for i in range(n):  # builds the seeding plan once; not a hot path
        pos = Position(f"pop-{i}")
        if kind[i] < emode_cut:
            pos.e_mode = 1
            pos.supply["wstETH"] = value[i] / price["wstETH"]
            lt = _emode_threshold(_version(scenario), 1) / 1e4
            pos.borrow["WETH"] = value[i] * lt / hf[i] / price["WETH"]
            out.append(pos)
            continue
        if kind[i] < iso_cut:
            value[i] = min(value[i], 50_000.0)  # the debt ceiling is shared by every isolated borrower
            colls = {isolated: value[i]}
        elif second_coll[i] and other_coll[i] != first_coll[i]:
            colls = {coll_syms[first_coll[i]]: value[i] * split[i], coll_syms[other_coll[i]]: value[i] * (1 - split[i])}
        else:
            colls = {coll_syms[first_coll[i]]: value[i]}
        weighted = sum(usd * P.RESERVES[s].liquidation_threshold / 1e4 for s, usd in colls.items())
        debt_usd = weighted / hf[i]
        if second_debt[i] and other_debt[i] != first_debt[i] and kind[i] >= iso_cut:
            debts = {debt_syms[first_debt[i]]: debt_usd * split[i], debt_syms[other_debt[i]]: debt_usd * (1 - split[i])}
        else:
            debts = {debt_syms[first_debt[i]] if kind[i] >= iso_cut else "USDC": debt_usd}
        pos.supply = {s: usd / price[s] for s, usd in colls.items()}
        pos.borrow = {s: usd / price[s] for s, usd in debts.items()}
        out.append(pos)
    return out


def emode_population(scenario) -> list[Position]:
    """``[protocols.aave-v3.emode_population]``: ``accounts_per_category`` accounts in every v3.6
    e-mode category ("emode-<category>-<k>"), collateral from the category's collateral bitmap, debt
    from its borrowable bitmap (another asset than the collateral), health factor in range."""
    spec = scenario.protocol("aave-v3").get("emode_population")
    if not spec or _version(scenario) == "3.0":
        return []
    where = "protocols.aave-v3.emode_population"
    per = int(spec.get("accounts_per_category", 0))
    hf_lo, hf_hi = (float(x) for x in spec.get("health_factor", [1.01, 2.0]))
    usd_lo, usd_hi = (float(x) for x in spec.get("collateral_usd", [3000, 1_000_000]))
    if not (per >= 0 and 1.0 < hf_lo < hf_hi and 0 < usd_lo < usd_hi):
        raise ContagionError(f"{scenario.path.name}: {where}: accounts_per_category >= 0, health_factor 1 < lo < hi "
                             f"and collateral_usd 0 < lo < hi")
    price = {s: a.price_usd for s, a in scenario.assets.items()}
    out = []
    for category, e in P.EMODE_CATEGORIES_V36.items():
        rng = np.random.default_rng([scenario.seed, category])
        colls = [s for s in e.collateral if s in price]
        for k in range(per):
            hf = hf_lo + (hf_hi - hf_lo) * rng.random() ** float(spec.get("hf_power", 2.0))
            value = math.exp(rng.uniform(math.log(usd_lo), math.log(usd_hi)))
            chosen = list(rng.choice(colls, size=min(len(colls), 1 + k % 2), replace=False))
            split = [1.0] if len(chosen) == 1 else [0.6, 0.4]
            debts = [s for s in e.borrowable if s in price and s not in chosen] or [s for s in e.borrowable if s in price]
            debt = debts[k % len(debts)]
            pos = Position(f"emode-{category}-{k}", e_mode=category)
            pos.supply = {s: value * w / price[s] for s, w in zip(chosen, split, strict=True)}
            pos.borrow = {debt: value * e.liquidation_threshold / 1e4 / hf / price[debt]}
            out.append(pos)
    return out


def explicit_accounts(scenario) -> list[Position]:
    out = []
    for k, spec in enumerate(scenario.protocol("aave-v3").get("accounts", [])):
        where = f"protocols.aave-v3.accounts[{k}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("label"), str):
            raise ContagionError(f"{scenario.path.name}: {where}: expected a table with a label")
        for side in ("supply", "borrow"):
            for symbol in spec.get(side, {}):
                scenario.asset(symbol, f"{where}.{side}")
        out.append(Position(spec["label"], dict(spec.get("supply", {})), dict(spec.get("borrow", {})),
                            int(spec.get("e_mode", 0))))
    return out


class Sender:
    """Fire-and-check transactions: send without waiting, verify every receipt at the end."""

    def __init__(self, w3):
        self.w3 = w3
        self.sent: list[tuple[str, str]] = []

    def send(self, sender: str, call: Call, what: str) -> None:
        tx = {"from": to_checksum_address(sender), "to": to_checksum_address(call.target),
              "data": "0x" + call.calldata.hex(), "gas": hex(GAS)}
        self.sent.append((rpc(self.w3, "eth_sendTransaction", [tx]), what))

    def wait_last(self) -> None:
        """Block until the last sent transaction is mined (the next one depends on it)."""
        if self.sent:
            self.w3.eth.wait_for_transaction_receipt(self.sent[-1][0], timeout=120, poll_latency=0.005)

    def check(self) -> None:
        for tx_hash, what in self.sent:
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120, poll_latency=0.01)
            if receipt["status"] != 1:
                raise ContagionError(f"aave-v3 seeding: {what} failed (tx {tx_hash})")
        self.sent.clear()


def _raw(amount: float, decimals: int) -> int:
    return int(amount * 10**decimals)


def seed_population(ctx, deployment: dict[str, Any]) -> None:
    """Lenders' liquidity, explicit accounts and the random population, as real transactions."""
    scenario, w3, me = ctx.scenario, ctx.w3, ctx.deployer
    pool, configurator = deployment["pool"], deployment["pool_configurator"]
    version = _version(scenario)
    listings = P.reserves(version)
    tokens = {s: r["asset"] for s, r in deployment["reserves"].items()}
    decimals = {s: scenario.assets[s].decimals for s in tokens}
    liquidity = scenario.protocol("aave-v3").get("liquidity", {})
    positions = explicit_accounts(scenario) + population(scenario) + emode_population(scenario)
    for pos in positions:
        for symbol in (*pos.supply, *pos.borrow):
            if symbol not in tokens:
                raise ContagionError(f'{scenario.path.name}: protocols.aave-v3: {pos.label} uses "{symbol}", '
                                     f'which is not an Aave V3 reserve here (known: {", ".join(tokens)})')
    tx = Sender(w3)
    # the deployer pays every supply: mint once, approve once per asset
    total = {s: _raw(float(liquidity.get(s, 0)), decimals[s]) for s in tokens}
    for pos in positions:
        for s, amount in pos.supply.items():
            total[s] += _raw(amount, decimals[s])
    for s, amount in total.items():
        if amount:
            tx.send(me, Call(tokens[s], "mint(address,uint256)", (me, amount)), f"mint {s}")
            tx.send(me, Call(tokens[s], "approve(address,uint256)", (pool, MAX_UINT)), f"approve {s}")
    for s, amount in liquidity.items():
        lender = account_address(f"aave-lender-{s}")
        tx.send(me, Call(pool, "supply(address,uint256,address,uint16)",
                         (tokens[s], _raw(float(amount), decimals[s]), lender, 0)), f"supply {s} for lender")
    _set_seeding_ltv(tx, me, configurator, tokens, version, raised=True)
    tx.check()
    for pos in positions:
        account = account_address(pos.label)
        ctx.fund_eth(account, 10**19)
        ctx.impersonate(account)
        if pos.e_mode:  # before any supply: see the module's docstring
            tx.send(account, Call(pool, "setUserEMode(uint8)", (pos.e_mode,)), f"setUserEMode {pos.label}")
            tx.wait_last()
        for s, amount in pos.supply.items():
            tx.send(me, Call(pool, "supply(address,uint256,address,uint16)",
                             (tokens[s], _raw(amount, decimals[s]), account, 0)), f"supply {s} for {pos.label}")
            if version != "3.0" and listings[s].debt_ceiling_usd:
                tx.wait_last()
                tx.send(account, Call(pool, "setUserUseReserveAsCollateral(address,bool)", (tokens[s], True)),
                        f"use {s} as collateral ({pos.label})")
        tx.wait_last()  # the borrow below needs the supply mined, whatever the pool's ordering
        for s, amount in pos.borrow.items():
            tx.send(account, Call(pool, "borrow(address,uint256,uint256,uint16,address)",
                                  (tokens[s], _raw(amount, decimals[s]), VARIABLE_RATE, 0, account)),
                    f"borrow {s} by {pos.label}")
        rpc(w3, "anvil_stopImpersonatingAccount", [account])
    _set_seeding_ltv(tx, me, configurator, tokens, version, raised=False)
    tx.check()
    if version != "3.0":
        from protocols.aave_v3.devnet_v36 import set_emode_ltvzero
        set_emode_ltvzero(ctx, configurator, tokens)


def _set_seeding_ltv(tx: Sender, me: str, configurator: str, tokens: dict[str, str], version: str, *,
                     raised: bool) -> None:
    """Raise each collateral's LTV to its threshold − 1 bp for seeding, or restore the listing's."""
    for s, asset in tokens.items():
        r = P.reserves(version)[s]
        if not r.liquidation_threshold:  # collateral only inside an e-mode: nothing to raise
            continue
        ltv = r.liquidation_threshold - 1 if raised else r.ltv
        tx.send(me, Call(configurator, "configureReserveAsCollateral(address,uint256,uint256,uint256)",
                         (asset, ltv, r.liquidation_threshold, r.liquidation_bonus)), f"set LTV of {s}")
    if version != "3.0":
        for category, c in P.EMODE_CATEGORIES_V36.items():
            ltv = c.liquidation_threshold - 1 if raised else c.ltv
            tx.send(me, Call(configurator, "setEModeCategory(uint8,uint16,uint16,uint16,string)",
                             (category, ltv, c.liquidation_threshold, c.liquidation_bonus, c.label)),
                    f"set e-mode {category} LTV")
        return
    for category, e in P.EMODE_CATEGORIES.items():
        ltv = e.liquidation_threshold - 1 if raised else e.ltv
        tx.send(me, Call(configurator, "setEModeCategory(uint8,uint16,uint16,uint16,address,string)",
                         (category, ltv, e.liquidation_threshold, e.liquidation_bonus, ZERO, e.label)),
                f"set e-mode {category} LTV")
