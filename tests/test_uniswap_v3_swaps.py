"""The exact V3 simulation against real swaps in the devnet's real Uniswap V3 pools.

Reference = a real ``SwapRouter`` swap on the chain (its pool ``Swap`` event), reverted after each
one. The simulation starts from the pool state our reader read; sizes are log-uniform from a few
wei to beyond the pool's whole balance, both directions, exact input and exact output.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.amm import concentrated_liquidity as v3
from analyzer.books import market_of
from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.uniswap_v3.devnet import MAX_UINT256, position_amounts
from protocols.uniswap_v3.executor import abi, swap
from protocols.uniswap_v3.reader import UniswapV3Reader
from protocols.uniswap_v3.venue import UniswapV3Venue
from tests.conftest import requires_anvil

pytestmark = requires_anvil
EXACT: list[bool] = []   # per compared swap: equal to the wei and to the sqrt price unit


def read_states(devnet, deployment) -> dict[str, dict]:
    w3 = devnet.w3
    block = w3.eth.block_number

    def get_logs(address, topics, from_block, to_block):      # the reader reads the words of minted ticks
        return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                      "fromBlock": from_block, "toBlock": to_block})]

    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block, chunk_size=2000), get_logs)
    return {s["pool"]: s for s in UniswapV3Reader(ctx, deployment).read_pools()}


def pool_state(raw: dict) -> v3.PoolState:
    ticks = [int(t) for t, _ in raw["ticks"]]
    return v3.PoolState(raw["slot0"][0], raw["slot0"][1], raw["liquidity"], raw["fee"], raw["tick_spacing"], ticks,
                        {int(t): int(n) for t, n in raw["ticks"]})


def fund(w3, token: str, account: str, amount: int) -> None:
    erc20 = w3.eth.contract(address=token, abi=npm_artifact("@aave/core-v3", "MintableERC20")["abi"])
    # waited for: anvil answers eth_sendTransaction before the block is committed
    w3.eth.wait_for_transaction_receipt(erc20.functions.mint(account, amount).transact({"from": account}))


def balance(w3, token: str, holder: str) -> int:
    return w3.eth.contract(address=token, abi=abi("ERC20")).functions.balanceOf(holder).call()


def compare_random_swaps(devnet, deployment, pool: str, count: int, seed: int,
                         smallest: float = 1e-3) -> list[tuple[int, int]]:
    """``count`` random swaps on ``pool`` (every 8th is dust, the others log-uniform from ``smallest``
    of the pool's balance to twice it): chain vs simulation. Returns (steps, ticks crossed) per swap."""
    w3 = devnet.w3
    raw = read_states(devnet, {**deployment, "pools": [p for p in deployment["pools"] if p["pool"] == pool]})[pool]
    state = pool_state(raw)
    state.tokens = (raw["token0"], raw["token1"])
    token0, token1 = raw["token0"], raw["token1"]
    trader = w3.eth.accounts[3]
    reserves = {token0: balance(w3, token0, pool), token1: balance(w3, token1, pool)}
    rng = np.random.default_rng(seed)
    crossings = []
    funded = devnet.anvil.snapshot()
    try:
        for token in (token0, token1):
            # exact-output swaps near the whole pool push the price toward the tick extremes, where
            # the input owed is astronomical: fund far beyond it (uint256 holds ~1.2e77)
            fund(w3, token, trader, 10**70)
            w3.eth.wait_for_transaction_receipt(w3.eth.contract(address=token, abi=abi("ERC20")).functions.approve(
                deployment["router"], MAX_UINT256).transact({"from": trader}))
        for i in range(count):
            crossings.append(_compare_one(devnet, deployment, pool, state, trader, rng, reserves, i, count, smallest))
    finally:
        devnet.anvil.revert(funded)
    return crossings


def _compare_one(devnet, deployment, pool, state, trader, rng, reserves, i, count, smallest) -> tuple[int, int]:
    """One random swap, real (then reverted) and simulated; asserts they agree."""
    token0, token1 = state.tokens
    zero_for_one = bool(i % 2)
    token_in, token_out = (token0, token1) if zero_for_one else (token1, token0)
    exact_output = i % 5 == 4
    top = 0.9 * reserves[token_out] if exact_output else 2.0 * reserves[token_in]
    if i % 8 == 0:    # dust: 1 wei to a million wei
        amount = int(10 ** rng.uniform(0, 6))
    else:             # stratified log-uniform: ``smallest`` of the pool's balance to twice all of it
        stratum = (i + rng.uniform()) / count
        amount = int(top * 10 ** (np.log10(smallest) * (1 - stratum)))
    limit = None
    if i % 7 == 3:    # a price limit 1% away (what replay's move_to uses): partial fills
        limit = v3.get_sqrt_ratio_at_tick(state.tick + (-100 if zero_for_one else 100)) + int(rng.integers(0, 10**6))
    snap = devnet.anvil.snapshot()
    try:
        real = swap(devnet.w3, deployment["router"], pool, token_in, amount, trader, exact_output=exact_output,
                    sqrt_price_limit_x96=limit or 0)
    finally:
        devnet.anvil.revert(snap)
    sim = v3.swap(state.copy(), zero_for_one, -amount if exact_output else amount, limit)
    tolerance = max(1, sim.ticks_crossed)
    where = f"swap {i}: {'out' if exact_output else 'in'} {amount} zeroForOne={zero_for_one}"
    assert abs(sim.amount0 - real.amount0) <= tolerance, where
    assert abs(sim.amount1 - real.amount1) <= tolerance, where
    assert abs(sim.sqrt_price_x96 - real.sqrt_price_x96) <= 1, where
    assert sim.tick == real.tick and sim.liquidity == real.liquidity, where
    EXACT.append(sim.amount0 == real.amount0 and sim.amount1 == real.amount1
                 and sim.sqrt_price_x96 == real.sqrt_price_x96)
    return sim.steps, sim.ticks_crossed


def test_simulated_swaps_equal_real_swaps_in_the_devnet_pools(devnet):
    deployment = market_of(devnet.book, "uniswap-v3")
    pools = {p["name"]: p["pool"] for p in deployment["pools"]}
    crossed = compare_random_swaps(devnet, deployment, pools["WETH/USDC 0.05%"], 24, seed=1)
    crossed += compare_random_swaps(devnet, deployment, pools["WBTC/USDC 0.3%"], 10, seed=2)
    crossed += compare_random_swaps(devnet, deployment, pools["wstETH/WETH 0.01%"], 6, seed=3)
    assert max(c for _, c in crossed) >= 4          # some swaps went through every nested range
    assert min(c for _, c in crossed) == 0           # and some stayed inside the first one
    print(f"{len(EXACT)} swaps compared, {sum(EXACT)} exact to the wei; steps/crossings {crossed}")


def test_simulation_equals_chain_across_a_hundred_initialised_ticks(devnet, chain_checkpoint):
    """A pool with 60 random positions (120 initialised ticks): big swaps cross most of them."""
    w3 = devnet.w3
    book = devnet.book
    deployment = market_of(book, "uniswap-v3")
    ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=devnet.scenario, book=book)
    manager = ctx.contract(deployment["position_manager"], npm_artifact("@uniswap/v3-periphery",
                                                                        "NonfungiblePositionManager")["abi"])
    link, weth = book["tokens"]["LINK"], book["tokens"]["WETH"]
    token0, token1 = sorted((link, weth), key=lambda a: int(a, 16))
    fee, spacing = 3000, 60
    start_tick = 60 * 10
    sqrt_price = v3.get_sqrt_ratio_at_tick(start_tick) + 12345
    ctx.transact(manager.functions.createAndInitializePoolIfNecessary(token0, token1, fee, sqrt_price))
    factory = ctx.contract(deployment["factory"], npm_artifact("@uniswap/v3-core", "UniswapV3Factory")["abi"])
    pool = factory.functions.getPool(token0, token1, fee).call()
    lp = w3.eth.accounts[4]
    for token in (token0, token1):
        fund(w3, token, lp, 10**40)
        ctx.transact(ctx.contract(token, abi("ERC20")).functions.approve(manager.address, MAX_UINT256), sender=lp)
    rng = np.random.default_rng(7)
    for _ in range(60):
        lower = start_tick + int(rng.integers(-400, 400)) * spacing
        upper = lower + int(rng.integers(1, 300)) * spacing
        amount0, amount1 = position_amounts(sqrt_price, lower, upper, float(rng.uniform(1e4, 1e6)), 15.0, 15.0,
                                            18, 18)
        ctx.transact(manager.functions.mint((token0, token1, fee, lower, upper, amount0, amount1, 0, 0, lp,
                                             1 << 64)), sender=lp)
    entry = {"pool": pool, "asset": token0, "quote": token1, "fee": fee}
    crossed = compare_random_swaps(devnet, {**deployment, "pools": [entry]}, pool, 16, seed=11, smallest=0.05)
    assert max(c for _, c in crossed) >= 25     # half the 120 ticks lie on each side of the price
    print(f"ladder pool: steps/crossings {crossed}")


