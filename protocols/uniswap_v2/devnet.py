"""Uniswap V2 on the devnet: the real ``UniswapV2Factory`` and ``UniswapV2Pair`` bytecode
(@uniswap/v2-core 1.0.1 build/), one pair per scenario entry, seeded at the devnet's feed prices.

Scenario section (optional: without it the factory is deployed with no pair)::

    [protocols.uniswap-v2]
    lp = "uniswap-v2-lp"             # account label that receives the LP tokens
    pairs = [{ asset = "WETH", quote = "USDC", tvl_usd = 20_000_000 }, ...]

Each pair holds ``tvl_usd`` split half and half at the PriceFeeds' answers (``latestAnswer``, 8
decimals), minted to the pair and registered with ``UniswapV2Pair.mint`` (what a router's
``addLiquidity`` does). The address book lists the pairs and the quote assets the reader looks up.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.feeds import feed_price
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from protocols.base import STABLE_SYMBOLS, Devnet, pool_tables

QUOTE_SYMBOLS = (*STABLE_SYMBOLS, "WETH")   # the reader's quotes, in order of preference


def pair_specs(ctx: DevnetContext) -> tuple[list[dict[str, Any]], str]:
    """The validated scenario section: pairs and the LP label."""
    section = ctx.scenario.protocol("uniswap-v2")
    where = f"{ctx.scenario.path.name}: protocols.uniswap-v2"
    pairs = pool_tables(ctx, "uniswap-v2", "pairs")
    for i, pair in enumerate(pairs):
        at = f"{where}.pairs[{i}]"
        tvl = pair.get("tvl_usd")
        if isinstance(tvl, bool) or not isinstance(tvl, int | float) or not tvl > 0:
            raise ContagionError(f"{at}.tvl_usd: expected a positive number, got {tvl!r}")
    return pairs, str(section.get("lp", "uniswap-v2-lp"))


class UniswapV2Devnet(Devnet):
    protocol = "uniswap-v2"

    MARKET = "Uniswap V2"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        pairs, _ = pair_specs(ctx)
        factory = ctx.deploy(npm_artifact("@uniswap/v2-core", "UniswapV2Factory"), ctx.deployer)
        tokens = ctx.book["tokens"]
        entries = []
        for spec in pairs:
            asset, quote = tokens[spec["asset"]], tokens[spec["quote"]]
            ctx.transact(factory.functions.createPair(asset, quote), what=f"createPair {spec['asset']}/{spec['quote']}")
            entries.append({"name": f"{spec['asset']}/{spec['quote']} V2", "asset": asset, "quote": quote,
                            "pair": factory.functions.getPair(asset, quote).call()})
        return {"factory": factory.address, "pairs": entries,
                "quotes": [tokens[s] for s in QUOTE_SYMBOLS if s in tokens]}

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        pairs, lp_label = pair_specs(ctx)
        lp = account_address(lp_label)
        token_abi = npm_artifact("@aave/core-v3", "MintableERC20")["abi"]
        pair_abi = npm_artifact("@uniswap/v2-core", "UniswapV2Pair")["abi"]
        decimals = ctx.book["decimals"]
        for spec, entry in zip(pairs, deployment["pairs"], strict=True):
            for symbol in (spec["asset"], spec["quote"]):
                # half the pair's value on each side, at the feed price
                amount = int(Fraction(spec["tvl_usd"]) / 2 / feed_price(ctx, symbol) * 10 ** decimals[symbol])
                erc20 = ctx.contract(ctx.book["tokens"][symbol], token_abi)
                ctx.transact(erc20.functions.mint(entry["pair"], amount), sender=ctx.deployer,
                             what=f"mint {symbol} to {entry['name']}")
            ctx.transact(ctx.contract(entry["pair"], pair_abi).functions.mint(lp), what=f"mint {entry['name']} LP")
