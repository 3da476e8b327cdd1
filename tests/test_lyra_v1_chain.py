"""Lyra V1 on the devnet (the real contracts): the reader and the rules against the chain."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from analyzer.books import market_of
from analyzer.chain import rpc
from analyzer.model import to_table
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.lyra_v1 import rules as R
from protocols.lyra_v1.devnet import artifact
from protocols.lyra_v1.executor import LyraExecutor
from protocols.lyra_v1.reader import LyraReader
from tests.conftest import requires_anvil

pytestmark = requires_anvil
WAD = 10**18


def lyra(devnet):
    if "lyra-v1" not in devnet.book["protocols"]:
        pytest.skip("lyra-v1 is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    return market_of(devnet.book, "lyra-v1")


def contract(w3, address, name):
    return w3.eth.contract(address=address, abi=artifact(name)["abi"])


def read(devnet, deployment):
    """Reader rows at the latest block: (markets rows, hedgers rows, options frame, block)."""
    w3 = devnet.w3
    block = w3.eth.block_number

    def get_logs(address, topics, start, end):
        return w3.eth.get_logs({"address": address, "topics": topics, "fromBlock": start, "toBlock": end})

    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block), get_logs=get_logs)
    reader = LyraReader(ctx, deployment)
    rows = reader.read_markets()
    accounts = reader.discover_accounts(0, block)
    options = to_table("options", reader.read_accounts(accounts)["options"])
    return rows, options, block


def keeper(devnet):
    return devnet.w3.eth.accounts[1]


def test_reader_positions_equal_the_option_token(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    m = deployment["markets"][0]
    token = contract(w3, m["optionToken"], "OptionToken")
    _, options, block = read(chain_checkpoint, deployment)
    # every position id ever minted, straight from the token (ACTIVE = 1), independent of the reader's owners
    expected = {}
    for pid in range(1, token.functions.nextId().call(block_identifier=block)):
        pos = token.functions.getOptionPosition(pid).call(block_identifier=block)
        if pos[5] == 1:
            owner = token.functions.ownerOf(pid).call(block_identifier=block)
            expected[pid] = (owner, pos[1], pos[2], pos[3], pos[4])
    assert len(expected) >= 40
    assert set(options["position_id"]) == set(expected)
    market = contract(w3, m["optionMarket"], "OptionMarket")
    for row in options.itertuples():
        owner, strike_id, kind, amount, collateral = expected[row.position_id]
        strike, board = market.functions.getStrikeAndBoard(strike_id).call(block_identifier=block)
        assert row.account == owner
        assert (int(row.raw_size), int(row.raw_collateral)) == (amount, collateral)
        assert row.strike == strike[1] / WAD and row.expiry == board[1]
        assert (row.kind, row.side) == {0: ("call", "long"), 1: ("put", "long"), 2: ("call", "short"),
                                        3: ("call", "short"), 4: ("put", "short")}[kind]
        assert row.collateral_asset == (m["baseAsset"] if kind == 2 else m["quoteAsset"] if kind > 2 else "")
    # the seed opened every kind, with short collateral on both assets
    assert set(zip(options["kind"], options["side"], strict=True)) == {
        ("call", "long"), ("put", "long"), ("call", "short"), ("put", "short")}


def test_snapshot_net_delta_equals_the_cached_value_after_a_cache_update(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    LyraExecutor(w3, deployment, keeper(chain_checkpoint)).update_caches()
    rows, _, block = read(chain_checkpoint, deployment)
    cache = contract(w3, deployment["markets"][0]["greekCache"], "OptionGreekCache")
    on_chain = cache.functions.getGlobalNetDelta().call(block_identifier=block)
    hedger = contract(w3, deployment["markets"][0]["poolHedger"], "ShortPoolHedger")
    assert on_chain != 0
    (h,) = rows["hedgers"]
    assert h["net_delta"] == -on_chain / WAD  # the pool holds the opposite of the users' net delta
    assert h["hedge_position"] == hedger.functions.getCurrentHedgedNetDelta().call(block_identifier=block) / WAD


def test_min_collateral_equals_get_min_collateral_at_random_points(devnet):
    deployment = lyra(devnet)
    w3 = devnet.w3
    cache = contract(w3, deployment["markets"][0]["greekCache"], "OptionGreekCache")
    block = w3.eth.block_number
    now = w3.eth.get_block(block)["timestamp"]
    rng = np.random.default_rng(20240901)
    kinds, strikes, ttes, spots, amounts, chain = [], [], [], [], [], []
    for _ in range(60):
        kind = int(rng.choice([R.SHORT_CALL_BASE, R.SHORT_CALL_QUOTE, R.SHORT_PUT_QUOTE]))
        spot, strike = int(rng.uniform(800, 6000) * 1e6) * 10**12, int(rng.uniform(1000, 5000) * 1e4) * 10**14
        tte, amount = int(rng.uniform(600, 150 * 86400)), int(10 ** rng.uniform(-2, 1.6) * 1e6) * 10**12
        chain.append(cache.functions.getMinCollateral(kind, strike, now + tte, spot, amount)
                     .call(block_identifier=block) / WAD)
        kinds.append(kind), strikes.append(strike / WAD), ttes.append(tte), spots.append(spot / WAD)
        amounts.append(amount / WAD)
    mine = R.min_collateral(np.array(kinds), np.array(strikes), np.array(ttes), np.array(spots), np.array(amounts))
    np.testing.assert_allclose(mine, chain, rtol=1e-9, atol=0)
    # the points cover the three regimes of the rule: static floor, Black-Scholes, full collateral
    chain, kinds = np.array(chain), np.array(kinds)
    floor = np.where(kinds == R.SHORT_CALL_BASE, 0.2, 200.0)
    full = np.where(kinds == R.SHORT_CALL_BASE, amounts, np.array(amounts) * np.array(strikes))
    assert (chain == floor).sum() >= 5 and (chain == full).sum() >= 3 and ((chain > floor) & (chain < full)).sum() >= 20


def _options_frame(options: pd.DataFrame, markets_rows: list[dict]) -> R.LyraOptionRules:
    rules = R.LyraOptionRules()
    for row in markets_rows:
        data = json.loads(row["params"])
        data["lyra_params"] = R.LyraParams.from_json(data["params"])
        rules.markets[row["market"]] = data
    return rules


@pytest.mark.parametrize("move", [-0.3, -0.2, -0.1, 0.1, 0.2, 0.3])
def test_rule_liquidatable_set_equals_the_positions_liquidate_position_accepts(chain_checkpoint, move):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    rows, options, _ = read(chain_checkpoint, deployment)
    rules = _options_frame(options, rows["markets"])
    spot = json.loads(rows["markets"][0]["params"])["spot"] * (1 + move)
    executor = LyraExecutor(w3, deployment, keeper(chain_checkpoint))
    executor.set_price(deployment["underlying"], spot)
    spot = round(spot * 1e8) / 1e8  # the feed's 8 decimals
    shorts = options[options["side"] == "short"].reset_index(drop=True)
    accepted, predicted = [], []
    for i, row in shorts.iterrows():
        result = executor.liquidate_position(int(row.position_id))
        # the rule at the time of the block the liquidation was mined in
        receipt_block = w3.eth.get_block("latest")
        accepted.append(result.success)
        predicted.append(bool(rules.liquidatable_rows(shorts.iloc[[i]], spot, receipt_block["timestamp"])[0]))
    accepted, predicted = np.array(accepted), np.array(predicted)
    assert (accepted == predicted).all(), shorts.loc[accepted != predicted, ["position_id", "kind", "strike"]]
    assert 0 < predicted.sum() < len(shorts) or abs(move) == 0.3


def test_penalty_split_equals_the_liquidation_event(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    rows, options, _ = read(chain_checkpoint, deployment)
    executor = LyraExecutor(w3, deployment, keeper(chain_checkpoint))
    executor.set_price(deployment["underlying"], json.loads(rows["markets"][0]["params"])["spot"] * 0.7)
    market = contract(w3, deployment["markets"][0]["optionMarket"], "OptionMarket")
    puts = options[(options["kind"] == "put") & (options["side"] == "short")]
    checked = 0
    for row in puts.itertuples():
        receipt_before = w3.eth.block_number
        if not executor.liquidate_position(int(row.position_id)).success:
            continue
        (event,) = market.events.Trade().get_logs(from_block=receipt_before + 1)
        cost = event["args"]["trade"]["totalCost"] / WAD
        fees = R.liquidation_fees(np.array([cost]), np.array([row.collateral]), np.array([15.0]), np.array([1.0]))
        liquidation = event["args"]["liquidation"]
        for mine, theirs in (("return_collateral", "returnCollateral"), ("lp_premiums", "lpPremiums"),
                             ("lp_fee", "lpFee"), ("liquidator_fee", "liquidatorFee"), ("sm_fee", "smFee"),
                             ("insolvent_amount", "insolventAmount")):
            assert fees[mine][0] == pytest.approx(liquidation[theirs] / WAD, rel=1e-9, abs=1e-9)
        checked += 1
    assert checked >= 3


def test_gamma_by_strike_equals_a_finite_difference_of_the_contracts_delta(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    LyraExecutor(w3, deployment, keeper(chain_checkpoint)).update_caches()
    rows, _, block = read(chain_checkpoint, deployment)
    state = json.loads(rows["markets"][0]["params"])
    now = w3.eth.get_block(block)["timestamp"]
    cache = contract(w3, deployment["markets"][0]["greekCache"], "OptionGreekCache")
    # a library's external functions take structs by their internal name in the selector
    selector = keccak(text="delta(BlackScholes.BlackScholesInputs)")[:4]
    rate = int(state["params"]["rate_and_carry"] * WAD)
    bump = state["spot"] * 0.002
    clusters = 0
    for s in state["strikes"]:
        exposure = s["call_exposure"] + s["put_exposure"]
        vol = round(s["nav_vol"] * WAD)  # the GWAV vol the greek cache prices with
        board = cache.functions.getOptionBoardCache(s["board_id"]).call(block_identifier=block)
        call_delta, _ = R.bs.delta(s["expiry"] - board[5], s["nav_vol"], board[6] / WAD, s["strike"],
                                   state["params"]["rate_and_carry"])
        # exact when the board was priced in the read's second; otherwise the GWAV vol has drifted since
        # (~1e-6 vol per second right after the seed's trades)
        assert s["cached_call_delta"] == pytest.approx(float(call_delta), abs=1e-12 if board[5] == now else 1e-5)
        deltas = []
        for spot in (state["spot"] + bump, state["spot"] - bump):
            inputs = (s["expiry"] - now, vol, int(spot * WAD), int(s["strike"] * WAD), rate)
            answer = w3.eth.call({"to": deployment["blackScholes"], "data": "0x" + (selector + abi_encode(
                ["(uint256,uint256,uint256,uint256,int256)"], [inputs])).hex()}, block_identifier=block)
            call, put = abi_decode(["int256", "int256"], answer)
            deltas.append((s["call_exposure"] * call + s["put_exposure"] * put) / WAD)
        finite_difference = (deltas[0] - deltas[1]) / (2 * bump)
        assert s["net_gamma"] == pytest.approx(finite_difference, rel=1e-4, abs=1e-9)
        clusters += exposure != 0
    assert clusters >= 5
    assert rows["hedgers"][0]["net_gamma"] == pytest.approx(-sum(s["net_gamma"] for s in state["strikes"]), rel=1e-12)


def test_rehedge_flow_equals_the_change_of_the_cached_net_delta(frozen_block_time):
    # the caches are priced before and after the move at one time, as the rule is
    deployment = lyra(frozen_block_time)
    w3 = frozen_block_time.w3
    executor = LyraExecutor(w3, deployment, keeper(frozen_block_time))
    executor.update_caches()
    rows, _, block = read(frozen_block_time, deployment)
    state = json.loads(rows["markets"][0]["params"])
    cache = contract(w3, deployment["markets"][0]["greekCache"], "OptionGreekCache")
    before = cache.functions.getGlobalNetDelta().call() / WAD
    executor.set_price(deployment["underlying"], state["spot"] * 0.95)
    executor.update_caches()
    after = cache.functions.getGlobalNetDelta().call() / WAD
    updated_at = w3.eth.get_block("latest")["timestamp"]
    s = pd.DataFrame(state["strikes"])
    flow = R.rehedge_flow(s["strike"].to_numpy(), (s["expiry"] - updated_at).to_numpy(),
                          s["nav_vol"].to_numpy(), s["call_exposure"].to_numpy(),
                          s["put_exposure"].to_numpy(), state["spot"], -0.05 * state["spot"])
    assert flow == pytest.approx(after - before, rel=1e-9)
    # the sign of the flow is the pool's gamma: a short-gamma pool sells into the fall, a long-gamma one buys
    assert np.sign(flow) == np.sign(rows["hedgers"][0]["net_gamma"])


def test_penalty_split_equals_get_liquidation_fees_in_every_branch(devnet):
    deployment = lyra(devnet)
    token = contract(devnet.w3, deployment["markets"][0]["optionToken"], "OptionToken")
    rng = np.random.default_rng(7)
    cost, collateral = rng.uniform(0, 2000, 40), rng.uniform(0, 2500, 40)
    collateral[:5] = rng.uniform(0, 15, 5)  # below the 15 sUSD minimum fee
    names = ("return_collateral", "lp_premiums", "lp_fee", "liquidator_fee", "sm_fee", "insolvent_amount")
    mine = R.liquidation_fees(cost, collateral, np.full(40, 15.0), np.ones(40))
    branches = set()
    for i in range(40):
        theirs = token.functions.getLiquidationFees(int(cost[i] * 1e6) * 10**12, int(collateral[i] * 1e6) * 10**12,
                                                    15 * WAD, WAD).call()
        mine_i = R.liquidation_fees(np.array([int(cost[i] * 1e6) / 1e6]), np.array([int(collateral[i] * 1e6) / 1e6]),
                                    np.array([15.0]), np.array([1.0]))
        for k, name in enumerate(names):
            assert float(mine_i[name][0]) == pytest.approx(theirs[k] / WAD, rel=1e-9, abs=1e-9)
        branches.add((theirs[0] > 0, theirs[5] > 0, collateral[i] < 15))
    assert len(branches) >= 3 and mine["sm_fee"].shape == (40,)


def test_set_price_moves_the_option_market_and_leaves_the_lending_feed_to_the_mover(chain_checkpoint):
    """The market's spot is its Synthetix rate: set_price moves it; the lending protocols' WETH
    feed is moved at its root by the core's price mover, never by an option executor."""
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    adapter = contract(w3, deployment["synthetixAdapter"], "SynthetixAdapter")
    market = deployment["markets"][0]["optionMarket"]
    feed_abi = [{"name": "latestAnswer", "type": "function", "stateMutability": "view", "inputs": [],
                 "outputs": [{"name": "", "type": "int256"}]}]
    feed = w3.eth.contract(address=chain_checkpoint.book["feeds"]["WETH"], abi=feed_abi)
    before = feed.functions.latestAnswer().call()
    assert adapter.functions.getSpotPriceForMarket(market).call() == before * 10**10
    LyraExecutor(w3, deployment, keeper(chain_checkpoint)).set_price("WETH", 2345.67)
    assert adapter.functions.getSpotPriceForMarket(market).call() == 2345_670_000_000_000_000_000
    assert feed.functions.latestAnswer().call() == before


