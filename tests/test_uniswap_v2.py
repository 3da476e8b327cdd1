"""Uniswap V2 pairs from the real @uniswap/v2-core bytecode: the reader finds them through the
factory, the simulation equals the pair's real swaps to the wei, the executor moves a pair's price.

Reference = the chain: a real ``UniswapV2Pair.swap`` and its ``Swap`` event and reserves. The pair
accepts at most ``getAmountOut`` for an input: one wei more is refused by its k check.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from analyzer.cheats import deal
from analyzer.devnet.context import npm_artifact
from analyzer.errors import ContagionError
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.uniswap_v2 import swap_math as v2
from protocols.uniswap_v2.executor import UniswapV2VenueExecutor, swap
from protocols.uniswap_v2.reader import UniswapV2Reader
from protocols.uniswap_v2.venue import UniswapV2Venue
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def test_amount_out_is_the_largest_output_the_k_check_accepts():
    rng = np.random.default_rng(5)
    for _ in range(200):
        reserve_in, reserve_out = (int(10 ** rng.uniform(3, 30)) for _ in range(2))
        amount_in = int(10 ** rng.uniform(0, 31))
        out = v2.get_amount_out(amount_in, reserve_in, reserve_out)
        if out == 0:
            continue
        assert v2.k_holds(reserve_in, reserve_out, amount_in, 0, 0, out)
        assert not v2.k_holds(reserve_in, reserve_out, amount_in, 0, 0, out + 1)


@pytest.fixture
def v2_devnet(chain_checkpoint):
    """The session devnet (reverted afterwards) with a real UniswapV2Factory, as the plugin's devnet
    deploys it, in ``devnet.book["protocols"]["uniswap-v2"]``."""
    devnet = chain_checkpoint
    w3, tokens = devnet.w3, devnet.book["tokens"]
    artifact = npm_artifact("@uniswap/v2-core", "UniswapV2Factory")
    deployer = w3.eth.accounts[4]
    tx = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"]).constructor(deployer).transact(
        {"from": deployer})
    factory = w3.eth.wait_for_transaction_receipt(tx)["contractAddress"]
    book = {**devnet.book, "protocols": {**devnet.book["protocols"], "uniswap-v2": {
        "factory": factory, "pairs": [], "quotes": [tokens[s] for s in ("USDC", "USDT", "DAI", "WETH")]}}}
    return SimpleNamespace(w3=w3, book=book)


def make_pair(devnet, asset: str, quote: str, asset_raw: int, quote_raw: int) -> str:
    """A new pair of the V2 factory holding these reserves (minted as a router's addLiquidity)."""
    w3, deployment = devnet.w3, devnet.book["protocols"]["uniswap-v2"]
    factory = w3.eth.contract(address=deployment["factory"], abi=npm_artifact("@uniswap/v2-core", "UniswapV2Factory")["abi"])
    lp = w3.eth.accounts[4]
    w3.eth.wait_for_transaction_receipt(factory.functions.createPair(asset, quote).transact({"from": lp}))
    pair = factory.functions.getPair(asset, quote).call()
    deal(w3, asset, pair, asset_raw)
    deal(w3, quote, pair, quote_raw)
    pair_c = w3.eth.contract(address=pair, abi=npm_artifact("@uniswap/v2-core", "UniswapV2Pair")["abi"])
    w3.eth.wait_for_transaction_receipt(pair_c.functions.mint(lp).transact({"from": lp}))
    return pair


def read_rows(devnet, assets: tuple[str, ...]) -> list[dict]:
    w3 = devnet.w3
    block = w3.eth.block_number
    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [],
                      assets=assets)
    return UniswapV2Reader(ctx, devnet.book["protocols"]["uniswap-v2"]).read_markets()["venues"]


