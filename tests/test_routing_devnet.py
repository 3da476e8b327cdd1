"""A routed sale on the devnet's real pools: the engine's split of a wstETH sale across its two
Uniswap V3 pools (against WETH and USDC), executed as one real swap per pool, earns what the
engine says within 1e-6, and at least what the better single pool would."""

from __future__ import annotations

import pytest

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
    w3, tokens, deployment = devnet.w3, devnet.book["tokens"], devnet.book["protocols"]["uniswap-v3"]
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
