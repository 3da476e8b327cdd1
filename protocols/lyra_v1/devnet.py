"""Lyra V1 (Avalon) on the devnet: the real contracts of ``@lyrafinance/protocol`` 0.1.3-alpha.

Mirrors the package's own test deployer (``dist/test/utils/deployTestSystem.js``: deployGlobalTestContracts,
deployMarketTestContracts, initGlobalTestSystem, initMarketTestSystem with ``defaultParams.js``) and seeder
(``seedTestSystem.js``: seedLiquidityPool, openShortAccount, hedgeDelta, createOptionBoard), in web3.py.
Synthetix is the package's own test doubles (mockSNX path): TestSynthetixReturnZero, TestExchangeRates,
TestExchanger, TestCollateralShort, TestAddressResolver, TestDelegateApprovals and TestERC20Fail for sUSD
and the synth of the underlying. The synth's spot (``TestExchangeRates.rates``) is set from the devnet
PriceFeed of the underlying (``book["feeds"][underlying]``), and the executor moves both, so one shock moves
the lending protocols and the option market together.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from protocols.base import Devnet
from protocols.lyra_v1.params import (
    DAY,
    FEE_RATE_FOR_BASE,
    FEE_RATE_FOR_QUOTE,
    FORCE_CLOSE_PARAMS,
    GREEK_CACHE_PARAMS,
    LIQUIDITY_POOL_PARAMS,
    MAX_UINT,
    MIN_COLLATERAL_PARAMS,
    OPTION_MARKET_PARAMS,
    OPTION_TYPES,
    PARTIAL_COLLATERAL_PARAMS,
    POOL_HEDGER_PARAMS,
    PRICING_PARAMS,
    SECURITY_MODULE,
    SHORT_BUFFER,
    TRADE_LIMIT_PARAMS,
    UNIT,
    VARIANCE_FEE_PARAMS,
    wad,
)

PACKAGE = "@lyrafinance/protocol"


def bytes32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


def artifact(name: str) -> dict:
    return npm_artifact(PACKAGE, name, "dist/artifacts/contracts")


def feed_spot_wad(ctx_or_w3: Any, feed: str) -> int:
    """The PriceFeed's answer (8 decimals) as an 18-decimal spot, the unit of Synthetix rates."""
    w3 = getattr(ctx_or_w3, "w3", ctx_or_w3)
    abi = [{"name": "latestAnswer", "type": "function", "stateMutability": "view", "inputs": [],
            "outputs": [{"name": "", "type": "int256"}]}]
    return int(w3.eth.contract(address=feed, abi=abi).functions.latestAnswer().call()) * 10**10


