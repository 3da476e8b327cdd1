"""Uniswap V4 native-ETH pools (currency0 address(0), v4-core's ``Currency.ADDRESS_ZERO``), made in
the test on the cached devnet: an ETH/USDC pool initialised at the devnet's WETH/USDC V4 price and
given liquidity through our router (native ETH paid as msg.value). The reader finds it as a WETH
market, the exact simulation equals real swaps to the wei in both directions, and a WETH sale routed
by the engine's router across both V4 pools executes, the keeper receiving what the simulation says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.amm import concentrated_liquidity as v3
from analyzer.amm.layout import liquidity_for_value, range_ticks
from analyzer.chain import rpc
from analyzer.cheats import deal
from analyzer.engine.routing import route
from analyzer.transactions import send
from protocols.uniswap_v4.contracts import (
    ZERO,
    erc20_abi,
    pool_id,
    pool_key,
    pool_manager_artifact,
    router_artifact,
)
from protocols.uniswap_v4.executor import UniswapV4VenueExecutor, slot0, swap
from protocols.uniswap_v4.reader import UniswapV4Reader
from protocols.uniswap_v4.venue import UniswapV4Venue
from tests.conftest import requires_anvil
from tests.test_uniswap_v4 import deployment_of, read_context

pytestmark = requires_anvil

FEE, SPACING, TVL_USD = 3000, 60, 30_000_000
RANGES = [(0.01, 0.2), (0.3, 0.5), (1.0, 0.3)]


def pool_state(params: dict) -> v3.PoolState:
    ticks = sorted((int(t), int(n)) for t, n in params["ticks"])
    return v3.PoolState(int(params["sqrt_price_x96"]), int(params["tick"]), int(params["liquidity"]),
                        int(params["fee"]), int(params["tick_spacing"]), [t for t, _ in ticks], dict(ticks))


@pytest.fixture
def native_pool(chain_checkpoint):
    """An ETH/USDC V4 pool with liquidity on [P(1-w), P(1+w)] ranges, started at the WETH/USDC
    pool's price; returns (devnet, key, the pool's balances {currency: wei})."""
    devnet = chain_checkpoint
    w3, deployment = devnet.w3, deployment_of(devnet)
    tokens = devnet.book["tokens"]
    weth, usdc = tokens["WETH"], tokens["USDC"]
    manager = w3.eth.contract(address=deployment["pool_manager"], abi=pool_manager_artifact()["abi"])
    router = w3.eth.contract(address=deployment["router"], abi=router_artifact()["abi"])
    erc20_sqrt = slot0(w3, manager.address, deployment["pools"][0]["pool"])["sqrt_price_x96"]
    # ETH is currency0 (address(0)); the WETH pool has WETH as token0 or token1
    sqrt_price = erc20_sqrt if int(weth, 16) < int(usdc, 16) else (v3.Q96 * v3.Q96) // erc20_sqrt
    key = pool_key(ZERO, usdc, FEE, SPACING)
    assert key[0] == ZERO
    lp = w3.eth.accounts[5]
    send(w3, manager.functions.initialize(key, sqrt_price), lp, "initialize ETH/USDC")
    eth_usd = (sqrt_price / v3.Q96) ** 2 * 1e12          # USDC per ETH, whole units
    usdc_c = w3.eth.contract(address=usdc, abi=erc20_abi())
    usdc_before = usdc_c.functions.balanceOf(manager.address).call()
    deal(w3, usdc, lp, 10**6 * TVL_USD * 2)
    send(w3, usdc_c.functions.approve(router.address, 2**256 - 1), lp, "approve USDC")
    rpc(w3, "anvil_setBalance", [lp, hex(10**18 * int(TVL_USD * 2 / eth_usd) + 10**20)])
    for half_width, share in RANGES:
        lower, upper = range_ticks(sqrt_price, half_width, SPACING)
        liquidity = int(liquidity_for_value(sqrt_price, lower, upper, share * TVL_USD, eth_usd, 1.0, 18, 6))
        send(w3, router.functions.modifyLiquidity(key, lower, upper, liquidity), lp, "add ETH/USDC liquidity",
             value=w3.eth.get_balance(lp) - 10**20)        # the router refunds what the pool did not take
    assert w3.eth.get_balance(router.address) == 0
    balances = {ZERO: w3.eth.get_balance(manager.address),
                usdc: usdc_c.functions.balanceOf(manager.address).call() - usdc_before}
    assert balances[ZERO] > 0 and balances[usdc] > 0
    return devnet, key, balances


def native_row(devnet, key) -> dict:
    rows = UniswapV4Reader(read_context(devnet.w3), deployment_of(devnet)).read_markets()
    (row,) = [r for r in rows["venues"] if r["venue"] == pool_id(key)]
    return row


def test_the_reader_finds_a_native_eth_pool_as_a_weth_market(native_pool):
    devnet, key, _ = native_pool
    tokens = devnet.book["tokens"]
    row = native_row(devnet, key)
    params = json.loads(row["params"])
    assert (row["asset"], row["quote_asset"], row["model"]) == (tokens["WETH"], tokens["USDC"], "uniswap_v4")
    assert (params["currency0"], params["currency1"], params["token0"]) == (ZERO, tokens["USDC"], tokens["WETH"])
    assert params["decimals0"] == 18 and params["fee"] == FEE
    assert int(params["sqrt_price_x96"]) == slot0(devnet.w3, deployment_of(devnet)["pool_manager"],
                                                   row["venue"])["sqrt_price_x96"]
    # started at the WETH/USDC pool's price: the same WETH price as the ERC-20 pool's venue
    native = UniswapV4Venue(row["asset"], row["quote_asset"], params)
    rows = UniswapV4Reader(read_context(devnet.w3), deployment_of(devnet)).read_markets()
    (erc20_row,) = [r for r in rows["venues"] if r["venue"] == deployment_of(devnet)["pools"][0]["pool"]]
    erc20 = UniswapV4Venue(erc20_row["asset"], erc20_row["quote_asset"], json.loads(erc20_row["params"]))
    assert native.mid_price() == pytest.approx(erc20.mid_price(), rel=1e-9)
    # a book without weth leaves it out, as before
    no_weth = {k: v for k, v in deployment_of(devnet).items() if k != "weth"}
    found = UniswapV4Reader(read_context(devnet.w3), no_weth).find_pools()
    assert pool_id(key) not in [p["pool"] for p in found] and found


@pytest.mark.slow
def test_native_eth_swaps_equal_the_simulation_to_the_wei(native_pool):
    devnet, key, balances = native_pool
    w3, deployment = devnet.w3, deployment_of(devnet)
    manager, router = deployment["pool_manager"], deployment["router"]
    state = pool_state(json.loads(native_row(devnet, key)["params"]))
    trader = w3.eth.accounts[3]
    deal(w3, key[1], trader, 10**70)
    rpc(w3, "anvil_setBalance", [trader, hex(10**40)])
    rng = np.random.default_rng(45)
    compared = directions = 0
    for i in range(48):
        zero_for_one = bool(i % 2)                        # True: pay native ETH
        exact_output = bool((i // 2) % 2)
        token_in = key[0] if zero_for_one else key[1]
        sized_on = key[1] if zero_for_one == exact_output else key[0]
        amount = max(1, int(balances[sized_on] * 2 * 10 ** rng.uniform(-7, 0)))
        expected = v3.swap(state, zero_for_one, -amount if exact_output else amount)
        eth_before, block_before = w3.eth.get_balance(trader), w3.eth.block_number
        done = swap(w3, manager, router, key, token_in, amount, trader, exact_output=exact_output,
                    value=10**35 if exact_output else None)
        assert (-done.amount0, -done.amount1) == (expected.amount0, expected.amount1), (i, amount, exact_output)
        assert (done.sqrt_price_x96, done.tick, done.liquidity) == (expected.sqrt_price_x96, expected.tick,
                                                                    expected.liquidity), i
        # the trader's ETH moved by the swap's amount0 and its gas; the router kept none
        receipts = [w3.eth.get_transaction_receipt(tx) for b in range(block_before + 1, w3.eth.block_number + 1)
                    for tx in w3.eth.get_block(b)["transactions"]]     # the swap, and the approval before the first
        gas_wei = sum(r["gasUsed"] * r["effectiveGasPrice"] for r in receipts)
        assert w3.eth.get_balance(trader) - eth_before == done.amount0 - gas_wei, i
        assert w3.eth.get_balance(router) == 0, i
        compared += 1
        directions |= 1 << int(zero_for_one)
    assert compared >= 40 and directions == 3


def test_a_routed_weth_sale_uses_the_native_eth_pool(native_pool):
    """The engine's router splits a WETH sale across the ERC-20 and the native-ETH V4 pools; the
    executor (a book naming only the PoolManager, quotes and weth, as the built-in ones) sends one
    swap per pool, and the keeper's USDC equals the exact simulation of each share."""
    devnet, key, _ = native_pool
    w3, full = devnet.w3, deployment_of(devnet)
    tokens, decimals = devnet.book["tokens"], devnet.book["decimals"]
    rows = [r for r in UniswapV4Reader(read_context(w3), full).read_markets()["venues"]
            if r["asset"] == tokens["WETH"] and r["quote_asset"] == tokens["USDC"]]
    assert {r["venue"] for r in rows} == {full["pools"][0]["pool"], pool_id(key)}
    venues = [UniswapV4Venue(r["asset"], r["quote_asset"], json.loads(r["params"]), venue=r["venue"]) for r in rows]
    split = route(venues, 2_000.0)
    assert all(split > 0), split                          # both pools take a share
    book = {k: full[k] for k in ("pool_manager", "quotes", "start_block", "weth")}
    executor = UniswapV4VenueExecutor(w3, book, {tokens[s]: decimals[s] for s in tokens},
                                      {address: symbol for symbol, address in tokens.items()})
    assert pool_id(key) in [e["pool"] for e in executor.entries]
    keeper = w3.eth.accounts[6]
    usdc = w3.eth.contract(address=tokens["USDC"], abi=erc20_abi())
    before = usdc.functions.balanceOf(keeper).call()
    expected = 0
    for venue, units in zip(venues, split, strict=True):
        raw = int(units * 10**18)
        weth_is_token0 = venue.asset_is_token0
        result = v3.swap(venue.state, weth_is_token0, raw)          # the pool's amounts (out < 0)
        expected += -(result.amount1 if weth_is_token0 else result.amount0)
        executor.sell(tokens["WETH"], raw, keeper, pool=venue.venue)
    assert usdc.functions.balanceOf(keeper).call() - before == expected > 0
    # the native pool's ETH price fell as the sale moved it
    assert slot0(w3, full["pool_manager"], pool_id(key))["sqrt_price_x96"] < int(
        json.loads(next(r for r in rows if r["venue"] == pool_id(key))["params"])["sqrt_price_x96"])
