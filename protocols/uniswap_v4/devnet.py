"""Uniswap V4 on the devnet: the real PoolManager singleton (@uniswap/v4-core 1.0 forge build), our
unlock-callback router, one pool per scenario entry (no hooks), liquidity in nested ranges as the
Uniswap V3 devnet lays it out (:mod:`analyzer.amm.layout`: V4 pools run V3's tick and swap math
inside the singleton).

Scenario section (optional: without it the PoolManager is deployed with no pool)::

    [protocols.uniswap-v4]
    lp = "uniswap-v4-lp"             # account label that adds the liquidity (tokens minted to it)
    ranges = [[0.01, 0.2], [0.3, 0.5], [1.0, 0.3]]   # [half width, share of tvl_usd], as uniswap-v3
    pools = [{ asset = "WETH", quote = "USDC", fee = 500, tick_spacing = 10, tvl_usd = 60_000_000 }]

Pools start at the PriceFeeds' answers (``PoolManager.initialize``); each range is one position
added with ``modifyLiquidity`` through the router, its liquidity solved from its value at the start
price (the router pulls what the PoolManager says is owed).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from analyzer.amm.layout import liquidity_for_value, liquidity_ranges, range_ticks, sqrt_price_x96_of
from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.feeds import feed_price
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from protocols.base import STABLE_SYMBOLS, Devnet, pool_tables
from protocols.uniswap_v4.contracts import pool_id, pool_key, pool_manager_artifact, router_artifact

MAX_UINT256 = (1 << 256) - 1
MAX_LP_FEE = 1_000_000


def pool_specs(ctx: DevnetContext) -> tuple[list[dict[str, Any]], list[tuple[float, float]], str]:
    """The validated scenario section: pools, ranges, LP label."""
    section = ctx.scenario.protocol("uniswap-v4")
    where = f"{ctx.scenario.path.name}: protocols.uniswap-v4"
    ranges = liquidity_ranges(section.get("ranges", [[0.01, 0.2], [0.3, 0.5], [1.0, 0.3]]), where)
    pools = pool_tables(ctx, "uniswap-v4", "pools")
    for i, pool in enumerate(pools):
        at = f"{where}.pools[{i}]"
        fee, spacing = pool.get("fee"), pool.get("tick_spacing")
        if isinstance(fee, bool) or not isinstance(fee, int) or not 0 <= fee < MAX_LP_FEE:
            raise ContagionError(f"{at}.fee: expected pips within 0..999999, got {fee!r}")
        if isinstance(spacing, bool) or not isinstance(spacing, int) or not 1 <= spacing <= 32767:
            raise ContagionError(f"{at}.tick_spacing: expected 1..32767 (TickMath.MAX_TICK_SPACING), got {spacing!r}")
        tvl = pool.get("tvl_usd")
        if isinstance(tvl, bool) or not isinstance(tvl, int | float) or not tvl > 0:
            raise ContagionError(f"{at}.tvl_usd: expected a positive number, got {tvl!r}")
    return pools, ranges, str(section.get("lp", "uniswap-v4-lp"))


class UniswapV4Devnet(Devnet):
    protocol = "uniswap-v4"

    MARKET = "Uniswap V4"   # the devnet's one PoolManager

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        pools, _, _ = pool_specs(ctx)
        manager = ctx.deploy(pool_manager_artifact(), ctx.deployer)
        router = ctx.deploy(router_artifact(), manager.address)
        start_block = ctx.w3.eth.block_number
        tokens, decimals = ctx.book["tokens"], ctx.book["decimals"]
        entries = []
        for spec in pools:
            asset, quote = tokens[spec["asset"]], tokens[spec["quote"]]
            key = pool_key(asset, quote, spec["fee"], spec["tick_spacing"])
            asset_is_token0 = key[0] == asset
            sqrt_price = sqrt_price_x96_of(feed_price(ctx, spec["asset"]),
                                           feed_price(ctx, spec["quote"]),
                                           decimals[spec["asset"]], decimals[spec["quote"]], asset_is_token0)
            ctx.transact(manager.functions.initialize(key, sqrt_price), what=f"initialize {spec['asset']}/{spec['quote']}")
            entries.append({"name": f"{spec['asset']}/{spec['quote']} V4 {spec['fee'] / 1e4:g}%", "pool": pool_id(key),
                            "asset": asset, "quote": quote, "fee": spec["fee"], "tick_spacing": spec["tick_spacing"]})
        return {"pool_manager": manager.address, "router": router.address, "start_block": start_block,
                "quotes": [tokens[s] for s in (*STABLE_SYMBOLS, "WETH") if s in tokens], "pools": entries,
                **({"weth": tokens["WETH"]} if "WETH" in tokens else {})}   # native ETH pools trade as WETH

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        pools, ranges, lp_label = pool_specs(ctx)
        lp = account_address(lp_label)
        ctx.impersonate(lp)
        ctx.fund_eth(lp, 10**21)
        router = ctx.contract(deployment["router"], router_artifact()["abi"])
        manager = ctx.contract(deployment["pool_manager"], pool_manager_artifact()["abi"])
        from protocols.uniswap_v4.executor import slot0
        token_abi = npm_artifact("@aave/core-v3", "MintableERC20")["abi"]
        symbol_of = {address: symbol for symbol, address in ctx.book["tokens"].items()}
        approved: set[str] = set()
        for spec, entry in zip(pools, deployment["pools"], strict=True):
            key = pool_key(entry["asset"], entry["quote"], entry["fee"], entry["tick_spacing"])
            sqrt_price = slot0(ctx.w3, manager.address, entry["pool"])["sqrt_price_x96"]
            sym0, sym1 = symbol_of[key[0]], symbol_of[key[1]]
            price0, price1 = (float(feed_price(ctx, s)) for s in (sym0, sym1))
            dec0, dec1 = ctx.book["decimals"][sym0], ctx.book["decimals"][sym1]
            for token in key[:2]:     # enough for every range (each range's value is a share of tvl_usd)
                erc20 = ctx.contract(token, token_abi)
                price = price0 if token == key[0] else price1
                dec = dec0 if token == key[0] else dec1
                amount = int(Fraction(spec["tvl_usd"] * 2) / Fraction(price) * 10**dec)
                ctx.transact(erc20.functions.mint(lp, amount), sender=ctx.deployer, what=f"mint {symbol_of[token]}")
                if token not in approved:
                    ctx.transact(erc20.functions.approve(router.address, MAX_UINT256), sender=lp,
                                 what=f"approve {symbol_of[token]} to the V4 router")
                    approved.add(token)
            for half_width, share in ranges:
                lower, upper = range_ticks(sqrt_price, half_width, entry["tick_spacing"])
                liquidity = int(liquidity_for_value(sqrt_price, lower, upper, share * spec["tvl_usd"], price0,
                                                    price1, dec0, dec1))
                if liquidity <= 0 or not math.isfinite(liquidity):
                    continue
                ctx.transact(router.functions.modifyLiquidity(key, lower, upper, liquidity), sender=lp,
                             what=f"add liquidity {entry['name']} [{lower}, {upper}]")

