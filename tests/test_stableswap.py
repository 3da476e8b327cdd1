"""Curve-style StableSwap pools (our fixture contract): the simulation equals the chain's
``exchange`` to the wei, both directions, up to twice the pool's balance; the reader reads what
the simulation needs; a purchase pays the smallest input whose exchange delivers the amount."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from analyzer.cheats import deal
from analyzer.devnet.solc import fixture_artifact
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.stableswap import swap_math as ss
from protocols.stableswap.executor import ERC20_ABI, MAX_UINT256, exchange, pool_abi
from protocols.stableswap.reader import StableSwapReader
from protocols.stableswap.venue import StableSwapVenue
from tests.conftest import requires_anvil

pytestmark = requires_anvil
WSTETH_PER_WETH_RATE = 1_166_666_666_666_666_666   # the fixture's redemption rate of the LST, 1e18


def test_d_and_y_keep_the_invariant():
    """Independent check in exact rationals: A n^n Σx + D = A D n^n + D^(n+1) / (n^n Πx)."""
    from fractions import Fraction

    rng = np.random.default_rng(2)
    for _ in range(50):
        n = int(rng.integers(2, 4))
        xp = [int(10 ** rng.uniform(20, 27)) for _ in range(n)]
        amp = int(rng.integers(1, 5000)) * ss.A_PRECISION
        d = ss.get_d(xp, amp)
        ann = Fraction(amp * n, ss.A_PRECISION)

        def residual(xs, d=d, ann=ann):
            prod = Fraction(1)
            for x in xs:
                prod *= x
            return ann * sum(xs) + d - ann * d - Fraction(d) ** (len(xs) + 1) / (len(xs) ** len(xs) * prod)

        scale = ann * d
        assert abs(residual(xp)) / scale < 1e-15
        x_new = xp[0] + xp[0] // 3
        y = ss.get_y(0, 1, x_new, xp, amp)
        assert abs(residual([x_new, y, *xp[2:]])) / scale < 1e-12


def deploy_pool(devnet, symbols: list[str], rates: list[int], balances: list[int], a: int, fee: int,
                admin_fee: int) -> str:
    w3, tokens = devnet.w3, devnet.book["tokens"]
    artifact = fixture_artifact("stableswap", "StableSwap")
    owner = w3.eth.accounts[4]
    coins = [tokens[s] for s in symbols]
    tx = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor(
        coins, rates, a, fee, admin_fee).transact({"from": owner})
    pool = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    for coin, amount in zip(coins, balances, strict=True):
        deal(w3, coin, owner, amount)
        w3.eth.wait_for_transaction_receipt(
            w3.eth.contract(address=coin, abi=ERC20_ABI).functions.approve(pool, MAX_UINT256).transact({"from": owner}))
    pool_c = w3.eth.contract(address=pool, abi=pool_abi())
    w3.eth.wait_for_transaction_receipt(pool_c.functions.add_liquidity(balances, 0).transact({"from": owner}))
    return pool


@pytest.fixture
def pools(chain_checkpoint):
    devnet = chain_checkpoint
    lst = deploy_pool(devnet, ["WETH", "wstETH"], [10**18, WSTETH_PER_WETH_RATE], [9_000 * 10**18, 7_500 * 10**18],
                      a=50, fee=4_000_000, admin_fee=5_000_000_000)
    stables = deploy_pool(devnet, ["USDC", "USDT", "DAI"], [10**30, 10**30, 10**18],
                          [40_000_000 * 10**6, 25_000_000 * 10**6, 30_000_000 * 10**18], a=2000, fee=1_000_000,
                          admin_fee=5_000_000_000)
    rates = {lst: [10**18, WSTETH_PER_WETH_RATE], stables: [10**30, 10**30, 10**18]}
    w3 = devnet.w3
    block = w3.eth.block_number
    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [])
    deployment = {"pools": [{"pool": p, "rates": [str(r) for r in rates[p]]} for p in (lst, stables)]}
    rows = StableSwapReader(ctx, deployment).read_markets()["venues"]
    return SimpleNamespace(devnet=devnet, lst=lst, stables=stables, rows=rows)


@pytest.mark.slow
def test_simulated_exchanges_equal_real_ones_to_the_wei(pools):
    w3, trader = pools.devnet.w3, pools.devnet.w3.eth.accounts[3]
    rng = np.random.default_rng(17)
    compared = 0
    for pool, n in ((pools.lst, 2), (pools.stables, 3)):
        params = json.loads(next(r for r in pools.rows if r["venue"] == pool)["params"])
        state = ss.PoolState([int(b) for b in params["balances"]], [int(r) for r in params["rates"]],
                             int(params["amp"]), int(params["fee"]), int(params["admin_fee"]))
        for k in range(24):
            i = k % n
            j = (i + 1 + int(rng.integers(0, n - 1))) % n
            dx = max(1, int(state.balances[i] * 2 * 10 ** rng.uniform(-8, 0)))   # up to twice the balance
            coin = params["coins"][i]
            deal(w3, coin, trader, dx)
            view = w3.eth.contract(address=pool, abi=pool_abi()).functions.get_dy(i, j, dx).call()
            done = exchange(w3, pool, i, j, dx, trader)
            assert state.exchange(i, j, dx) == done.bought == view, (pool, k, dx)
            assert state.balances == done.balances
            compared += 1
    assert compared >= 40


@pytest.mark.slow
def test_a_purchase_pays_the_smallest_input_that_delivers(pools):
    row = next(r for r in pools.rows if r["venue"] == pools.lst)
    venue = StableSwapVenue(row["asset"], row["quote_asset"], json.loads(row["params"]))
    pool_c = pools.devnet.w3.eth.contract(address=pools.lst, abi=pool_abi())
    for want in (10**15, 3 * 10**20, 6 * 10**21):
        paid = venue.copy()._input_for(want)
        # coin 0 (WETH, the quote) in, coin 1 (wstETH) out, read from the chain's own get_dy
        assert pool_c.functions.get_dy(0, 1, paid).call() >= want > pool_c.functions.get_dy(0, 1, paid - 1).call()
    assert row["asset"] == pools.devnet.book["tokens"]["wstETH"]
    # the mid is the marginal price: a tiny sale earns it, less the fee
    tiny = venue.copy().trade(1e-6)
    assert tiny.amount_out / 1e-6 == pytest.approx(venue.mid_price() * (1 - venue.fee_fraction), rel=1e-6)
