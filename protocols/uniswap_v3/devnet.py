"""Uniswap V3 on the devnet: the real factory, SwapRouter and NonfungiblePositionManager bytecode
(@uniswap/v3-core 1.0.1, @uniswap/v3-periphery 1.4.4), one pool per scenario pair, liquidity in
nested ranges (deep near the price, thin in the tails).

Scenario section::

    [protocols.uniswap-v3]
    lp = "uniswap-lp"                # account label holding the positions (tokens minted to it)
    ranges = [[0.005, 0.25], [0.02, 0.30], [0.08, 0.20], [0.25, 0.15], [1.0, 0.10]]
    pools = [{ asset = "WETH", quote = "USDC", fee = 500, tvl_usd = 40_000_000 }, ...]

``ranges``: [half width as a fraction of the price, share of the pool's ``tvl_usd``]; a half width
>= 1 means the full tick range (:mod:`analyzer.amm.layout`). Each range is one position valued ``share * tvl_usd`` at the start
price. Start prices are the devnet PriceFeeds' answers (``latestAnswer``, 8 decimals), so pool and
oracle prices agree at start to the precision of a Q64.96 square root.

The npm v3-core pool bytecode hashes to the ``POOL_INIT_CODE_HASH`` baked in the periphery's
PoolAddress library (0xe34f…8b54, checked in tests), so the router and position manager find the
pools the factory creates.
"""

from __future__ import annotations

import math
from typing import Any

from analyzer.amm.layout import (
    amounts_per_liquidity,
    liquidity_for_value,
    liquidity_ranges,
    range_ticks,
    sqrt_price_x96_of,
)
from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.feeds import feed_price
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from protocols.base import Devnet, pool_tables

FEE_TICK_SPACING = {100: 1, 500: 10, 3000: 60, 10000: 200}   # UniswapV3Factory constructor + enableFeeAmount(100, 1)
MAX_UINT256 = (1 << 256) - 1
DEADLINE = (1 << 64)


def position_amounts(sqrt_price_x96: int, lower: int, upper: int, value_usd: float, price0_usd: float,
                     price1_usd: float, decimals0: int, decimals1: int) -> tuple[int, int]:
    """Token wei of a position on [lower, upper] worth ``value_usd`` at the current price
    (LiquidityAmounts.getAmountsForLiquidity with L solved from the value), a wei more of each so
    that the position manager's mint never lacks one."""
    per_l0, per_l1 = amounts_per_liquidity(sqrt_price_x96, lower, upper)
    liquidity = liquidity_for_value(sqrt_price_x96, lower, upper, value_usd, price0_usd, price1_usd, decimals0,
                                    decimals1)
    return math.ceil(liquidity * per_l0) + 1, math.ceil(liquidity * per_l1) + 1


def pool_specs(ctx: DevnetContext) -> tuple[list[dict[str, Any]], list[tuple[float, float]], str]:
    """The validated scenario section: pools, ranges, LP label."""
    section = ctx.scenario.protocol("uniswap-v3")
    where = f"{ctx.scenario.path.name}: protocols.uniswap-v3"
    ranges = liquidity_ranges(section.get("ranges", [[0.005, 0.25], [0.02, 0.30], [0.08, 0.20], [0.25, 0.15], [1.0, 0.10]]),
                              where)
    pools = pool_tables(ctx, "uniswap-v3", "pools")
    for i, pool in enumerate(pools):
        at = f"{where}.pools[{i}]"
        if pool.get("fee") not in FEE_TICK_SPACING:
            raise ContagionError(f"{at}.fee: expected one of {sorted(FEE_TICK_SPACING)} (pips), got {pool.get('fee')!r}")
        tvl = pool.get("tvl_usd")
        if isinstance(tvl, bool) or not isinstance(tvl, int | float) or not tvl > 0:
            raise ContagionError(f"{at}.tvl_usd: expected a positive number, got {tvl!r}")
    return pools, ranges, str(section.get("lp", "uniswap-lp"))