class LyraDevnet(Devnet):
    """Deploys one Lyra V1 market (sUSD / s<underlying>) and seeds LPs, boards and traders."""

    protocol = "lyra-v1"

    MARKET = "Avalon"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        spec = ctx.scenario.protocol(self.protocol)
        underlying = str(spec.get("underlying", "WETH"))
        if underlying not in ctx.book.get("feeds", {}):
            raise ContagionError(f"scenario [protocols.lyra-v1].underlying: {underlying!r} has no devnet price feed")
        market_key = "s" + underlying.removeprefix("W")
        tx = ctx.transact
        # --- globals: libraries, adapter, viewer, registry (deployGlobalTestContracts) ---
        gwav = ctx.deploy(artifact("GWAV"))
        black_scholes = ctx.deploy(artifact("BlackScholes"))
        adapter = ctx.deploy(artifact("SynthetixAdapter"))
        tx(adapter.functions.initialize(), what="SynthetixAdapter.initialize")
        viewer = ctx.deploy(artifact("OptionMarketViewer"))
        registry = ctx.deploy(artifact("LyraRegistry"))
        # --- Synthetix test doubles (deployMockGlobalSNX) ---
        exchanger = ctx.deploy(artifact("TestExchanger"))
        rates = ctx.deploy(artifact("TestExchangeRates"))
        quote = ctx.deploy(artifact("TestERC20Fail"), "Synthetic USD", "sUSD")
        synthetix = ctx.deploy(artifact("TestSynthetixReturnZero"))
        delegate_approvals = ctx.deploy(artifact("TestDelegateApprovals"))
        collateral_short = ctx.deploy(artifact("TestCollateralShort"))
        resolver = ctx.deploy(artifact("TestAddressResolver"))
        # --- the market (deployMarketTestContracts) ---
        libs = {"GWAV": gwav.address, "BlackScholes": black_scholes.address}
        market = ctx.deploy(artifact("OptionMarket"))
        pricer = ctx.deploy(artifact("OptionMarketPricer"))
        greek_cache = ctx.deploy(artifact("OptionGreekCache"), libraries=libs)
        pool = ctx.deploy(artifact("LiquidityPool"))
        lp_token = ctx.deploy(artifact("LiquidityToken"), f"sUSD/{market_key} Pool Tokens", "LyraELPT")
        option_token = ctx.deploy(artifact("OptionToken"), f"sUSD/{market_key} Option Tokens", "LyraEOT")
        short_collateral = ctx.deploy(artifact("ShortCollateral"))
        hedger = ctx.deploy(artifact("ShortPoolHedger"))
        gwav_oracle = ctx.deploy(artifact("GWAVOracle"), libraries={"BlackScholes": black_scholes.address})
        base = ctx.deploy(artifact("TestERC20Fail"), f"Synthetic {market_key[1:]}", market_key)
        # --- initGlobalTestSystem ---
        names = [bytes32(n) for n in ("ProxySynthetix", "Exchanger", "ExchangeRates", "CollateralShort",
                                      "DelegateApprovals")]
        targets = [synthetix.address, exchanger.address, rates.address, collateral_short.address,
                   delegate_approvals.address]
        tx(synthetix.functions.init(adapter.address, quote.address, resolver.address))
        tx(collateral_short.functions.init(adapter.address, quote.address))
        tx(resolver.functions.setAddresses(names, targets))
        tx(quote.functions.permitMint(synthetix.address, True))
        tx(quote.functions.permitMint(collateral_short.address, True))
        tx(adapter.functions.setAddressResolver(resolver.address))
        tx(adapter.functions.updateSynthetixAddresses())
        tx(viewer.functions.init(adapter.address))
        tx(registry.functions.updateGlobalAddresses(
            [bytes32(n) for n in ("SYNTHETIX_ADAPTER", "MARKET_VIEWER", "GWAV", "BLACK_SCHOLES")],
            [adapter.address, viewer.address, gwav.address, black_scholes.address]))
        # --- initMarketTestSystem ---
        key = bytes32(market_key)
        tx(synthetix.functions.addBaseAsset(key, base.address, market.address))
        tx(collateral_short.functions.addBaseAsset(key, base.address, market.address))
        tx(base.functions.permitMint(synthetix.address, True))
        tx(base.functions.permitMint(collateral_short.address, True))
        tx(market.functions.init(adapter.address, pool.address, pricer.address, greek_cache.address,
                                 short_collateral.address, option_token.address, quote.address, base.address))
        tx(market.functions.setOptionMarketParams(OPTION_MARKET_PARAMS))
        tx(pricer.functions.init(market.address, greek_cache.address))
        tx(greek_cache.functions.init(adapter.address, market.address, pricer.address))
        tx(pool.functions.init(adapter.address, market.address, lp_token.address, greek_cache.address,
                               hedger.address, short_collateral.address, quote.address, base.address))
        tx(lp_token.functions.init(pool.address))
        tx(hedger.functions.init(adapter.address, market.address, greek_cache.address, pool.address,
                                 quote.address, base.address))
        tx(short_collateral.functions.init(market.address, pool.address, option_token.address, adapter.address,
                                           quote.address, base.address))
        tx(option_token.functions.init(market.address, greek_cache.address, short_collateral.address,
                                       adapter.address))
        tx(adapter.functions.setGlobalsForContract(market.address, bytes32("sUSD"), key, SECURITY_MODULE,
                                                   bytes32("")))
        tx(gwav_oracle.functions.init(market.address, greek_cache.address, adapter.address))
        addresses = {
            "liquidityPool": pool.address, "liquidityToken": lp_token.address, "greekCache": greek_cache.address,
            "optionMarket": market.address, "optionMarketPricer": pricer.address,
            "optionToken": option_token.address, "poolHedger": hedger.address,
            "shortCollateral": short_collateral.address, "baseAsset": base.address, "quoteAsset": quote.address}
        tx(viewer.functions.addMarket(addresses))
        tx(registry.functions.addMarket({**addresses, "gwavOracle": gwav_oracle.address}))
        tx(pool.functions.setLiquidityPoolParameters(LIQUIDITY_POOL_PARAMS))
        tx(hedger.functions.setPoolHedgerParams(POOL_HEDGER_PARAMS))
        tx(hedger.functions.setShortBuffer(SHORT_BUFFER))
        tx(greek_cache.functions.setGreekCacheParameters(GREEK_CACHE_PARAMS))
        tx(greek_cache.functions.setMinCollateralParameters(MIN_COLLATERAL_PARAMS))
        tx(greek_cache.functions.setForceCloseParameters(FORCE_CLOSE_PARAMS))
        tx(pricer.functions.setPricingParams(PRICING_PARAMS))
        tx(pricer.functions.setTradeLimitParams(TRADE_LIMIT_PARAMS))
        tx(pricer.functions.setVarianceFeeParams(VARIANCE_FEE_PARAMS))
        tx(option_token.functions.setPartialCollateralParams(PARTIAL_COLLATERAL_PARAMS))
        tx(exchanger.functions.setFeeRateForExchange(key, bytes32("sUSD"), FEE_RATE_FOR_BASE))
        tx(exchanger.functions.setFeeRateForExchange(bytes32("sUSD"), key, FEE_RATE_FOR_QUOTE))
        feed = ctx.book["feeds"][underlying]
        tx(rates.functions.setRateAndInvalid(key, feed_spot_wad(ctx, feed), False))
        return {
            "underlying": underlying, "underlying_token": ctx.book["tokens"][underlying], "feed": feed,
            "market_key": market_key, "owner": ctx.deployer, "security_module": SECURITY_MODULE,
            "markets": [{**addresses, "gwavOracle": gwav_oracle.address}],
            "synthetixAdapter": adapter.address, "optionMarketViewer": viewer.address,
            "lyraRegistry": registry.address, "blackScholes": black_scholes.address, "gwav": gwav.address,
            "exchangeRates": rates.address, "exchanger": exchanger.address, "synthetix": synthetix.address,
            "collateralShort": collateral_short.address, "addressResolver": resolver.address,
            "delegateApprovals": delegate_approvals.address,
        }

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        """LP deposits, the hedger's short account, the boards, then random trades (seeded by the scenario)
        with short collateral a chosen margin above ``getMinCollateral``; finally a cache update and a hedge."""
        spec = ctx.scenario.protocol(self.protocol)
        m = deployment["markets"][0]
        c = {name: ctx.contract(m[name], artifact(art)["abi"]) for name, art in (
            ("optionMarket", "OptionMarket"), ("liquidityPool", "LiquidityPool"), ("quoteAsset", "TestERC20Fail"),
            ("baseAsset", "TestERC20Fail"), ("poolHedger", "ShortPoolHedger"), ("greekCache", "OptionGreekCache"))}
        tx = ctx.transact
        for label, amount in spec.get("lps", []):
            lp = account_address(label)
            self._fund(ctx, c, lp, wad(amount), 0)
            tx(c["liquidityPool"].functions.initiateDeposit(lp, wad(amount)), sender=lp, what=f"LP deposit {label}")
        tx(c["poolHedger"].functions.openShortAccount(), what="ShortPoolHedger.openShortAccount")
        now = ctx.w3.eth.get_block("latest")["timestamp"]
        for board in board_specs(spec):
            tx(c["optionMarket"].functions.createOptionBoard(
                now + round(float(board["expiry_days"]) * DAY), wad(board["base_iv"]),
                [wad(k) for k in board["strikes"]], [wad(s) for s in board["skews"]], False),
                what="OptionMarket.createOptionBoard")
        board_ids = c["optionMarket"].functions.getLiveBoards().call()
        strikes = [(b, s) for b in board_ids for s in c["optionMarket"].functions.getBoardStrikes(b).call()]
        traders = trader_addresses(spec)
        for trader in traders:
            self._fund(ctx, c, trader, wad(spec.get("trader_quote", 1_000_000)), wad(spec.get("trader_base", 1_000)))
        deployment["seed_trades"], deployment["seed_skipped"] = self._trade(
            ctx, c, spec, strikes, traders, feed_spot_wad(ctx, deployment["feed"]))
        for board_id in board_ids:
            tx(c["greekCache"].functions.updateBoardCachedGreeks(board_id), what="updateBoardCachedGreeks")
        tx(c["poolHedger"].functions.hedgeDelta(), what="ShortPoolHedger.hedgeDelta")
        deployment["traders"] = traders

    @staticmethod
    def _fund(ctx: DevnetContext, c: dict, account: str, quote_wad: int, base_wad: int) -> None:
        ctx.impersonate(account)
        ctx.fund_eth(account, 100 * UNIT)
        for token, amount in (("quoteAsset", quote_wad), ("baseAsset", base_wad)):
            if amount:
                ctx.transact(c[token].functions.mint(account, amount), what=f"mint {token}")
            for spender in (c["optionMarket"].address, c["liquidityPool"].address):
                ctx.transact(c[token].functions.approve(spender, MAX_UINT), sender=account, what="approve")

    @staticmethod
    def _trade(ctx: DevnetContext, c: dict, spec: dict, strikes: list, traders: list[str],
               spot_wad: int) -> tuple[int, int]:
        rng = random_generator(ctx.scenario.seed)
        kinds = list(spec.get("trade_kinds", list(OPTION_TYPES)))
        unknown = sorted(set(kinds) - set(OPTION_TYPES))
        if unknown:
            raise ContagionError(f"scenario [protocols.lyra-v1].trade_kinds: unknown {unknown[0]!r} "
                                 f"(known: {', '.join(OPTION_TYPES)})")
        if int(spec.get("trades", 0)) > 0 and not traders:
            raise ContagionError("scenario [protocols.lyra-v1]: trades > 0 needs traders > 0")
        margins = [float(x) for x in spec.get("short_collateral_margins", [1.05, 1.15, 1.3, 1.6, 2.5])]
        size_low, size_high = (float(x) for x in spec.get("size_range", [0.5, 6.0]))
        market, cache = c["optionMarket"].functions, c["greekCache"].functions
        done = skipped = 0
        for i in range(int(spec.get("trades", 0))):
            trader = traders[i % len(traders)]
            board_id, strike_id = strikes[int(rng.integers(len(strikes)))]
            kind = kinds[int(rng.integers(len(kinds)))]
            amount = wad(round(float(rng.uniform(size_low, size_high)), 2))
            margin = margins[int(rng.integers(len(margins)))]
            option_type = OPTION_TYPES[kind]
            collateral = 0
            if kind.startswith("short"):
                strike, board = market.getStrikeAndBoard(strike_id).call()
                minimum = cache.getMinCollateral(option_type, strike[1], board[1], spot_wad, amount).call()
                collateral = int(minimum * margin)
            trade = {"strikeId": strike_id, "positionId": 0, "iterations": 1, "optionType": option_type,
                     "amount": amount, "setCollateralTo": collateral, "minTotalCost": 0, "maxTotalCost": MAX_UINT}
            try:
                ctx.transact(market.openPosition(trade), sender=trader, what="openPosition")
                done += 1
            except ContagionError:
                # a trade the AMM refuses (delta or vol bounds after earlier trades): the scenario goes on
                skipped += 1
        if done == 0:
            raise ContagionError("scenario [protocols.lyra-v1]: no trade could be opened")
        return done, skipped


def board_specs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The scenario's boards: ``{expiry_days, base_iv, strikes, skews}`` each, checked."""
    boards = spec.get("boards") or []
    if not isinstance(boards, list) or not boards:
        raise ContagionError("scenario [protocols.lyra-v1].boards: expected a list of board tables")
    for i, board in enumerate(boards):
        where = f"scenario [protocols.lyra-v1].boards[{i}]"
        strikes, skews = board.get("strikes"), board.get("skews")
        if not strikes or not skews or len(strikes) != len(skews):
            raise ContagionError(f"{where}: strikes and skews must be lists of the same length")
        if not 0 < float(board.get("base_iv", 0)) <= 2 or float(board.get("expiry_days", 0)) <= 1:
            raise ContagionError(f"{where}: expected base_iv in (0, 2] and expiry_days > 1")
    return boards


def trader_addresses(spec: dict[str, Any]) -> list[str]:
    return [account_address(f"{spec.get('trader_prefix', 'lyra-trader')}-{i}")
            for i in range(int(spec.get("traders", 0)))]


def random_generator(seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, 0x1F4A])
