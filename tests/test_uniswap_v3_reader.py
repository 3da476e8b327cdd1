"""Uniswap V3 on the devnet and its reader: pools from the real bytecode, priced like the oracles,
shaped deep near the price; venues rows the engine builds venues from."""

from __future__ import annotations

import json
import re

import pytest

from analyzer.amm import concentrated_liquidity as v3
from analyzer.books import market_of
from analyzer.chain import REPO_ROOT
from analyzer.devnet.context import npm_artifact
from analyzer.devnet.solc import fixture_artifact
from analyzer.engine.impact import build_venues
from analyzer.model import Snapshot
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.uniswap_v3 import POOL_INIT_CODE_HASH, pool_address
from protocols.uniswap_v3.executor import abi
from protocols.uniswap_v3.reader import TICK_BITMAP, UniswapV3Reader
from tests.conftest import requires_anvil


def test_pool_init_code_hash_matches_the_core_bytecode_and_the_periphery_constant():
    bytecode = npm_artifact("@uniswap/v3-core", "UniswapV3Pool")["bytecode"]
    from eth_utils import keccak

    assert keccak(hexstr=bytecode) == POOL_INIT_CODE_HASH
    source = (REPO_ROOT / "node_modules/@uniswap/v3-periphery/contracts/libraries/PoolAddress.sol").read_text()
    assert re.search(r"POOL_INIT_CODE_HASH = 0x([0-9a-f]{64})", source).group(1) == POOL_INIT_CODE_HASH.hex()


def test_mainnet_pool_addresses_are_the_published_ones():
    from analyzer.books import builtin_markets
    from protocols import get

    (mainnet,) = builtin_markets([get("uniswap-v3")], 1)
    book = mainnet.deployment
    by_name = {p["name"]: p["pool"] for p in book["pools"]}
    # published on info.uniswap.org / etherscan
    assert by_name["WETH/USDC 0.05%"] == "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
    assert by_name["WBTC/WETH 0.3%"] == "0xCBCdF9626bC03E24f779434178A73a0B4bad62eD"
    for pool in book["pools"]:   # every pool of the book is the factory's CREATE2 address of its tokens and fee
        assert pool_address(book["factory"], pool["quote"], pool["asset"], pool["fee"]) == pool["pool"], pool["name"]


def test_tick_math_bounds_and_inverse():
    assert v3.get_sqrt_ratio_at_tick(v3.MIN_TICK) == v3.MIN_SQRT_RATIO
    assert v3.get_sqrt_ratio_at_tick(v3.MAX_TICK) == v3.MAX_SQRT_RATIO
    assert v3.get_sqrt_ratio_at_tick(0) == 1 << 96
    for tick in (-200_000, -1, 0, 1, 12_345, 400_000):
        sqrt = v3.get_sqrt_ratio_at_tick(tick)
        assert v3.get_tick_at_sqrt_ratio(sqrt) == tick
        assert v3.get_tick_at_sqrt_ratio(sqrt - 1) == tick - 1
        assert abs(sqrt / 2**96 - 1.0001 ** (tick / 2)) < 1e-9 * 1.0001 ** (tick / 2)


def test_bitmap_words_decode_to_ticks():
    assert v3.initialised_ticks(-1, (1 << 255) | 1, 10) == [-2560, -10]
    assert v3.initialised_ticks(0, 0b101, 60) == [0, 120]


@requires_anvil
def test_reader_rows_agree_with_the_chain_and_the_oracles(devnet):
    w3 = devnet.w3
    book = devnet.book
    deployment = market_of(book, "uniswap-v3")
    block = w3.eth.block_number
    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [])
    rows = UniswapV3Reader(ctx, deployment).read_markets()
    section = devnet.scenario.protocol("uniswap-v3")
    assert len(rows["venues"]) == len(section["pools"]) == len(deployment["pools"])
    symbol_of = {a: s for s, a in book["tokens"].items()}
    feed_abi = fixture_artifact("oracles", "PriceFeed")["abi"]
    feed_price = {s: w3.eth.contract(address=f, abi=feed_abi).functions.latestAnswer().call() / 1e8
                  for s, f in book["feeds"].items()}
    prices = {r["address"]: r["price_usd"] for r in rows["assets"]}
    for row, spec in zip(rows["venues"], section["pools"], strict=True):
        params = json.loads(row["params"])
        pool = w3.eth.contract(address=row["venue"], abi=abi("UniswapV3Pool"))
        slot0 = pool.functions.slot0().call()
        assert (int(params["sqrt_price_x96"]), params["tick"]) == (slot0[0], slot0[1])
        nets = {int(t): int(n) for t, n in params["ticks"]}
        for tick, net in nets.items():
            assert pool.functions.ticks(tick).call()[1] == net
        # active liquidity = sum of liquidityNet at or below the current tick (Tick.cross bookkeeping)
        assert sum(n for t, n in nets.items() if t <= slot0[1]) == int(params["liquidity"]) \
            == pool.functions.liquidity().call()
        assert sum(nets.values()) == 0
        # start price = the PriceFeeds' (to 1e-12: the Q64.96 square root, not a round figure)
        asset = symbol_of[row["asset"]]
        assert prices[row["asset"]] == pytest.approx(feed_price[asset], rel=1e-12)
        # the pool holds the scenario's tvl_usd at oracle prices (positions round up by a few wei)
        value = sum(w3.eth.contract(address=t, abi=abi("ERC20")).functions.balanceOf(row["venue"]).call()
                    / 10 ** book["decimals"][symbol_of[t]] * feed_price[symbol_of[t]]
                    for t in (params["token0"], params["token1"]))
        assert value == pytest.approx(spec["tvl_usd"], rel=1e-3)
        # deep near the price, thin in the tails: liquidity after 10% of price is far below at the price
        in_range = sorted(nets)
        tail = sum(n for t, n in nets.items() if t <= in_range[-2]) if len(in_range) > 2 else 0
        assert 0 < tail < int(params["liquidity"]) / 5