def test_venue_trade_matches_a_real_sale_in_token_units(devnet, chain_checkpoint):
    w3 = devnet.w3
    deployment = market_of(devnet.book, "uniswap-v3")
    entry = next(p for p in deployment["pools"] if p["name"] == "WETH/USDC 0.05%")
    raw = read_states(devnet, deployment)[entry["pool"]]
    params = {"token0": raw["token0"], "token1": raw["token1"], "decimals0": 18 if raw["token0"] == entry["asset"] else 6,
              "decimals1": 6 if raw["token0"] == entry["asset"] else 18, "fee": raw["fee"],
              "tick_spacing": raw["tick_spacing"], "sqrt_price_x96": str(raw["slot0"][0]), "tick": raw["slot0"][1],
              "liquidity": str(raw["liquidity"]), "ticks": raw["ticks"]}
    venue = UniswapV3Venue(entry["asset"], entry["quote"], params)
    assert venue.mid_price() == pytest.approx(3000.0, rel=1e-12)     # the WETH PriceFeed's start price
    result = venue.trade(2500.0)
    trader = w3.eth.accounts[3]
    fund(w3, entry["asset"], trader, 2500 * 10**18)
    before = balance(w3, entry["quote"], trader)
    real = swap(w3, deployment["router"], entry["pool"], entry["asset"], 2500 * 10**18, trader)
    received = balance(w3, entry["quote"], trader) - before
    assert result.amount_out == received / 1e6
    assert venue.state.sqrt_price_x96 == real.sqrt_price_x96
    assert result.price_after < result.price_before
    # depth (walks the ticks in float, fees ignored): selling it moves the price by that fraction
    fresh = UniswapV3Venue(entry["asset"], entry["quote"], params)
    depth = fresh.depth(0.05, sell=True)
    assert fresh.trade(depth / (1 - raw["fee"] / 1e6)).price_after == pytest.approx(0.95 * 3000.0, rel=1e-6)


def test_swap_refuses_a_chain_that_is_not_anvil():
    from web3 import HTTPProvider, Web3

    from analyzer.errors import NotAnvilError
    from tests.rpcserver import FakeNode

    with FakeNode({"web3_clientVersion": "Geth/v1.13.14-stable/linux-amd64/go1.21.6", "eth_chainId": "0x1"}) as node:
        w3 = Web3(HTTPProvider(node.url))
        with pytest.raises(NotAnvilError):
            swap(w3, "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, 10**18, "0x" + "44" * 20)
        assert node.calls["eth_sendTransaction"] == 0 and node.calls["eth_call"] == 0