@pytest.mark.parametrize("move", [-0.2, 0.1])
def test_lp_token_price_after_a_spot_move_equals_get_token_price(chain_checkpoint, move):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    executor = LyraExecutor(w3, deployment, keeper(chain_checkpoint))
    executor.update_caches()
    rows, _, block = read(chain_checkpoint, deployment)
    state = json.loads(rows["markets"][0]["params"])
    s = pd.DataFrame(state["strikes"])
    # the cached option values were priced when each board's cache was last updated
    args = (s["strike"].to_numpy(), (s["expiry"] - s["cache_updated_at"]).to_numpy(),
            s["nav_vol"].to_numpy(), s["call_exposure"].to_numpy(), s["put_exposure"].to_numpy())
    # 1e-6: the cache priced its options at its update blocks, with the GWAV vol of then, which drifts by
    # ~1e-6 vol per second after the seed's trades; the rule reprices with the GWAV vol read now
    assert R.lp_token_price(state["pool"], *args, state["spot"]) == pytest.approx(state["lp_token_price"], rel=1e-6)
    executor.set_price(deployment["underlying"], state["spot"] * (1 + move))
    executor.update_caches()
    pool = contract(w3, deployment["markets"][0]["liquidityPool"], "LiquidityPool")
    updated_at = pd.DataFrame(json.loads(read(chain_checkpoint, deployment)[0]["markets"][0]["params"])["strikes"])
    args = (args[0], (s["expiry"] - updated_at["cache_updated_at"]).to_numpy(), *args[2:])
    predicted = R.lp_token_price(state["pool"], *args, state["spot"] * (1 + move))
    assert predicted == pytest.approx(pool.functions.getTokenPrice().call() / WAD, rel=1e-6)
    assert predicted != pytest.approx(state["lp_token_price"], rel=1e-4)


