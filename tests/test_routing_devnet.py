"""Routed sales on the devnet's real pools. The engine's split of a sale across an asset's venues
(two Uniswap V3 pools; then every venue kind: V3 fee tiers, a V2 pair, a V4 pool, a StableSwap pool),
executed as one real swap per venue, earns what the engine says within 1e-6, and at least what
the best single venue would."""

from __future__ import annotations

import pytest

from analyzer.books import market_of
from analyzer.cheats import deal
from analyzer.model import Snapshot
from analyzer.multicall import multicall
from analyzer.replay import market_view
from protocols.base import ReadContext
from protocols.uniswap_v3.executor import swap
from protocols.uniswap_v3.reader import UniswapV3Reader
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]


def test_a_routed_sale_equals_its_real_swaps_and_beats_each_pool_alone(chain_checkpoint):
    devnet = chain_checkpoint
    w3, tokens, deployment = devnet.w3, devnet.book["tokens"], market_of(devnet.book, "uniswap-v3")
    block = w3.eth.block_number
    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [])
    rows = UniswapV3Reader(ctx, deployment).read_markets()
    snapshot = Snapshot(meta={"chain_id": 31337, "block_number": block}, assets=rows["assets"],
                        venues=rows["venues"]).validate()
    usdc, weth, wsteth = tokens["USDC"], tokens["WETH"], tokens["wstETH"]
    venues, prices = market_view(snapshot, {usdc: 1.0})
    routed = venues[wsteth]
    size = 0.5 * sum(v.depth(0.05, True) for v in routed.venues)     # a sale that moves both pools ~5%
    split = routed.split(size)
    assert (split > 0).all() and split.sum() == pytest.approx(size, rel=1e-12)
    engine_usd = routed.copy().trade(size).amount_out
    singles = [routed.copy().venues[i].trade(size).amount_out * routed.venues[i].quote_price_usd for i in range(2)]
    assert engine_usd > max(singles)

    trader = w3.eth.accounts[3]
    real_usd = 0.0
    for venue, units in zip(routed.venues, split, strict=True):
        raw = int(units * 10**18)
        deal(w3, wsteth, trader, raw)
        done = swap(w3, deployment["router"], venue.venue, wsteth, raw, trader)
        received = -(done.amount1 if int(wsteth, 16) < int(venue.quote, 16) else done.amount0)
        decimals = 6 if venue.quote == usdc else 18
        real_usd += received / 10**decimals * prices.get(venue.quote, 1.0)
    assert venue.quote in (weth, usdc)
    assert real_usd == pytest.approx(engine_usd, rel=1e-6)


ERC20_BALANCE = [{"name": "balanceOf", "type": "function", "stateMutability": "view",
                  "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"type": "uint256"}]}]


@pytest.mark.parametrize("symbol", ["WETH", "wstETH"])
def test_a_sale_routed_across_venue_kinds_equals_the_replays_real_swaps(chain_checkpoint, symbol):
    """WETH across Uniswap V3 (0.05% and 0.3%), a Uniswap V2 pair and a V4 pool, wstETH across two V3 pools
    and a StableSwap pool: the engine's routed proceeds are at least the best single venue's, and
    the replay's venues (one real swap per venue used, each by its own plugin) receive them
    within 1e-6."""
    from analyzer.books import deployments_for
    from analyzer.replay.venues import ForkVenues
    from protocols import plugins

    devnet = chain_checkpoint
    w3, tokens = devnet.w3, devnet.book["tokens"]
    chosen = [plugins()[name] for name in ("uniswap-v3", "uniswap-v2", "uniswap-v4", "stableswap")]
    block = w3.eth.block_number

    def get_logs(address, topics, from_block, to_block):      # the V4 reader finds its pools in logs
        return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                      "fromBlock": from_block, "toBlock": to_block})]

    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), get_logs,
                      assets=tuple(tokens.values()))
    markets = deployments_for(chosen, 31337, devnet.book)
    rows = [row for m in markets for row in m.plugin.reader(ctx, m.deployment).read_markets().get("venues", [])]
    assets = [{"address": a, "symbol": s, "decimals": devnet.book["decimals"][s], "price_usd": 1.0}
              for s, a in tokens.items()]
    snapshot = Snapshot(meta={"chain_id": 31337, "block_number": block}, assets=assets, venues=rows).validate()
    usdc, asset = tokens["USDC"], tokens[symbol]
    venues, prices = market_view(snapshot, {usdc: 1.0})
    routed = venues[asset]
    assert len({v.model for v in routed.venues}) >= 2 and len(routed.venues) >= 3
    if symbol == "WETH":     # three venue kinds: V3 fee tiers, a V2 pair, a V4 pool
        assert {"uniswap_v3", "uniswap_v2", "uniswap_v4"} <= {v.model for v in routed.venues}
    size = 0.5 * sum(v.depth(0.05, True) for v in routed.venues)
    split = routed.split(size)
    assert (split > 0).sum() >= 3 and split.sum() == pytest.approx(size, rel=1e-12)
    engine_usd = routed.copy().trade(size).amount_out
    singles = []
    for i in range(len(routed.venues)):
        alone = routed.copy().venues[i]
        singles.append(alone.trade(size).amount_out * alone.quote_price_usd)
    assert engine_usd >= max(singles)

    decimals = {a: devnet.book["decimals"][s] for s, a in tokens.items()}
    symbols = {a: s for s, a in tokens.items()}
    fork_venues = ForkVenues(m.plugin.venue_executor(w3, m.deployment, decimals, symbols) for m in markets)
    trader = w3.eth.accounts[3]
    quotes = sorted({v.quote for v in routed.venues})
    balance = {q: w3.eth.contract(address=q, abi=ERC20_BALANCE).functions.balanceOf for q in quotes}
    held = {q: balance[q](trader).call() for q in quotes}
    for venue, units in zip(routed.venues, split, strict=True):
        if units > 0:
            fork_venues.sell(asset, int(units * 10 ** decimals[asset]), trader, pool=venue.venue)
    real_usd = sum((balance[q](trader).call() - held[q]) / 10 ** decimals[q] * prices.get(q, 1.0) for q in quotes)
    assert real_usd == pytest.approx(engine_usd, rel=1e-6)
