"""The Uniswap V2 and StableSwap devnet parts: a scenario's pairs and pools deployed from their
bytecode on a chain with the devnet's tokens and feeds, seeded at the feed prices, and read back."""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.context import DevnetContext
from analyzer.model import Snapshot
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.stableswap.devnet import StableSwapDevnet
from protocols.stableswap.reader import StableSwapReader
from protocols.uniswap_v2.devnet import UniswapV2Devnet
from protocols.uniswap_v2.reader import UniswapV2Reader
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]


def test_scenario_pairs_and_pools_are_deployed_seeded_and_read_at_the_feed_prices(chain_checkpoint):
    from analyzer.engine.impact import build_venues

    devnet = chain_checkpoint
    w3 = devnet.w3
    spec = scenario_mod.load("mainnet-like")
    spec = dataclasses.replace(spec, protocols={**spec.protocols, "uniswap-v2": {
        "pairs": [{"asset": "WETH", "quote": "USDC", "tvl_usd": 20_000_000}]}, "stableswap": {
        "pools": [{"coins": ["WETH", "wstETH"], "A": 50, "fee": 0.0004, "admin_fee": 0.5, "tvl_usd": 40_000_000},
                  {"coins": ["USDC", "USDT", "DAI"], "A": 2000, "fee": 0.0001, "admin_fee": 0.5,
                   "tvl_usd": 60_000_000}]}})
    ctx = DevnetContext(w3, w3.eth.accounts[0], spec, book=devnet.book)
    books = {}
    for part in (UniswapV2Devnet(), StableSwapDevnet()):
        markets = part.deploy(ctx)                  # {market name: deployment}
        part.seed(ctx, markets)
        (books[part.protocol],) = markets.values()
    block = w3.eth.block_number
    tokens = devnet.book["tokens"]
    read = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [],
                       assets=tuple(tokens.values()))
    rows = UniswapV2Reader(read, books["uniswap-v2"]).read_markets()["venues"]
    rows += StableSwapReader(read, books["stableswap"]).read_markets()["venues"]
    assets = [{"address": a, "symbol": s, "decimals": devnet.book["decimals"][s], "price_usd": 1.0}
              for s, a in tokens.items()]
    venues = build_venues(Snapshot(meta={"chain_id": 31337, "block_number": block}, assets=assets, venues=rows))
    symbol = {a: s for s, a in tokens.items()}
    by_pair = {(symbol[v.asset], symbol[v.quote], v.model): v for av in venues.values() for v in av.venues}
    # the devnet's feeds: WETH 3000, wstETH 3500, stablecoins 1 (fixtures/scenarios/mainnet-like.toml)
    feeds = {s: spec.assets[s].price_usd for s in ("WETH", "wstETH", "USDT", "DAI")}
    assert by_pair[("WETH", "USDC", "uniswap_v2")].mid_price() == pytest.approx(feeds["WETH"], rel=1e-9)
    assert by_pair[("wstETH", "WETH", "stableswap")].mid_price() == pytest.approx(feeds["wstETH"] / feeds["WETH"],
                                                                               rel=1e-9)
    for stable in ("USDT", "DAI"):
        assert by_pair[(stable, "USDC", "stableswap")].mid_price() == pytest.approx(1.0, rel=1e-9)
