"""Compound V2 on the devnet: our interface-exact contracts, configured and seeded from a scenario.

No registry package ships Compound V2's bytecode, so the devnet deploys our own contracts
(fixtures/contracts/compound_v2: Comptroller, CErc20, CEther, WhitePaperInterestRateModel,
FeedPriceOracle over the devnet's PriceFeeds). The ``[protocols.compound-v2]`` table names the
risk parameters, lenders' liquidity, explicit accounts and a seeded random population whose
labels ``pop-<i>`` are the same accounts as Aave's population: where the account already holds an
Aave aToken, it posts the same collateral asset here (shared-collateral contagion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from analyzer.books import market_of
from analyzer.devnet.context import DevnetContext
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from protocols.base import Devnet
from protocols.compound_v2.bulk import seed_bulk
from protocols.compound_v2.constants import NATIVE_ASSET, PROTOCOL

NATIVE_SYMBOL = "ETH"           # the CEther market; priced by the WETH feed
NATIVE_FEED = "WETH"
MANTISSA = 10**18
KEEPER_ETH_WEI = 10**24
ERC20_BALANCE_ABI = [{"type": "function", "name": "balanceOf", "stateMutability": "view",
                      "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]}]


@dataclass
class Position:
    label: str
    supply: dict[str, float] = field(default_factory=dict)   # symbol -> whole tokens, market entered
    borrow: dict[str, float] = field(default_factory=dict)
    hold: dict[str, float] = field(default_factory=dict)     # supplied without entering the market


def _table(scenario) -> dict[str, Any]:
    spec = scenario.protocol(PROTOCOL)
    if not spec:
        raise ContagionError(f"{scenario.path.name}: [protocols.{PROTOCOL}] is missing")
    return spec


def _mantissa(value: float) -> int:
    """A scenario fraction as an exact 1e18 mantissa (1.08 -> 1080000000000000000, no float error)."""
    return int(Decimal(str(value)) * MANTISSA)


def _fraction(value: Any, where: str, hi: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= hi:
        raise ContagionError(f"{where}: expected a number in [0, {hi}], got {value!r}")
    return float(value)


def market_specs(scenario) -> dict[str, dict[str, Any]]:
    """``markets = { NAME = collateral_factor }`` validated, or ``NAME = { underlying = SYMBOL,
    collateral_factor = ... }`` for a second market of one underlying (mainnet's cWBTC2 beside the
    legacy cWBTC): NAME is the market's name in the scenario and its cToken's symbol after "c".
    ``ETH`` is the native CEther market."""
    where = f"{scenario.path.name}: protocols.{PROTOCOL}.markets"
    markets = _table(scenario).get("markets")
    if not isinstance(markets, dict) or not markets:
        raise ContagionError(f"{where}: expected a table of SYMBOL = collateral factor")
    specs = {}
    for name, value in markets.items():
        spec = value if isinstance(value, dict) else {"collateral_factor": value}
        unknown = set(spec) - {"underlying", "collateral_factor"}
        if unknown:
            raise ContagionError(f"{where}.{name}: unknown keys {sorted(unknown)} (known: underlying, collateral_factor)")
        underlying = spec.get("underlying", name)
        if not isinstance(underlying, str):
            raise ContagionError(f"{where}.{name}.underlying: expected an asset symbol")
        if underlying != NATIVE_SYMBOL:
            scenario.asset(underlying, f"protocols.{PROTOCOL}.markets.{name}")
        specs[name] = {"collateral_factor": _fraction(spec.get("collateral_factor"), f"{where}.{name}", 0.9),
                       "underlying": underlying}
    return specs


def _weights(table: Any, where: str, markets: dict) -> tuple[list[str], np.ndarray]:
    if not isinstance(table, dict) or not table:
        raise ContagionError(f"{where}: expected a table of SYMBOL = weight")
    for symbol in table:
        if symbol not in markets:
            raise ContagionError(f'{where}: "{symbol}" is not a market (known: {", ".join(markets)})')
    weights = np.array([float(v) for v in table.values()])
    return list(table), weights / weights.sum()


def _price(scenario, market: str) -> float:
    underlying = market_specs(scenario)[market]["underlying"]
    return scenario.assets[NATIVE_FEED if underlying == NATIVE_SYMBOL else underlying].price_usd


def population(scenario, aave_collateral: dict[str, str] | None = None) -> list[Position]:
    """The random population of ``[protocols.compound-v2.population]`` from the scenario seed.

    ``hf`` here is Compound's own ratio Σ collateral × collateral factor / borrows (liquidatable
    below 1). ``aave_collateral`` maps labels to the collateral symbol they hold on Aave, used
    instead of the random draw when the symbol is a market here.
    """
    spec = _table(scenario).get("population")
    if not spec:
        return []
    markets = market_specs(scenario)
    where = f"{scenario.path.name}: protocols.{PROTOCOL}.population"
    rng = np.random.default_rng(scenario.seed + 2)
    n = int(spec.get("accounts", 0))
    hf_lo, hf_hi = (float(x) for x in spec.get("health_factor", [1.02, 3.0]))
    usd_lo, usd_hi = (float(x) for x in spec.get("collateral_usd", [2000, 1_000_000]))
    if not (1.0 < hf_lo < hf_hi and 0 < usd_lo < usd_hi):
        raise ContagionError(f"{where}: health_factor must be 1 < lo < hi and collateral_usd 0 < lo < hi")
    # markets retired after seeding (deprecated, oracle dropped) are not shared collateral
    retired = {*_table(scenario).get("deprecated", []), *_table(scenario).get("oracle_removed", [])}
    coll_syms, coll_w = _weights(spec.get("collateral"), f"{where}.collateral", markets)
    debt_syms, debt_w = _weights(spec.get("debt"), f"{where}.debt", markets)
    hf = hf_lo + (hf_hi - hf_lo) * rng.random(n) ** float(spec.get("hf_power", 2.0))
    value = np.exp(rng.uniform(math.log(usd_lo), math.log(usd_hi), n))
    coll_pick = rng.choice(len(coll_syms), n, p=coll_w)
    debt_pick = rng.choice(len(debt_syms), n, p=debt_w)
    positions = []
    for i in range(n):
        label = f"pop-{i}"
        collateral = coll_syms[coll_pick[i]]
        shared = (aave_collateral or {}).get(label)
        if shared in markets and markets[shared]["collateral_factor"] > 0 and shared not in retired:
            collateral = shared
        debt = debt_syms[debt_pick[i]]
        amount = value[i] / _price(scenario, collateral)
        borrow_usd = value[i] * markets[collateral]["collateral_factor"] / hf[i]
        positions.append(Position(label, {collateral: amount}, {debt: borrow_usd / _price(scenario, debt)}))
    return positions


def explicit_accounts(scenario) -> list[Position]:
    out = []
    for k, entry in enumerate(_table(scenario).get("accounts", [])):
        where = f"{scenario.path.name}: protocols.{PROTOCOL}.accounts[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ContagionError(f"{where}: expected a table with a label")
        out.append(Position(entry["label"], dict(entry.get("supply", {})), dict(entry.get("borrow", {})),
                            dict(entry.get("hold", {}))))
    return out


class CompoundV2Devnet(Devnet):
    """Deploys our Compound V2 contracts for the scenario's markets and seeds its accounts."""

    protocol = PROTOCOL

    MARKET = "Compound V2"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        spec = _table(ctx.scenario)
        markets = market_specs(ctx.scenario)
        where = f"{ctx.scenario.path.name}: protocols.{PROTOCOL}"
        close_factor = _fraction(spec.get("close_factor", 0.5), f"{where}.close_factor")
        incentive = _fraction(spec.get("liquidation_incentive", 1.08), f"{where}.liquidation_incentive", 2.0)
        reserve_factor = _fraction(spec.get("reserve_factor", 0.1), f"{where}.reserve_factor")
        base_rate, multiplier = (_fraction(x, f"{where}.rate_model") for x in spec.get("rate_model", [0.02, 0.2]))

        oracle = ctx.deploy(fixture_artifact("compound_v2", "FeedPriceOracle"))
        comptroller = ctx.deploy(fixture_artifact("compound_v2", "Comptroller"))
        rate_model = ctx.deploy(fixture_artifact("compound_v2", "WhitePaperInterestRateModel"),
                                _mantissa(base_rate), _mantissa(multiplier))
        ctx.transact(comptroller.functions._setPriceOracle(oracle.address))
        ctx.transact(comptroller.functions._setCloseFactor(_mantissa(close_factor)))
        ctx.transact(comptroller.functions._setLiquidationIncentive(_mantissa(incentive)))

        book_markets = {}
        for symbol, market in markets.items():
            underlying = market["underlying"]
            native = underlying == NATIVE_SYMBOL
            decimals = 18 if native else ctx.book["decimals"][underlying]
            # Compound's initial exchange rate: 0.02 underlying per cToken, in 1e(18 + dec - 8)
            initial_rate = 2 * 10 ** (decimals + 8)
            args = (comptroller.address, rate_model.address, initial_rate, f"Compound {symbol}", f"c{symbol}", 8,
                    ctx.deployer)
            if native:
                ctoken = ctx.deploy(fixture_artifact("compound_v2", "CEther"), *args)
            else:
                ctoken = ctx.deploy(fixture_artifact("compound_v2", "CErc20"), ctx.book["tokens"][underlying], *args)
            feed = ctx.book["feeds"][NATIVE_FEED if native else underlying]
            ctx.transact(oracle.functions.setFeed(ctoken.address, feed, decimals))
            ctx.transact(comptroller.functions._supportMarket(ctoken.address))
            cf = _mantissa(market["collateral_factor"])
            ctx.transact(comptroller.functions._setCollateralFactor(ctoken.address, cf))
            ctx.transact(ctoken.functions._setReserveFactor(_mantissa(reserve_factor)))
            book_markets[symbol] = {"cToken": ctoken.address, "underlying": NATIVE_ASSET if native else
                                    ctx.book["tokens"][underlying], "decimals": decimals, "feed": feed}
        return {"comptroller": comptroller.address, "oracle": oracle.address, "rate_model": rate_model.address,
                "admin": ctx.deployer, "profile": "compound", "start_block": 0, "markets": book_markets}

    # ---- seeding ----
    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        spec = _table(ctx.scenario)
        lenders = Position("compound-lender", {s: float(v) for s, v in spec.get("liquidity", {}).items()})
        positions = [lenders, *explicit_accounts(ctx.scenario),
                     *population(ctx.scenario, self._aave_collateral(ctx))]
        for position in positions:
            self._open(ctx, deployment, position)
        markets = market_specs(ctx.scenario)
        seed_bulk(ctx, deployment, {s: m["collateral_factor"] for s, m in markets.items()},
                  {s: _price(ctx.scenario, s) for s in markets})
        self._retire(ctx, deployment, spec)

    def _retire(self, ctx: DevnetContext, deployment: dict[str, Any], spec: dict[str, Any]) -> None:
        """After seeding, as mainnet retired markets: ``deprecated`` ones get collateral factor 0,
        borrowing paused and reserve factor 1e18 (Comptroller.isDeprecated); ``oracle_removed`` ones
        lose their oracle configuration (getUnderlyingPrice reverts ConfigNotFound)."""
        markets, where = deployment["markets"], f"{ctx.scenario.path.name}: protocols.{PROTOCOL}"
        comptroller = ctx.contract(deployment["comptroller"], fixture_artifact("compound_v2", "Comptroller")["abi"])
        oracle = ctx.contract(deployment["oracle"], fixture_artifact("compound_v2", "FeedPriceOracle")["abi"])
        ctoken_abi = fixture_artifact("compound_v2", "CErc20")["abi"]
        for key in ("deprecated", "oracle_removed"):
            for symbol in spec.get(key, []):
                if symbol not in markets:
                    raise ContagionError(f'{where}.{key}: "{symbol}" is not a market (known: {", ".join(markets)})')
        for symbol in spec.get("deprecated", []):
            ctoken = markets[symbol]["cToken"]
            ctx.transact(comptroller.functions._setCollateralFactor(ctoken, 0))
            ctx.transact(comptroller.functions._setBorrowPaused(ctoken, True))
            ctx.transact(ctx.contract(ctoken, ctoken_abi).functions._setReserveFactor(MANTISSA))
            if not comptroller.functions.isDeprecated(ctoken).call():
                raise ContagionError(f"{where}.deprecated: {symbol} is not deprecated after retiring it")
        for symbol in spec.get("oracle_removed", []):
            ctx.transact(oracle.functions.removeConfig(markets[symbol]["cToken"]))

    def _aave_collateral(self, ctx: DevnetContext) -> dict[str, str]:
        """label -> the first reserve symbol whose aToken the account holds on Aave (if Aave is deployed)."""
        reserves = (market_of(ctx.book, "aave-v3") or {}).get("reserves", {})
        spec = _table(ctx.scenario).get("population") or {}
        found: dict[str, str] = {}
        for i in range(int(spec.get("accounts", 0))):
            label = f"pop-{i}"
            account = account_address(label)
            for symbol, reserve in reserves.items():
                token = ctx.contract(reserve["aToken"], ERC20_BALANCE_ABI)
                if token.functions.balanceOf(account).call() > 0:
                    found[label] = symbol
                    break
        return found

    def _open(self, ctx: DevnetContext, deployment: dict[str, Any], position: Position) -> None:
        account = account_address(position.label)
        ctx.fund_eth(account, KEEPER_ETH_WEI)
        ctx.impersonate(account)
        markets = deployment["markets"]
        token_abi = fixture_artifact("compound_v2", "CErc20")["abi"]
        comptroller = ctx.contract(deployment["comptroller"], fixture_artifact("compound_v2", "Comptroller")["abi"])
        where = f"{ctx.scenario.path.name}: protocols.{PROTOCOL} account {position.label}"
        for symbol in [*position.supply, *position.borrow, *position.hold]:
            if symbol not in markets:
                raise ContagionError(f'{where}: "{symbol}" is not a market (known: {", ".join(markets)})')
        entered = [markets[s]["cToken"] for s in position.supply]
        if entered:
            ctx.transact(comptroller.functions.enterMarkets(entered), sender=account)
        for symbol, whole in [*position.supply.items(), *position.hold.items()]:
            raw = int(whole * 10 ** markets[symbol]["decimals"])
            if markets[symbol]["underlying"] == NATIVE_ASSET:
                ether = ctx.contract(markets[symbol]["cToken"], fixture_artifact("compound_v2", "CEther")["abi"])
                ctx.fund_eth(account, KEEPER_ETH_WEI + raw)
                ctx.transact(ether.functions.mint(), sender=account, value=raw)
                continue
            underlying = ctx.contract(markets[symbol]["underlying"], _MINTABLE_ABI)
            ctx.transact(underlying.functions.mint(account, raw))
            ctx.transact(underlying.functions.approve(markets[symbol]["cToken"], raw), sender=account)
            ctx.transact(ctx.contract(markets[symbol]["cToken"], token_abi).functions.mint(raw), sender=account)
        for symbol, whole in position.borrow.items():
            raw = int(whole * 10 ** markets[symbol]["decimals"])
            ctx.transact(ctx.contract(markets[symbol]["cToken"], token_abi).functions.borrow(raw), sender=account,
                         what=f"{position.label} borrow {symbol}")


_MINTABLE_ABI = [
    {"type": "function", "name": "mint", "stateMutability": "nonpayable",
     "inputs": [{"name": "account", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]

__all__ = ["CompoundV2Devnet", "population", "market_specs"]