class UniswapV3Devnet(Devnet):
    protocol = "uniswap-v3"

    MARKET = "Uniswap V3"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        pools, _, _ = pool_specs(ctx)
        factory = ctx.deploy(npm_artifact("@uniswap/v3-core", "UniswapV3Factory"))
        # the 0.01% tier exists on mainnet since governance enabled it; the bytecode starts with 3 tiers
        ctx.transact(factory.functions.enableFeeAmount(100, 1), what="UniswapV3Factory.enableFeeAmount(100, 1)")
        weth = ctx.book["tokens"].get("WETH")
        if weth is None:
            raise ContagionError(f"{ctx.scenario.path.name}: uniswap-v3 needs a WETH asset (SwapRouter's WETH9)")
        router = ctx.deploy(npm_artifact("@uniswap/v3-periphery", "SwapRouter"), factory.address, weth)
        # the token descriptor only renders NFT metadata (tokenURI), which nothing here reads
        manager = ctx.deploy(npm_artifact("@uniswap/v3-periphery", "NonfungiblePositionManager"),
                             factory.address, weth, ctx.deployer)
        tokens = ctx.book["tokens"]
        entries = []
        for spec in pools:
            asset, quote = tokens[spec["asset"]], tokens[spec["quote"]]
            asset_is_token0 = int(asset, 16) < int(quote, 16)
            sqrt_price = self._start_sqrt_price(ctx, spec, asset_is_token0)
            token0, token1 = (asset, quote) if asset_is_token0 else (quote, asset)
            ctx.transact(manager.functions.createAndInitializePoolIfNecessary(token0, token1, spec["fee"], sqrt_price),
                         what=f"create pool {spec['asset']}/{spec['quote']}")
            pool = factory.functions.getPool(token0, token1, spec["fee"]).call()
            entries.append({"name": f"{spec['asset']}/{spec['quote']} {spec['fee'] / 1e4:g}%", "pool": pool,
                            "asset": asset, "quote": quote, "fee": spec["fee"]})
        return {"factory": factory.address, "router": router.address, "position_manager": manager.address,
                "pools": entries}

    def _start_sqrt_price(self, ctx: DevnetContext, spec: dict, asset_is_token0: bool) -> int:
        decimals = ctx.book["decimals"]
        return sqrt_price_x96_of(feed_price(ctx, spec["asset"]), feed_price(ctx, spec["quote"]),
                                 decimals[spec["asset"]], decimals[spec["quote"]], asset_is_token0)

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        pools, ranges, lp_label = pool_specs(ctx)
        lp = account_address(lp_label)
        ctx.impersonate(lp)
        ctx.fund_eth(lp, 10**21)
        manager = ctx.contract(deployment["position_manager"],
                               npm_artifact("@uniswap/v3-periphery", "NonfungiblePositionManager")["abi"])
        token_abi = npm_artifact("@aave/core-v3", "MintableERC20")["abi"]
        pool_abi = npm_artifact("@uniswap/v3-core", "UniswapV3Pool")["abi"]
        symbol_of = {address: symbol for symbol, address in ctx.book["tokens"].items()}
        approved: set[str] = set()
        for spec, entry in zip(pools, deployment["pools"], strict=True):
            pool = ctx.contract(entry["pool"], pool_abi)
            token0, token1 = pool.functions.token0().call(), pool.functions.token1().call()
            spacing = pool.functions.tickSpacing().call()
            sqrt_price = pool.functions.slot0().call()[0]
            sym0, sym1 = symbol_of[token0], symbol_of[token1]
            price0, price1 = float(feed_price(ctx, sym0)), float(feed_price(ctx, sym1))
            dec0, dec1 = ctx.book["decimals"][sym0], ctx.book["decimals"][sym1]
            for half_width, share in ranges:
                lower, upper = range_ticks(sqrt_price, half_width, spacing)
                amount0, amount1 = position_amounts(sqrt_price, lower, upper, share * spec["tvl_usd"], price0, price1,
                                                    dec0, dec1)
                for token, amount in ((token0, amount0), (token1, amount1)):
                    erc20 = ctx.contract(token, token_abi)
                    ctx.transact(erc20.functions.mint(lp, amount), sender=ctx.deployer, what=f"mint {symbol_of[token]}")
                    if token not in approved:
                        ctx.transact(erc20.functions.approve(manager.address, MAX_UINT256), sender=lp,
                                     what=f"approve {symbol_of[token]} to the position manager")
                        approved.add(token)
                params = (token0, token1, spec["fee"], lower, upper, amount0, amount1, 0, 0, lp, DEADLINE)
                ctx.transact(manager.functions.mint(params), sender=lp,
                             what=f"mint position {entry['name']} [{lower}, {upper}]")
