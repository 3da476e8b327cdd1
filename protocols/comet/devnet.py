"""Deploy our interface-exact Comet (fixtures/contracts/comet) on the devnet and seed it.

The scenario's ``[protocols.comet.markets.<name>]`` tables each name one Comet (one market of the
address book, e.g. cUSDCv3 and cWETHv3): its base asset, the collaterals with their factors, the
lenders, the reserves and the borrowers. A borrower is given by its collateral
(whole tokens) and its *liquidation health* ``h = Σ collateral × price × liquidateCF / debt`` at
the scenario's prices. Comet refuses a borrow above ``borrowCollateralFactor`` (h ≥ LCF/BCF ≈ 1.08),
so accounts closer to liquidation are opened as they are on mainnet, at higher prices: their
collateral feeds are raised just enough for the borrow, then restored to the exact scenario answer.
"""

from __future__ import annotations

from typing import Any

from analyzer.books import market_of
from analyzer.devnet.context import DevnetContext
from analyzer.devnet.feeds import prices_raised
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from protocols.base import Devnet
from protocols.comet.bulk import seed_bulk
from protocols.comet.executor import comet_abi

PROTOCOL = "comet"
WAD = 10**18
MINT = "mint(address,uint256)"
RATE_KEYS = ("supply_kink", "supply_slope_low", "supply_slope_high", "supply_base",
             "borrow_kink", "borrow_slope_low", "borrow_slope_high", "borrow_base")