@requires_anvil
def test_the_words_of_minted_ticks_give_the_same_ticks_as_every_bitmap_word(devnet):
    """The reader reads the tickBitmap words of the ticks the pools' Mint events name: the same
    venues, to the tick and its liquidityNet, as reading every word from MIN_TICK's to MAX_TICK's
    (what it falls back to when the logs contradict the pool's liquidity: here a node answering
    no logs), from a small fraction of the words."""
    w3 = devnet.w3
    block = w3.eth.block_number
    deployment = market_of(devnet.book, "uniswap-v3")
    asked: dict[str, list[int]] = {"events": [], "no logs": []}

    def read(label, get_logs):
        def batched(calls):
            asked[label].append(sum(c.signature == TICK_BITMAP for c in calls))
            return multicall(w3, calls, block=block)
        return UniswapV3Reader(ReadContext(w3, 31337, block, batched, get_logs), deployment).read_markets()

    def get_logs(address, topics, from_block, to_block):
        return [dict(log) for log in w3.eth.get_logs({"address": address, "topics": topics,
                                                      "fromBlock": from_block, "toBlock": to_block})]

    from_events, from_every_word = read("events", get_logs), read("no logs", lambda *a, **k: [])
    assert from_events == from_every_word
    every_word = sum(len(v3.bitmap_words(60 if p["fee"] == 3000 else {100: 1, 500: 10, 10000: 200}[p["fee"]]))
                     for p in deployment["pools"])
    assert sum(asked["no logs"]) == every_word       # no Mint named: every word
    assert 0 < sum(asked["events"]) < every_word / 50


@requires_anvil
def test_engine_venues_from_the_devnet_snapshot_route_wsteth_across_two_pools(devnet):
    w3 = devnet.w3
    block = w3.eth.block_number
    ctx = ReadContext(w3, 31337, block, lambda calls: multicall(w3, calls, block=block), lambda *a, **k: [])
    rows = UniswapV3Reader(ctx, market_of(devnet.book, "uniswap-v3")).read_markets()
    snapshot = Snapshot(meta={"chain_id": 31337, "block_number": block}, assets=rows["assets"],
                        venues=rows["venues"]).validate()
    venues = build_venues(snapshot)
    wsteth, weth = devnet.book["tokens"]["wstETH"], devnet.book["tokens"]["WETH"]
    assert len(venues[wsteth].venues) == 2
    assert venues[wsteth].mid_price() == pytest.approx(3500.0, rel=1e-9)
    weights = venues[wsteth].weights(True)
    # both pools spread their TVL over the same ranges, so depth near the price goes as TVL: the
    # routing share of the WETH-quoted pool is its share of the two pools' tvl_usd in the scenario
    tvl = {(p["asset"], p["quote"]): p["tvl_usd"] for p in devnet.scenario.protocol("uniswap-v3")["pools"]}
    expected = tvl[("wstETH", "WETH")] / (tvl[("wstETH", "WETH")] + tvl[("wstETH", "USDC")])
    assert weights[0] == pytest.approx(expected, rel=0.01)
    result = venues[wsteth].copy().trade(3000.0)
    mids = [v.mid_price() for v in venues[wsteth].venues]
    assert result.price_after < 3500.0 and result.amount_in == pytest.approx(3000.0, rel=1e-12)
    assert venues[weth].mid_price() == pytest.approx(3000.0, rel=1e-9)
    assert mids[0] == pytest.approx(3500.0, rel=1e-9)   # copy() left the originals untouched


@pytest.mark.parametrize("pools, message", [
    ([{"asset": "WETHH", "quote": "USDC", "fee": 500, "tvl_usd": 1e6}], r"pools\[0\].asset.*WETHH"),
    ([{"asset": "WETH", "quote": "USDC", "fee": 400, "tvl_usd": 1e6}], r"pools\[0\].fee"),
    ([{"asset": "WETH", "quote": "USDC", "fee": 500, "tvl_usd": -1}], r"pools\[0\].tvl_usd"),
])
def test_bad_scenario_pools_are_named_in_the_error(pools, message):
    from types import SimpleNamespace

    from analyzer.devnet import scenario as scenario_mod
    from analyzer.errors import ContagionError
    from protocols.uniswap_v3.devnet import pool_specs

    spec = scenario_mod.load("mainnet-like")
    spec.protocols = {**spec.protocols, "uniswap-v3": {"pools": pools}}
    with pytest.raises(ContagionError, match=message):
        pool_specs(SimpleNamespace(scenario=spec))


def test_start_sqrt_price_is_the_exact_root_of_the_oracle_ratio():
    from fractions import Fraction

    from analyzer.amm.layout import sqrt_price_x96_of

    # WETH (18) at 3000 USD against USDC (6): 3000e6 / 1e18 USDC wei per WETH wei, WETH as token0
    sqrt_price = sqrt_price_x96_of(Fraction(3000), Fraction(1), 18, 6, True)
    target = Fraction(3000 * 10**6, 10**18) * 2**192
    assert sqrt_price**2 <= target < (sqrt_price + 1) ** 2
    flipped = sqrt_price_x96_of(Fraction(3000), Fraction(1), 18, 6, False)
    assert flipped**2 <= Fraction(10**18, 3000 * 10**6) * 2**192 < (flipped + 1) ** 2
