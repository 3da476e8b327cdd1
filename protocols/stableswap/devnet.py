"""StableSwap pools on the devnet: our fixture contract (fixtures/contracts/stableswap), one pool
per scenario entry, seeded balanced at the devnet's feed prices with ``add_liquidity``.

Scenario section (optional)::

    [protocols.stableswap]
    lp = "stableswap-lp"
    pools = [{ coins = ["WETH", "wstETH"], A = 50, fee = 0.0004, admin_fee = 0.5, tvl_usd = 40_000_000 },
             { coins = ["USDC", "USDT", "DAI"], A = 2000, fee = 0.0001, admin_fee = 0.5, tvl_usd = 60_000_000 }]

The first coin is the pool's quote. A coin's rate is ``10**(36 − decimals)`` times its feed price
over the first coin's (1e18 for a stablecoin against a stablecoin; wstETH's ETH-per-token for an
LST against WETH), as Curve's pools scale an LST by its redemption rate.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.feeds import feed_price
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from protocols.base import Devnet

MAX_UINT256 = (1 << 256) - 1


def pool_specs(ctx: DevnetContext) -> tuple[list[dict[str, Any]], str]:
    section = ctx.scenario.protocol("stableswap")
    where = f"{ctx.scenario.path.name}: protocols.stableswap"
    pools = section.get("pools", [])
    if not isinstance(pools, list):
        raise ContagionError(f"{where}.pools: expected an array of tables")
    for i, pool in enumerate(pools):
        at = f"{where}.pools[{i}]"
        coins = pool.get("coins") if isinstance(pool, dict) else None
        if not isinstance(coins, list) or not 2 <= len(coins) <= 4 or len(set(coins)) != len(coins):
            raise ContagionError(f"{at}.coins: expected 2 to 4 different asset symbols")
        for coin in coins:
            ctx.scenario.asset(coin, f"{at}.coins")
        for key, low, high in (("A", 1, 10**6), ("fee", 0, 0.5), ("admin_fee", 0, 1), ("tvl_usd", 0, float("inf"))):
            value = pool.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ContagionError(f"{at}.{key}: expected a number within [{low}, {high}], got {value!r}")
    return pools, str(section.get("lp", "stableswap-lp"))


class StableSwapDevnet(Devnet):
    protocol = "stableswap"

    MARKET = "StableSwap"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        pools, _ = pool_specs(ctx)
        artifact = fixture_artifact("stableswap", "StableSwap")
        tokens, decimals = ctx.book["tokens"], ctx.book["decimals"]
        entries = []
        for spec in pools:
            base = feed_price(ctx, spec["coins"][0])
            rates = [10 ** (36 - decimals[c]) * math.floor(feed_price(ctx, c) / base * 10**18) // 10**18
                     for c in spec["coins"]]
            pool = ctx.deploy(artifact, [tokens[c] for c in spec["coins"]], rates, int(spec["A"]),
                              round(spec["fee"] * 10**10), round(spec["admin_fee"] * 10**10))
            entries.append({"name": "/".join(spec["coins"]) + " stableswap", "pool": pool.address,
                            "coins": [tokens[c] for c in spec["coins"]], "rates": [str(r) for r in rates]})
        return {"pools": entries}

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        pools, lp_label = pool_specs(ctx)
        lp = account_address(lp_label)
        ctx.impersonate(lp)
        ctx.fund_eth(lp, 10**21)
        token_abi = npm_artifact("@aave/core-v3", "MintableERC20")["abi"]
        pool_abi = fixture_artifact("stableswap", "StableSwap")["abi"]
        decimals = ctx.book["decimals"]
        for spec, entry in zip(pools, deployment["pools"], strict=True):
            amounts = []
            for coin, address in zip(spec["coins"], entry["coins"], strict=True):
                # an equal share of the pool's value in each coin, at the feed price
                amount = int(Fraction(spec["tvl_usd"]) / len(spec["coins"]) / feed_price(ctx, coin) * 10 ** decimals[coin])
                erc20 = ctx.contract(address, token_abi)
                ctx.transact(erc20.functions.mint(lp, amount), sender=ctx.deployer, what=f"mint {coin}")
                ctx.transact(erc20.functions.approve(entry["pool"], MAX_UINT256), sender=lp, what=f"approve {coin}")
                amounts.append(amount)
            ctx.transact(ctx.contract(entry["pool"], pool_abi).functions.add_liquidity(amounts, 0), sender=lp,
                         what=f"add liquidity to {entry['name']}")