def _wad(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
        raise ContagionError(f"protocols.comet.{where}: expected a number, got {value!r}")
    return round(value * WAD)


def _raw(amount: float, decimals: int) -> int:
    return int(round(amount * 10**6)) * 10 ** decimals // 10**6


def collateral_asset(ctx: DevnetContext, symbol: str, spec: dict, where: str = "protocols.comet"
                     ) -> tuple[str, str, int, float, str]:
    """(token address, price feed, decimals, USD price, underlying symbol) of a collateral.

    A collateral with ``receipt_of = "<protocol>:<SYMBOL>"`` is that protocol's receipt token for
    SYMBOL (so far: Aave V3's aToken, 1:1 with its underlying), priced by the underlying's feed:
    the composability channel, where one protocol's receipt backs debt in another.
    """
    receipt_of = spec.get("receipt_of")
    if not receipt_of:
        asset = ctx.scenario.asset(symbol, f"{where}.collaterals.{symbol}")
        return ctx.book["tokens"][symbol], ctx.book["feeds"][symbol], asset.decimals, asset.price_usd, symbol
    protocol, _, underlying = str(receipt_of).partition(":")
    where = f"{where}.collaterals.{symbol}.receipt_of"
    if protocol != "aave-v3":
        raise ContagionError(f"{ctx.scenario.path.name}: {where}: only aave-v3 receipt tokens are supported, got {protocol!r}")
    reserves = (market_of(ctx.book, "aave-v3") or {}).get("reserves", {})
    if underlying not in reserves:
        raise ContagionError(f"{ctx.scenario.path.name}: {where}: aave-v3 has no {underlying} reserve on this devnet")
    asset = ctx.scenario.asset(underlying, where)
    return reserves[underlying]["aToken"], ctx.book["feeds"][underlying], asset.decimals, asset.price_usd, underlying


class CometDevnet(Devnet):
    protocol = PROTOCOL

    def markets(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        """The scenario's Comet markets by name, each checked for the keys a deployment needs."""
        markets = (ctx.scenario.protocol(PROTOCOL) or {}).get("markets")
        if not isinstance(markets, dict) or not markets:
            raise ContagionError(f"{ctx.scenario.path.name}: no [protocols.comet.markets.<name>] table")
        for name, config in markets.items():
            for key in ("base", "collaterals", "rates"):
                if key not in config:
                    raise ContagionError(f"{ctx.scenario.path.name}: protocols.comet.markets.{name}.{key} is missing")
        return markets

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {name: self._deploy_market(ctx, name, config) for name, config in self.markets(ctx).items()}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        for name, config in self.markets(ctx).items():
            self._seed_market(ctx, name, config, markets[name])

    def _deploy_market(self, ctx: DevnetContext, name: str, config: dict[str, Any]) -> dict[str, Any]:
        base = config["base"]
        base_spec = ctx.scenario.asset(base, f"protocols.comet.markets.{name}.base")
        asset_configs = []
        for symbol, spec in config["collaterals"].items():
            where = f"markets.{name}.collaterals.{symbol}"
            token_address, feed, decimals, _price, _underlying = collateral_asset(
                ctx, symbol, spec, f"protocols.comet.markets.{name}")
            asset_configs.append((
                token_address, feed, decimals,
                _wad(spec["borrow_collateral_factor"], f"{where}.borrow_collateral_factor"),
                _wad(spec["liquidate_collateral_factor"], f"{where}.liquidate_collateral_factor"),
                _wad(spec["liquidation_factor"], f"{where}.liquidation_factor"),
                _raw(spec["supply_cap"], decimals)))
        rates = config["rates"]
        missing = [k for k in RATE_KEYS if k not in rates]
        if missing:
            raise ContagionError(f"{ctx.scenario.path.name}: protocols.comet.markets.{name}.rates: "
                                 f"missing {', '.join(missing)}")
        comet = ctx.deploy(
            fixture_artifact("comet", "Comet"), ctx.deployer, ctx.book["tokens"][base], ctx.book["feeds"][base],
            _wad(config["store_front_price_factor"], "store_front_price_factor"),
            _raw(config["base_borrow_min"], base_spec.decimals), _raw(config["target_reserves"], base_spec.decimals),
            tuple(_wad(rates[k], f"rates.{k}") for k in RATE_KEYS), asset_configs)
        return {"comet": comet.address, "base": ctx.book["tokens"][base], "governor": ctx.deployer,
                "source": "devnet: fixtures/contracts/comet/Comet.sol (interface of compound-finance/comet)"}

    def _seed_market(self, ctx: DevnetContext, name: str, config: dict[str, Any], deployment: dict[str, Any]) -> None:
        comet = ctx.contract(deployment["comet"], comet_abi())
        tokens, base = ctx.book["tokens"], config["base"]
        where = f"protocols.comet.markets.{name}"
        me = ctx.deployer
        token = lambda symbol: ctx.contract(tokens[symbol], devnet_token_abi())  # noqa: E731
        decimals = {s: a.decimals for s, a in ctx.scenario.assets.items()}

        def fund_and_supply(dst: str, symbol: str, amount: float) -> None:
            spec = config["collaterals"].get(symbol, {})
            if spec.get("receipt_of"):
                return supply_receipt(dst, symbol, spec, amount)
            raw = _raw(amount, decimals[symbol])
            ctx.transact(token(symbol).get_function_by_signature(MINT)(me, raw), what=f"mint {symbol}")
            ctx.transact(token(symbol).functions.approve(comet.address, raw), what=f"approve {symbol}")
            ctx.transact(comet.functions.supplyTo(dst, tokens[symbol], raw), what=f"comet supplyTo {symbol}")

        def supply_receipt(dst: str, symbol: str, spec: dict, amount: float) -> None:
            """Supply the underlying to Aave for its aToken, then the aToken to Comet."""
            receipt, _feed, receipt_decimals, _price, underlying = collateral_asset(ctx, symbol, spec, where)
            aave = market_of(ctx.book, "aave-v3")
            if aave is None:
                raise ContagionError(f"{where}: {symbol} is an Aave receipt, but the devnet has no aave-v3 market")
            pool = ctx.contract(aave["pool"], AAVE_SUPPLY_ABI)
            raw = _raw(amount, receipt_decimals)
            ctx.transact(token(underlying).get_function_by_signature(MINT)(me, raw), what=f"mint {underlying}")
            ctx.transact(token(underlying).functions.approve(pool.address, raw), what=f"approve {underlying}")
            ctx.transact(pool.functions.supply(tokens[underlying], raw, me, 0), what=f"aave supply {underlying}")
            a_token = ctx.contract(receipt, devnet_token_abi())
            held = min(raw, a_token.functions.balanceOf(me).call())  # ray rounding may leave 1 wei less
            ctx.transact(a_token.functions.approve(comet.address, held), what=f"approve {symbol}")
            ctx.transact(comet.functions.supplyTo(dst, receipt, held), what=f"comet supplyTo {symbol}")

        for lender in config.get("lenders", []):
            fund_and_supply(account_address(lender["label"]), base, float(lender["amount"]))
        reserves = _raw(float(config.get("reserves", 0)), decimals[base])
        if reserves:  # reserves are base held beyond what lenders supplied
            ctx.transact(token(base).get_function_by_signature(MINT)(comet.address, reserves), what="comet reserves")
        for n, borrower in enumerate(config.get("borrowers", [])):
            self._open_borrow(ctx, comet, config, f"{where}.borrowers[{n}]", borrower, fund_and_supply)
        seed_bulk(ctx, name, config, deployment)

    def _open_borrow(self, ctx: DevnetContext, comet, config: dict, where: str, borrower: dict,
                     fund_and_supply) -> None:
        account = account_address(borrower["label"])
        health = float(borrower["health"])
        if health <= 1.0:
            raise ContagionError(f"{ctx.scenario.path.name}: {where}.health: must be above 1 (got {health})")
        covered_usd = capacity_usd = 0.0
        for symbol, amount in borrower["collateral"].items():
            spec = config["collaterals"].get(symbol)
            if spec is None:
                raise ContagionError(f"{ctx.scenario.path.name}: {where}: {symbol} is not a comet collateral")
            fund_and_supply(account, symbol, float(amount))
            value = float(amount) * collateral_asset(ctx, symbol, spec, where)[3]
            covered_usd += value * spec["liquidate_collateral_factor"]
            capacity_usd += value * spec["borrow_collateral_factor"]
        base = config["base"]
        debt_raw = _raw(covered_usd / health / ctx.scenario.assets[base].price_usd, ctx.scenario.assets[base].decimals)
        ctx.fund_eth(account, 10**19)
        ctx.impersonate(account)
        raise_by = (covered_usd / health) / capacity_usd * 1.002
        # a receipt collateral is priced by its underlying's feed: raise that one
        feeds = [collateral_asset(ctx, s, config["collaterals"][s], where)[1] for s in borrower["collateral"]]
        with prices_raised(ctx, feeds, max(raise_by, 1.0)):
            ctx.transact(comet.functions.withdraw(ctx.book["tokens"][base], debt_raw), sender=account,
                         what=f"comet borrow for {borrower['label']}")


AAVE_SUPPLY_ABI = [
    {"type": "function", "name": "supply", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [{"type": "address", "name": "asset"}, {"type": "uint256", "name": "amount"},
                {"type": "address", "name": "onBehalfOf"}, {"type": "uint16", "name": "referralCode"}]},
]


def devnet_token_abi() -> list:
    """The devnet tokens' ABI (as deployed by analyzer.devnet.build)."""
    from analyzer.devnet.build import TOKEN
    from analyzer.devnet.solc import fixture_artifact

    return fixture_artifact(*TOKEN)["abi"]
