"""Morpho Blue on its devnet (fixtures/scenarios/morpho.toml): the reader to the wei, the rule
against real ``liquidate`` calls, and a market loss travelling through vault share prices into
a market that takes the shares as collateral."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.books import market_of
from analyzer.chain import rpc
from analyzer.engine.cascade import simulate
from analyzer.scenarios import ShockScenario
from protocols import get
from protocols.morpho_blue import exact
from protocols.morpho_blue.contracts import MARKET_PARAMS, morpho_abi, vault_abi
from protocols.morpho_blue.rules import MorphoBlueRules, vault_share_values
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]

ORACLE_ABI = [{"type": "function", "name": "price", "stateMutability": "view", "inputs": [],
               "outputs": [{"type": "uint256"}]}]
# a move that leaves some borrowers merely liquidatable and others short of collateral (bad debt)
SHOCK = {"WETH": -0.30, "wstETH": -0.33, "rETH": -0.30, "WBTC": -0.35, "USDe": -0.05}


@pytest.fixture(scope="module")
def morpho_devnet():
    from analyzer.devnet import scenario
    from analyzer.devnet.build import start_devnet

    running = start_devnet(scenario.load("morpho"), [get("morpho-blue")])
    try:
        yield running
    finally:
        running.anvil.stop()


@pytest.fixture
def checkpoint(morpho_devnet):
    snapshot_id = morpho_devnet.anvil.snapshot()
    try:
        yield morpho_devnet
    finally:
        morpho_devnet.anvil.revert(snapshot_id)


def scan(devnet):
    from analyzer.scan import scan as scan_chain

    return scan_chain(devnet.url, [get("morpho-blue")], book=devnet.book, cache_dir=None)


def markets_of(snapshot) -> dict[str, dict]:
    rows = snapshot.markets[snapshot.markets["protocol"] == "morpho-blue"]
    out = {}
    for market, text in zip(rows["market"], rows["params"], strict=True):
        params = json.loads(text)
        if params["role"] == "loan":
            out[market] = params
    return out


def params_tuple(p: dict) -> tuple:
    return (p["loan_token"], p["collateral_token"], p["oracle"], p["irm"], int(p["lltv"]))


def send(w3, call, sender):
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}), timeout=60)
    assert receipt["status"] == 1
    return receipt


def test_positions_equal_the_contracts_view_to_the_wei(checkpoint):
    """Debt, supply and collateral of every position and each market's accrued totals equal what
    the contract computes when it accrues interest at the snapshot's timestamp; health factors are
    the contract's max borrow over debt with its oracle's price."""
    w3, book = checkpoint.w3, market_of(checkpoint.book, "morpho-blue")
    # a block of our own first: after a state load anvil refuses to reuse the loaded head's timestamp
    rpc(w3, "evm_mine", [])
    snapshot = scan(checkpoint)
    markets = markets_of(snapshot)
    assert len(markets) >= 10 and {int(p["lltv"]) for p in markets.values()} >= {77 * 10**16, 965 * 10**15}
    morpho = w3.eth.contract(address=book["morpho"], abi=morpho_abi())
    timestamp = snapshot.meta["block_timestamp"]
    for params in markets.values():   # the contract's own accrual, in blocks at the snapshot's timestamp
        rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
        send(w3, morpho.functions.accrueInterest(params_tuple(params)), w3.eth.accounts[0])
    on_chain = {m: morpho.functions.market(bytes.fromhex(m[2:])).call() for m in markets}
    for m, p in markets.items():
        assert on_chain[m][:4] == [int(p[k]) for k in ("total_supply_assets", "total_supply_shares",
                                                        "total_borrow_assets", "total_borrow_shares")]
    rules = MorphoBlueRules()
    books = {b.market: b for b in rules.books(snapshot)}
    positions = snapshot.positions
    checked = 0
    for account, m in zip(snapshot.accounts["account"], snapshot.accounts["market"], strict=True):
        supply_shares, borrow_shares, collateral = morpho.functions.position(bytes.fromhex(m[2:]), account).call()
        tsa, tss, tba, tbs = on_chain[m][:4]
        mine = positions[(positions["market"] == m) & (positions["account"] == account)]
        raw = {(a, s): int(r) for a, s, r in zip(mine["asset"], mine["side"], mine["raw"], strict=True)}
        p = markets[m]
        if borrow_shares:   # SharesMathLib.toAssetsUp, written out here
            assert raw[(p["loan_token"], "debt")] == -(-borrow_shares * (tba + 1) // (tbs + 10**6))
        if supply_shares:
            assert raw[(p["loan_token"], "collateral")] == supply_shares * (tsa + 1) // (tss + 10**6)
        if collateral:
            assert raw[(p["collateral_token"], "collateral")] == collateral
        if borrow_shares:
            price = w3.eth.contract(address=p["oracle"], abi=ORACLE_ABI).functions.price().call()
            assert price == int(p["price_raw"])
            max_borrow = collateral * price // 10**36 * int(p["lltv"]) // 10**18
            debt = raw[(p["loan_token"], "debt")]
            b = books[m]
            row = int(np.flatnonzero(b.accounts == account)[0])
            oracle = snapshot.markets.set_index(["market", "asset"])["oracle_price_usd"]
            prices = np.array([oracle[(m, a)] for a in b.assets])
            account_params = json.loads(snapshot.accounts[(snapshot.accounts["market"] == m)
                                                          & (snapshot.accounts["account"] == account)]["params"].iloc[0])
            assert int(account_params["max_borrow"]) == max_borrow
            assert account_params["healthy"] == (max_borrow >= debt)
            assert rules.health_factor(b, prices)[row] == pytest.approx(max_borrow / debt, rel=1e-9)
            assert bool(rules.liquidatable(b, prices)[row]) == (max_borrow < debt)
            checked += 1
    assert checked >= 50


def _shock(devnet, snapshot):
    executor = get("morpho-blue").executor(devnet.w3, market_of(devnet.book, "morpho-blue"), devnet.w3.eth.accounts[1])
    symbols = dict(zip(snapshot.assets["symbol"], snapshot.assets["address"], strict=True))
    prices = dict(zip(snapshot.assets["symbol"], snapshot.assets["price_usd"], strict=True))
    for symbol, move in SHOCK.items():
        executor.set_price(symbols[symbol], prices[symbol] * (1 + move))
    return executor


@pytest.fixture
def frozen_clock(checkpoint):
    """Every block at one timestamp: no interest accrues between the read and the liquidations, so
    the rule's figures (at the read) are the chain's (at the transactions)."""
    rpc(checkpoint.w3, "evm_mine", [])
    rpc(checkpoint.w3, "anvil_setBlockTimestampInterval", [0])
    try:
        yield checkpoint
    finally:
        rpc(checkpoint.w3, "anvil_removeBlockTimestampInterval", [])


def test_the_rule_agrees_with_real_liquidations_and_losses_reach_vaults_and_their_borrowers(frozen_clock):
    checkpoint = frozen_clock
    w3, book = checkpoint.w3, market_of(checkpoint.book, "morpho-blue")
    before = scan(checkpoint)
    vaults = [w3.eth.contract(address=a, abi=vault_abi()) for a in book["vaults"].values()]
    unit = {v.address: v.functions.convertToAssets(10**18).call() for v in vaults}
    executor = _shock(checkpoint, before)
    shocked = scan(checkpoint)
    rules = MorphoBlueRules()
    oracle = shocked.markets.set_index(["market", "asset"])["oracle_price_usd"]
    engine_books = []
    proposed_total, bad_markets = 0, set()
    vault_market = next(m for m, p in markets_of(shocked).items() if p["collateral_token"] in unit)
    for b in rules.books(shocked):
        if b.market == vault_market:
            continue        # its collateral's price follows the other markets' losses: checked below
        prices = np.array([oracle[(b.market, a)] for a in b.assets])
        step = rules.liquidate(b, prices)
        proposed = {str(b.accounts[r]): i for i, r in enumerate(step.rows)}
        executed = set()
        for account in b.accounts[b.debt[:, 0] > 0]:
            outcome = executor.liquidate(str(account), None, None, market=b.market)
            assert outcome.success == (str(account) in proposed), (b.extra["name"], account, outcome.error)
            if not outcome.success:
                continue
            executed.add(str(account))
            i = proposed[str(account)]
            one_unit = 10.0 ** -_decimals(shocked, b.assets[1])     # the contract rounds to the base unit
            seized = outcome.seized[b.assets[1]] * one_unit
            assert seized == pytest.approx(step.seized[i, 1], rel=1e-9, abs=one_unit)
            left = b.debt[step.rows[i], 0] - step.repaid[i, 0]
            realised = executor.last_event["bad_debt_assets"] / 10 ** _decimals(shocked, b.assets[0])
            if step.seized[i, 1] >= b.collateral[step.rows[i], 1] * (1 - 1e-12):
                assert realised == pytest.approx(left, rel=1e-6, abs=1e-6)
                bad_markets.add(b.market)
            else:
                assert realised == 0
        proposed_total += len(executed)
        engine_books.append(rules.apply(b, step))
    assert proposed_total >= 10 and bad_markets, "the shock must liquidate and realise bad debt somewhere"
    # each vault's share price falls by its markets' realised losses, as the chain's convertToAssets
    predicted = vault_share_values(shocked, engine_books, rules)
    hit = 0
    for v in vaults:
        after = v.functions.convertToAssets(10**18).call()
        assert after / unit[v.address] == pytest.approx(predicted[v.address], rel=1e-6)
        hit += predicted[v.address] < 1 - 1e-4
    assert hit >= 2
    # the vault-share collateral market: liquidatable in the rule, at the written-down share price,
    # exactly when Morpho agrees
    b = next(x for x in rules.books(shocked) if x.market == vault_market)
    share = b.assets[1]
    prices = np.array([oracle[(b.market, b.assets[0])], oracle[(b.market, share)] * predicted[share]])
    engine = rules.liquidatable(b, prices)
    assert engine.any() and not engine.all()
    chain_vault_market = set()
    for row, account in enumerate(b.accounts):
        if b.debt[row, 0] > 0:
            outcome = executor.liquidate(str(account), None, None, market=b.market)
            assert outcome.success == bool(engine[row]), (account, outcome.error)
            chain_vault_market |= {str(account)} if outcome.success else set()
    # the engine's cascade from the pre-shock read: the same liquidations, the vaults written down
    # as the chain wrote them, and the vault-share borrowers liquidated in the round after
    cascade = simulate(before, ShockScenario(price_shocks=SHOCK, price_impact=False))
    liquidated = cascade.accounts[cascade.accounts["liquidated_usd"] > 0]
    assert set(liquidated.loc[liquidated["market"] == vault_market, "account"]) == chain_vault_market
    assert (liquidated.loc[liquidated["market"] == vault_market, "first_round"] >= 1).all()
    assert len(liquidated) == proposed_total + len(chain_vault_market)
    index = {a: i for i, a in enumerate(cascade.assets)}
    for v in vaults:
        asset = index[v.functions.asset().call()]
        engine_unit = (cascade.price_final[index[v.address]] / cascade.price_final[asset]) / (
            cascade.price_before[index[v.address]] / cascade.price_before[asset])
        assert engine_unit == pytest.approx(v.functions.convertToAssets(10**18).call() / unit[v.address], rel=1e-6)


def _decimals(snapshot, asset: str) -> int:
    return int(snapshot.assets.set_index("address").loc[asset, "decimals"])


def test_market_ids_are_the_hash_of_their_params(morpho_devnet):
    book = market_of(morpho_devnet.book, "morpho-blue")
    morpho = morpho_devnet.w3.eth.contract(address=book["morpho"], abi=morpho_abi())
    for market in book["markets"].values():
        on_chain = morpho.functions.idToMarketParams(bytes.fromhex(market["id"][2:])).call()
        assert [str(x) for x in on_chain] == [market[k] for k in ("loan", "collateral", "oracle", "irm", "lltv")]
    assert MARKET_PARAMS.count("address") == 4
    assert exact.liquidation_incentive_factor(86 * 10**16) == 10**36 // (10**18 - 3 * 10**17 * 14 // 100)


def test_the_graph_traces_a_market_loss_to_the_vaults_supplying_it_and_their_share_holders(morpho_devnet):
    from analyzer.devnet.scenario import account_address
    from analyzer.graph import build_graph
    from analyzer.graph.metrics import loss_reach

    w3, book = morpho_devnet.w3, market_of(morpho_devnet.book, "morpho-blue")
    morpho = w3.eth.contract(address=book["morpho"], abi=morpho_abi())
    reach = {m["market"]: m for m in loss_reach(build_graph(scan(morpho_devnet)))}
    vault_market = book["markets"]["vault:mvUSDC/USDT"]["id"]
    for name, market in book["markets"].items():
        supplying = {v: morpho.functions.position(bytes.fromhex(market["id"][2:]), v).call()[0]
                     for v in book["vaults"].values()}
        found = {v["address"]: v for v in reach.get(f"market:morpho-blue:{market['id']}", {"vaults": []})["vaults"]}
        assert set(found) == {v for v, shares in supplying.items() if shares > 0}, name
        for address, v in found.items():
            held = [f"account:{account_address(label)}" for label in ("vault-loop-1", "vault-loop-2", "vault-loop-3")]
            if address == book["vaults"]["mvUSDC"]:
                assert [c["market"] for c in v["consumers"]] == [f"market:morpho-blue:{vault_market}"]
                assert v["holders"] == sorted(held)
            else:
                assert v["consumers"] == [] and v["holders"] == []
    shared = reach[f"market:morpho-blue:{book['markets']['WETH/USDC']['id']}"]
    assert {v["address"] for v in shared["vaults"]} == {book["vaults"]["mvUSDC"], book["vaults"]["ppUSDC"]}
    # the report's rows: one per (market, vault), the mvUSDC rows naming its share market and 3 holders
    from analyzer.report.vaults import vault_reach_view

    rows = vault_reach_view(scan(morpho_devnet), None)
    assert len(rows) == sum(len(m["vaults"]) for m in reach.values())
    assert {(r["consumer_markets"], r["holders"]) for r in rows if r["vault"] == "mvUSDC"} == {(1, 3)}


def test_replay_fidelity_through_markets_and_a_vault_share_collateral_chain(morpho_devnet):
    """The fidelity criteria on a replay of the shock: the same accounts liquidated (the vault-share
    borrower among them, a round later), value within 1%, realised bad debt within 1%."""
    from analyzer.replay import replay_and_compare

    shock = ShockScenario(name="morpho", price_shocks=SHOCK)
    compared = replay_and_compare(morpho_devnet.url, morpho_devnet.book, shock, [get("morpho-blue")])
    replayed, fidelity = compared.replay, compared.fidelity
    liquidated = compared.engine.accounts[compared.engine.accounts["liquidated_usd"] > 0]
    gap = fidelity["protocols"]["morpho-blue"]
    assert replayed.reached_fixed_point and replayed.source_unchanged
    assert gap["accounts_ok"] and gap["value_ok"] and gap["bad_debt_ok"], gap
    assert gap["replay_bad_debt_usd"] > 0 and len(replayed.rounds) >= 2
    vault_market = market_of(morpho_devnet.book, "morpho-blue")["markets"]["vault:mvUSDC/USDT"]["id"]
    late = liquidated[(liquidated["market"] == vault_market)]
    assert len(late) and (late["first_round"] >= 1).all()
    assert {x.account for r in replayed.rounds[1:] for x in r.liquidations} >= set(late["account"])


def test_reading_only_the_markets_an_accounts_events_name_gives_the_same_positions(morpho_devnet, monkeypatch):
    """Ethereum has thousands of markets: beyond a few dozen the reader asks each account's own
    events where it has positions instead of reading it in every market. Same snapshot."""
    from protocols.morpho_blue.reader import MorphoBlueReader

    every = scan(morpho_devnet)
    monkeypatch.setattr(MorphoBlueReader, "ALL_MARKETS_UP_TO", 0)
    named = scan(morpho_devnet)
    key = ["market", "account", "asset", "side"]
    assert len(every.positions) > 100
    assert every.positions.sort_values(key).reset_index(drop=True)[key + ["raw"]].equals(
        named.positions.sort_values(key).reset_index(drop=True)[key + ["raw"]])