def test_a_liquidation_moves_the_skew_and_not_the_base_iv_as_the_vol_spiral_rule_says(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    rows, options, _ = read(chain_checkpoint, deployment)
    state = json.loads(rows["markets"][0]["params"])
    executor = LyraExecutor(w3, deployment, keeper(chain_checkpoint))
    executor.set_price(deployment["underlying"], state["spot"] * 0.7)
    market = contract(w3, deployment["markets"][0]["optionMarket"], "OptionMarket")
    token = contract(w3, deployment["markets"][0]["optionToken"], "OptionToken")
    spiral = R.VolSpiral()
    moved = 0
    for row in options[options["side"] == "short"].itertuples():
        strike_id = token.functions.getOptionPosition(int(row.position_id)).call()[1]
        (strike, board) = market.functions.getStrikeAndBoard(strike_id).call()
        if not executor.liquidate_position(int(row.position_id)).success:
            continue
        (strike_after, board_after) = market.functions.getStrikeAndBoard(strike_id).call()
        base, skew = spiral.step(np.array([board[2] / WAD]), np.array([strike[2] / WAD]), 1.0, 1.0,
                                 np.zeros(1), np.array([row.size]))
        assert board_after[2] == board[2]  # base IV untouched by a forced buy-back
        assert strike_after[2] / WAD == pytest.approx(float(skew[0]), abs=1e-15)
        assert float(base[0]) == board[2] / WAD
        moved += 1
    assert moved >= 3


def test_set_base_iv_is_read_back_by_the_reader(chain_checkpoint):
    deployment = lyra(chain_checkpoint)
    rows, _, _ = read(chain_checkpoint, deployment)
    board_id = json.loads(rows["markets"][0]["params"])["boards"][0]
    LyraExecutor(chain_checkpoint.w3, deployment, keeper(chain_checkpoint)).set_base_iv(board_id, 1.234)
    rows, _, _ = read(chain_checkpoint, deployment)
    strikes = [s for s in json.loads(rows["markets"][0]["params"])["strikes"] if s["board_id"] == board_id]
    assert strikes and all(s["base_iv"] == 1.234 for s in strikes)


def test_scan_gives_a_valid_snapshot_with_the_lp_token_as_a_receipt(devnet):
    from analyzer.scan import scan
    from protocols import get

    deployment = lyra(devnet)
    snap = scan(devnet.url, [get("lyra-v1")], book=devnet.book, cache_dir=None)
    m = deployment["markets"][0]
    lp = snap.assets.set_index("address").loc[m["liquidityToken"]]
    pool = contract(devnet.w3, m["liquidityPool"], "LiquidityPool")
    assert lp["receipt_of"] == f"lyra-v1:{m['quoteAsset']}"
    assert lp["price_usd"] == pool.functions.getTokenPrice().call(block_identifier=snap.meta["block_number"]) / WAD
    token = contract(devnet.w3, m["optionToken"], "OptionToken")
    active = sum(token.functions.getOptionPosition(i).call()[5] == 1 for i in range(1, token.functions.nextId().call()))
    assert len(snap.options) == active
    assert snap.markets.loc[0, "asset"] == snap.hedgers.loc[0, "asset"] == devnet.book["tokens"]["WETH"]


def test_position_gammas_summed_by_strike_equal_the_short_gamma_clusters_of_the_cache(devnet):
    deployment = lyra(devnet)
    rows, options, block = read(devnet, deployment)
    rules = _options_frame(options, rows["markets"])
    state = json.loads(rows["markets"][0]["params"])
    strikes = pd.DataFrame(state["strikes"])
    now = devnet.w3.eth.get_block(block)["timestamp"]
    # the options table (OptionToken positions) and the strike exposures (greek cache) are read apart
    key = pd.MultiIndex.from_frame(options[["strike", "expiry"]])
    row_of = pd.Series(range(len(strikes)), index=pd.MultiIndex.from_frame(strikes[["strike", "expiry"]]))
    at = row_of.loc[key].to_numpy()
    greeks = R.position_greeks(rules.option_type(options), options["strike"].to_numpy(float),
                               options["expiry"].to_numpy() - now, strikes["nav_vol"].to_numpy()[at],
                               state["spot"], options["size"].to_numpy(float))
    by_strike = np.zeros(len(strikes))
    np.add.at(by_strike, at, greeks["gamma"])
    np.testing.assert_allclose(by_strike, strikes["net_gamma"].to_numpy(), rtol=1e-9, atol=1e-15)
    assert rows["hedgers"][0]["net_gamma"] == pytest.approx(-by_strike.sum(), rel=1e-9)


@pytest.mark.parametrize("move, iv_move", [(-0.3, 0.0), (0.25, 0.0), (-0.1, 0.4)])
def test_the_buyback_value_equals_the_liquidations_lp_premiums(chain_checkpoint, move, iv_move):
    """The engine's buy-back (per-strike GWAV vol × the liquidation vol shock, plus the AMM's fees at the
    board IV the move left, liquidations in order) against each real liquidatePosition's Trade event:
    its lpPremiums (the total cost, or the collateral left after the penalty when it does not cover it),
    in USD. An IV move is put on chain by the executor's shift_iv, every live board by the same points."""
    deployment = lyra(chain_checkpoint)
    w3 = chain_checkpoint.w3
    # read at a block of now, seconds before the liquidations as in a replay (a devnet loaded from its cache
    # mines its next block at the wall clock: the GWAVs would move on between the read and the trades)
    rpc(w3, "evm_mine", [])
    rows, options, _ = read(chain_checkpoint, deployment)
    rules = _options_frame(options, rows["markets"])
    (market_row,) = rows["markets"]
    atm_iv = next(a["iv"] for a in rows["assets"] if a["address"] == market_row["asset"])
    rules.markets[market_row["market"]]["snapshot_iv"] = atm_iv
    executor = LyraExecutor(w3, deployment, keeper(chain_checkpoint))
    market = contract(w3, deployment["markets"][0]["optionMarket"], "OptionMarket")
    boards = json.loads(market_row["params"])["boards"]
    base_before = [market.functions.getOptionBoard(b).call()[2] for b in boards]
    executor.shift_iv(deployment["underlying"], iv_move)
    after = [market.functions.getOptionBoard(b).call()[2] / WAD for b in boards]
    assert after == pytest.approx([b / WAD + iv_move for b in base_before], abs=1e-12)
    executor.set_price(deployment["underlying"], json.loads(market_row["params"])["spot"] * (1 + move))
    liquidated, chain_usd, spots, times = [], [], [], []
    for row in options[options["side"] == "short"].itertuples():
        before = w3.eth.block_number
        if not executor.liquidate_position(int(row.position_id)).success:
            continue
        (event,) = market.events.Trade().get_logs(from_block=before + 1)
        spot = event["args"]["trade"]["spotPrice"] / WAD
        in_base = row.collateral_asset == deployment["markets"][0]["baseAsset"]
        liquidated.append(int(row.position_id))
        chain_usd.append(event["args"]["liquidation"]["lpPremiums"] / WAD * (spot if in_base else 1.0))
        spots.append(spot)
        times.append(w3.eth.get_block(event["blockNumber"])["timestamp"])
    assert len(liquidated) >= 3
    ordered = options.set_index("position_id").loc[liquidated].reset_index()
    answer = rules.option_liquidations(ordered, np.array(spots), np.full(len(ordered), atm_iv + iv_move), times[0])
    assert answer.liquidated.all()
    assert answer.value_usd == pytest.approx(np.array(chain_usd), rel=1e-3)
    assert answer.value_usd.sum() == pytest.approx(sum(chain_usd), rel=2e-4)