@pytest.mark.slow
def test_simulated_swaps_equal_real_swaps_to_the_wei(v2_devnet):
    devnet = v2_devnet
    w3, tokens = devnet.w3, devnet.book["tokens"]
    weth, usdc, wsteth = tokens["WETH"], tokens["USDC"], tokens["wstETH"]
    pairs = {make_pair(devnet, weth, usdc, 2_000 * 10**18, 6_000_000 * 10**6): (weth, usdc),
             make_pair(devnet, wsteth, weth, 700 * 10**18, 810 * 10**18): (wsteth, weth)}
    rows = {row["venue"]: row for row in read_rows(devnet, (weth, wsteth))}
    # the reader found each pair through getPair, oriented asset/quote (WETH is quoted in USDC)
    assert {v: (r["asset"], r["quote_asset"]) for v, r in rows.items() if v in pairs} == pairs
    trader, rng = w3.eth.accounts[3], np.random.default_rng(11)
    compared = 0
    for pair, (asset, quote) in pairs.items():
        venue = UniswapV2Venue(asset, quote, json.loads(rows[pair]["params"]))
        for i in range(24):
            sell = i % 2 == 0
            reserve = venue.reserve_asset
            raw = max(1, int(reserve * 2 * 10 ** rng.uniform(-7, 0)))   # up to twice the pair's balance
            if sell:
                deal(w3, asset, trader, raw)
                done = swap(w3, pair, asset, raw, trader)
            elif raw >= reserve:
                # the pair cannot pay out its whole reserve: the simulation refuses, as the chain does
                with pytest.raises(ContagionError):
                    venue.copy().trade(-raw / 10**18)
                with pytest.raises(ContagionError, match="INSUFFICIENT_LIQUIDITY"):
                    swap(w3, pair, quote, raw, trader, exact_output=True)
                continue
            else:
                deal(w3, quote, trader, v2.get_amount_in(raw, venue.reserve_quote, reserve))
                done = swap(w3, pair, quote, raw, trader, exact_output=True)
            asset_raw, quote_raw = venue.swap_raw(sell, raw)
            asset_is_0 = venue.asset_is_token0
            chain_asset = (done.amount0_in if asset_is_0 else done.amount1_in) if sell else \
                (done.amount0_out if asset_is_0 else done.amount1_out)
            chain_quote = (done.amount1_out if asset_is_0 else done.amount0_out) if sell else \
                (done.amount1_in if asset_is_0 else done.amount0_in)
            assert (chain_asset, chain_quote) == (asset_raw, quote_raw), (pair, i, raw)
            assert (done.reserve0, done.reserve1) == venue.reserves
            compared += 1
    assert compared >= 40


@pytest.mark.slow
def test_one_wei_more_than_the_simulated_output_is_refused_by_the_pair(v2_devnet):
    devnet = v2_devnet
    w3, tokens = devnet.w3, devnet.book["tokens"]
    pair = make_pair(devnet, tokens["WETH"], tokens["USDC"], 1_000 * 10**18, 3_000_000 * 10**6)
    venue = UniswapV2Venue(tokens["WETH"], tokens["USDC"], json.loads(read_rows(devnet, (tokens["WETH"],))[0]["params"]))
    pair_c = w3.eth.contract(address=pair, abi=npm_artifact("@uniswap/v2-core", "UniswapV2Pair")["abi"])
    trader = w3.eth.accounts[3]
    amount_in = 37 * 10**18 + 12345
    out = v2.get_amount_out(amount_in, venue.reserve_asset, venue.reserve_quote)
    deal(w3, tokens["WETH"], pair, venue.reserve_asset + amount_in)   # the input, transferred to the pair
    outs = (lambda n: (0, n)) if venue.asset_is_token0 else (lambda n: (n, 0))
    with pytest.raises(Exception, match="UniswapV2: K"):
        pair_c.functions.swap(*outs(out + 1), trader, b"").estimate_gas({"from": trader})
    pair_c.functions.swap(*outs(out), trader, b"").estimate_gas({"from": trader})


@pytest.mark.slow
def test_the_executor_moves_a_pair_to_a_target_price(v2_devnet):
    devnet = v2_devnet
    w3, tokens = devnet.w3, devnet.book["tokens"]
    make_pair(devnet, tokens["WETH"], tokens["USDC"], 1_000 * 10**18, 3_000_000 * 10**6)
    deployment = {**devnet.book["protocols"]["uniswap-v2"]}
    deployment["pairs"] = [{"asset": r["asset"], "quote": r["quote_asset"], "pair": r["venue"]}
                           for r in read_rows(devnet, (tokens["WETH"],))]
    decimals = {tokens[s]: devnet.book["decimals"][s] for s in ("WETH", "USDC")}
    executor = UniswapV2VenueExecutor(w3, deployment, decimals, {tokens["WETH"]: "WETH", tokens["USDC"]: "USDC"})
    entry = executor.primary(tokens["WETH"])
    for target in (2100.0, 3300.0):
        executor.move_to(entry, target, w3.eth.accounts[3])
        assert executor.ratio(entry) == pytest.approx(target, rel=1e-9)
