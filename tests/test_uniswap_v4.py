"""Uniswap V4 on the devnet: the real PoolManager holds a WETH/USDC pool (our router adds the
liquidity and swaps), the reader finds it from the PoolManager's ``Initialize`` events and reads
its state with ``extsload``, and the exact simulation equals real swaps to the wei: random sizes
from dust to twice the pool's balance, both directions, exact input and exact output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.amm import concentrated_liquidity as v3
from analyzer.books import market_of
from analyzer.cheats import deal
from analyzer.multicall import multicall
from protocols import plugins
from protocols.base import ReadContext
from protocols.uniswap_v4.contracts import erc20_abi, pool_id, pool_key
from protocols.uniswap_v4.executor import UniswapV4VenueExecutor, slot0, swap
from protocols.uniswap_v4.reader import UniswapV4Reader
from protocols.uniswap_v4.venue import UniswapV4Venue
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def read_context(w3) -> ReadContext:
    block = w3.eth.block_number

    def get_logs(address, topics, from_block, to_block):
        return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                      "fromBlock": from_block, "toBlock": to_block})]

    return ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block, chunk_size=2000), get_logs)


def deployment_of(devnet) -> dict:
    return market_of(devnet.book, "uniswap-v4", "Uniswap V4")


def test_the_reader_finds_the_devnet_pool_from_its_initialize_event(devnet):
    deployment = deployment_of(devnet)
    tokens = devnet.book["tokens"]
    rows = UniswapV4Reader(read_context(devnet.w3), deployment).read_markets()
    (row,) = rows["venues"]
    key = pool_key(tokens["WETH"], tokens["USDC"], 500, 10)
    assert row["venue"] == pool_id(key) == deployment["pools"][0]["pool"]
    assert (row["asset"], row["quote_asset"], row["model"]) == (tokens["WETH"], tokens["USDC"], "uniswap_v4")
    params = json.loads(row["params"])
    assert int(params["sqrt_price_x96"]) == slot0(devnet.w3, deployment["pool_manager"], row["venue"])["sqrt_price_x96"]
    assert params["fee"] == 500 and len(params["ticks"]) >= 2
    # priced as the feeds price WETH (pool started at the PriceFeed's answer)
    venue = UniswapV4Venue(row["asset"], row["quote_asset"], params)
    weth = next(a for a in rows["assets"] if a["symbol"] == "WETH")
    assert venue.mid_price() == pytest.approx(weth["price_usd"], rel=1e-12)
    assert "uniswap-v4" in plugins()


@pytest.mark.slow
def test_simulated_swaps_equal_real_ones_to_the_wei(chain_checkpoint):
    devnet = chain_checkpoint
    w3, deployment = devnet.w3, deployment_of(devnet)
    manager, router = deployment["pool_manager"], deployment["router"]
    entry = deployment["pools"][0]
    key = pool_key(entry["asset"], entry["quote"], entry["fee"], entry["tick_spacing"])
    (row,) = UniswapV4Reader(read_context(w3), deployment).read_markets()["venues"]
    params = json.loads(row["params"])
    ticks = sorted((int(t), int(n)) for t, n in params["ticks"])
    state = v3.PoolState(int(params["sqrt_price_x96"]), int(params["tick"]), int(params["liquidity"]),
                         int(params["fee"]), int(params["tick_spacing"]), [t for t, _ in ticks], dict(ticks))
    erc20 = {t: w3.eth.contract(address=t, abi=erc20_abi()) for t in key[:2]}
    # the PoolManager holds only this pool's tokens on the devnet: its balances are the pool's
    balances = {t: erc20[t].functions.balanceOf(manager).call() for t in key[:2]}
    trader = w3.eth.accounts[3]
    for token in key[:2]:
        deal(w3, token, trader, 10**70)
    rng = np.random.default_rng(44)
    compared = directions = 0
    for i in range(48):
        zero_for_one = bool(i % 2)
        exact_output = bool((i // 2) % 2)
        token_in = key[0] if zero_for_one else key[1]
        sized_on = key[1] if zero_for_one == exact_output else key[0]    # the token the amount counts
        amount = max(1, int(balances[sized_on] * 2 * 10 ** rng.uniform(-7, 0)))
        expected = v3.swap(state, zero_for_one, -amount if exact_output else amount)
        done = swap(w3, manager, router, key, token_in, amount, trader, exact_output=exact_output)
        # the event's amounts are the swapper's (negative: paid), the simulation's the pool's
        assert (-done.amount0, -done.amount1) == (expected.amount0, expected.amount1), (i, amount, exact_output)
        assert (done.sqrt_price_x96, done.tick, done.liquidity) == (expected.sqrt_price_x96, expected.tick,
                                                                    expected.liquidity), i
        compared += 1
        directions |= 1 << int(zero_for_one)
    assert compared >= 40 and directions == 3


def test_a_book_naming_only_the_pool_manager_is_traded_through_our_router_and_the_pools_found(chain_checkpoint):
    """A built-in book names the PoolManager, its quotes and start block, no router (ours is on no
    chain) and no pools (the reader finds them): on a fork the executor deploys our router, trades
    the pools the reader finds, and a real sale moves the pool's price down."""
    devnet = chain_checkpoint
    w3, full = devnet.w3, deployment_of(devnet)
    builtin_like = {key: full[key] for key in ("pool_manager", "quotes", "start_block")}
    tokens, decimals = devnet.book["tokens"], devnet.book["decimals"]
    executor = UniswapV4VenueExecutor(w3, builtin_like, {tokens[s]: decimals[s] for s in tokens},
                                      {address: symbol for symbol, address in tokens.items()})
    assert executor.router != full["router"] and len(w3.eth.get_code(executor.router)) > 0
    assert [e["pool"] for e in executor.entries] == [p["pool"] for p in full["pools"]]
    entry = executor.primary(tokens["WETH"])
    assert entry is not None and entry["quote"] == tokens["USDC"]
    before = slot0(w3, full["pool_manager"], entry["pool"])["sqrt_price_x96"]
    executor.sell(tokens["WETH"], 10 * 10 ** decimals["WETH"], w3.eth.accounts[4])
    # WETH is the pool's token0 or token1: selling it moves token1-per-token0 down or up
    after = slot0(w3, full["pool_manager"], entry["pool"])["sqrt_price_x96"]
    weth_is_token0 = int(tokens["WETH"], 16) < int(tokens["USDC"], 16)
    assert (after < before) if weth_is_token0 else (after > before)
