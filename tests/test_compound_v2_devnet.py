"""Compound V2 on the devnet: reader vs chain, rule vs chain (real liquidateBorrow), fork reads.

Expected values come from the chain (``getAccountLiquidity``, balances, the ``LiquidateBorrow``
receipts) or from the scenario, never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import to_checksum_address

from analyzer.books import market_of
from analyzer.chain import Anvil
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from protocols.compound_v2 import devnet as cdev
from protocols.compound_v2.constants import PROTOCOL
from protocols.compound_v2.executor import CompoundV2Executor
from protocols.compound_v2.reader import read_snapshot
from protocols.compound_v2.rules import CompoundV2Rules
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def _deployment(devnet) -> dict:
    if PROTOCOL not in devnet.book["protocols"]:
        pytest.skip("compound-v2 is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    return market_of(devnet.book, PROTOCOL)


def _comptroller(w3, deployment):
    return w3.eth.contract(address=deployment["comptroller"], abi=fixture_artifact("compound_v2", "Comptroller")["abi"])


def _seeded_labels(devnet) -> list[str]:
    scenario = devnet.scenario
    # an account that only holds a market whose oracle was dropped has no position that is read
    labels = ["compound-lender"] + [p.label for p in cdev.explicit_accounts(scenario) if p.supply or p.borrow]
    return labels + [f"pop-{i}" for i in range(int(scenario.protocol(PROTOCOL)["population"]["accounts"]))]


def test_discovers_every_seeded_account(devnet):
    deployment = _deployment(devnet)
    snap = read_snapshot(devnet.w3, deployment)
    found = set(snap.accounts["account"])
    assert {account_address(label) for label in _seeded_labels(devnet)} <= found


def test_reader_matches_chain_exactly(devnet):
    """Per account: liquidity/shortfall from the snapshot == getAccountLiquidity in wei; raw
    amounts == balanceOf / borrowBalanceStored; membership == getAssetsIn."""
    deployment = _deployment(devnet)
    w3 = devnet.w3
    block = w3.eth.block_number
    snap = read_snapshot(w3, deployment, block)
    (book,) = CompoundV2Rules().books(snap)
    liquidity, shortfall = CompoundV2Rules().liquidity_exact(book)
    comptroller = _comptroller(w3, deployment)
    abi = fixture_artifact("compound_v2", "CErc20")["abi"]
    ctokens = [w3.eth.contract(address=c, abi=abi) for c in book.extra["ctoken"]]
    # plain eth_calls (not Multicall3, which the reader used), sent as one JSON-RPC batch
    with w3.batch_requests() as batch:
        for account in book.accounts:
            batch.add(comptroller.functions.getAccountLiquidity(account).call(block_identifier=block))
            batch.add(comptroller.functions.getAssetsIn(account).call(block_identifier=block))
            for ctoken in ctokens:
                batch.add(ctoken.functions.balanceOf(account).call(block_identifier=block))
                batch.add(ctoken.functions.borrowBalanceStored(account).call(block_identifier=block))
        answers = iter(batch.execute())
    for i, account in enumerate(book.accounts):
        err, chain_liquidity, chain_shortfall = next(answers)
        assert err == 0
        assert (int(liquidity[i]), int(shortfall[i])) == (chain_liquidity, chain_shortfall), account
        entered = {to_checksum_address(c) for c in next(answers)}
        assert {book.extra["ctoken"][j] for j in np.flatnonzero(book.extra["entered"][i])} == entered
        for j in range(len(ctokens)):
            assert int(book.extra["collateral_raw"][i, j]) == next(answers)
            assert int(book.extra["debt_raw"][i, j]) == next(answers)
    assert len(book.accounts) >= 40
    assert (book.debt > 0).any(axis=1).sum() >= 40


def test_population_follows_scenario(devnet):
    """Borrowers' own ratio Σ collateral × factor / borrows lies in the scenario's range at seed prices."""
    deployment = _deployment(devnet)
    snap = read_snapshot(devnet.w3, deployment)
    rules = CompoundV2Rules()
    (book,) = rules.books(snap)
    prices = book.params["oracle_price_usd"]
    lo, hi = devnet.scenario.protocol(PROTOCOL)["population"]["health_factor"]
    rows = [list(book.accounts).index(account_address(f"pop-{i}")) for i in range(40)]
    hf = rules.health_factor(book, prices)[rows]
    assert np.all(hf >= lo * 0.999) and np.all(hf <= hi * 1.001)
    assert not rules.liquidatable(book, prices)[rows].any()


def test_shared_collateral_with_aave(devnet):
    """pop-<i> accounts that hold an Aave aToken post the same asset as collateral on Compound."""
    deployment = _deployment(devnet)
    reserves = (market_of(devnet.book, "aave-v3") or {}).get("reserves")
    if not reserves:
        pytest.skip("aave-v3 is not in this devnet")
    snap = read_snapshot(devnet.w3, deployment)
    pos = snap.positions[snap.positions["side"] == "collateral"]
    erc20 = [{"type": "function", "name": "balanceOf", "stateMutability": "view",
              "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]}]
    shared = 0
    for i in range(40):
        account = account_address(f"pop-{i}")
        held = {r["asset"] for r in reserves.values()
                if devnet.w3.eth.contract(address=r["aToken"], abi=erc20).functions.balanceOf(account).call() > 0}
        mine = set(pos.loc[pos["account"] == account, "asset"])
        shared += bool(held & mine)
    assert shared >= 10


def at_chain_exchange_rate(w3, book, column: int, tx_hash: str):
    """``book`` with column ``column``'s exchange rate as the chain used it in the liquidation
    ``tx_hash``: liquidateBorrow accrues the collateral market's interest first, so where that
    market has borrows (the devnet's WBTC markets) its rate has moved since the snapshot's block.
    The rate before the seize (the one liquidateCalculateSeizeTokens read) is Compound's
    ``exchangeRateStoredInternal`` on the state after the transaction with the seize's own changes
    taken back: the protocol's cTokens it burnt (their Transfer to the cToken) and the reserves it
    added (``ReservesAdded``). Other profiles' books are returned as they are (the Venus pool's
    collateral markets do not accrue between the read and the liquidation here)."""
    from dataclasses import replace

    from eth_utils import event_signature_to_log_topic

    if book.extra.get("profile", "compound") != "compound":
        return book
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    ctoken = w3.eth.contract(address=book.column_key(column), abi=fixture_artifact("compound_v2", "CErc20")["abi"])
    burnt = added = 0
    for log in receipt["logs"]:
        if to_checksum_address(log["address"]) != ctoken.address:
            continue
        topic, data = bytes(log["topics"][0]), bytes(log["data"])
        if topic == event_signature_to_log_topic("Transfer(address,address,uint256)") and \
                to_checksum_address(bytes(log["topics"][2])[12:]) == ctoken.address:
            burnt += int.from_bytes(data[:32], "big")
        elif topic == event_signature_to_log_topic("ReservesAdded(address,uint256,uint256)"):
            added += int.from_bytes(data[32:64], "big")
    at = {"block_identifier": receipt["blockNumber"]}
    cash, borrows = ctoken.functions.getCash().call(**at), ctoken.functions.totalBorrows().call(**at)
    reserves, supply = ctoken.functions.totalReserves().call(**at), ctoken.functions.totalSupply().call(**at)
    rates = np.array(book.extra["exchange_rate_mantissa"], dtype=object)
    rates[column] = (cash + borrows - (reserves - added)) * 10**18 // (supply + burnt)
    return replace(book, extra={**book.extra, "exchange_rate_mantissa": rates})


def check_rule_against_chain(devnet, deployment: dict, drop: float, symbols: tuple[str, ...]) -> dict[str, int]:
    """Drop ``symbols``' feeds by ``drop``, read the pool, and try a real liquidateBorrow on every
    borrower (each from the same state: evm_snapshot / evm_revert around it). Asserts that the
    rule's liquidatable set (float64 and exact) is the set where the transaction succeeds, that the
    exact path predicts the seized cTokens and the protocol's share to the unit, and that the
    engine's float64 step agrees within the integer truncation. Returns counts for the caller."""
    w3 = devnet.w3
    executor = CompoundV2Executor(w3, deployment, w3.eth.accounts[5])
    for symbol in symbols:
        executor.set_price(deployment["markets"][symbol]["underlying"],
                           devnet.scenario.assets[symbol].price_usd * (1 - drop))
    snap = read_snapshot(w3, deployment)
    rules = CompoundV2Rules()
    (book,) = rules.books(snap)
    prices = book.params["oracle_price_usd"]
    predicted = rules.liquidatable(book, prices)
    assert np.array_equal(predicted, rules.liquidatable_exact(book))
    _, shortfall = rules.liquidity_exact(book)
    succeeded = np.zeros(len(book.accounts), dtype=bool)
    float_step = rules.liquidate(book, prices)
    step_row = {int(r): n for n, r in enumerate(float_step.rows)}
    decimals = snap.assets.set_index("address")["decimals"]
    checked = 0
    for i in np.flatnonzero((book.debt > 0).any(axis=1)):
        k = int(np.argmax(book.collateral[i] * prices))
        # ask the chain (eth_call) about every borrow of the account: a deprecated market's borrow
        # may be repaid when the account has no shortfall, another one only in shortfall
        allowed = {}
        for j in np.flatnonzero(book.debt[i] > 0):
            repay = max(rules.max_repay_exact(book, i, int(j), k), 1)
            allowed[int(j)] = executor.liquidate(book.accounts[i], book.column_key(j), book.column_key(k), repay,
                                                 dry_run=True).success
        succeeded[i] = any(allowed.values())
        if not succeeded[i]:
            continue
        # the float step's choice is one the chain accepts; send it for real, from the same state
        j = int(np.argmax(float_step.repaid[step_row[int(i)]] * prices))
        assert allowed[j], (book.accounts[i], book.assets[j])
        repay = max(rules.max_repay_exact(book, i, j, k), 1)
        mark = devnet.anvil.snapshot()
        try:
            result = executor.liquidate(book.accounts[i], book.column_key(j), book.column_key(k), repay)
            assert result.success, result.error
            at_chain = at_chain_exchange_rate(w3, book, k, result.tx_hash)
        finally:
            devnet.anvil.revert(mark)
        seize, protocol_share = rules.seize_exact(at_chain, j, k, repay)
        assert result.repaid[book.assets[j]] == repay
        assert result.seized_ctokens[book.assets[k]] == seize
        assert result.fee_ctokens[book.assets[k]] == protocol_share
        # reported in the underlying, as every executor reports collateral: what redeem would pay
        rate = int(book.extra["exchange_rate_mantissa"][k])
        assert result.seized[book.assets[k]] == pytest.approx(seize * rate // 10**18, rel=1e-6)
        # the engine's float64 step makes the same liquidation, in token units, within the integer
        # path's truncation: one raw unit repaid; seized within the truncation of the seize ratio
        # (cTokens per raw repay unit × 1e18, as low as ~1e5 for an 18-decimal debt against an
        # 8-decimal collateral, so up to ~1e-5 relative) and a cToken unit or two
        # (compared at the snapshot's exchange rates, the state both paths read)
        seize, protocol_share = rules.seize_exact(book, j, k, repay)
        scale_j, scale_k = 10 ** int(decimals[book.assets[j]]), 10 ** int(decimals[book.assets[k]])
        one_ctoken = int(book.extra["exchange_rate_mantissa"][k]) / 1e18 / scale_k
        ratio_mantissa = seize * 10**18 // repay
        # the float book owes the interest not accrued since the market's last accrueInterest (which
        # liquidateBorrow accrues first), the exact path repays on the stored balance
        n = step_row[int(i)]
        owed = book.debt[i, j] / (int(book.extra["debt_raw"][i, j]) / scale_j)
        assert 1.0 <= owed < 1.0 + 1e-4
        assert float_step.repaid[n, j] == pytest.approx(repay / scale_j * owed, rel=1e-12, abs=1.0 / scale_j)
        assert float_step.seized[n, k] == pytest.approx(seize * one_ctoken * owed, rel=2.0 / ratio_mantissa + 1e-9,
                                                        abs=2 * one_ctoken)
        assert float_step.fee[n, k] == pytest.approx(protocol_share * one_ctoken * owed,
                                                     rel=2.0 / ratio_mantissa + 1e-6, abs=2 * one_ctoken)
        checked += 1
    assert list(book.accounts[succeeded]) == list(book.accounts[predicted])
    in_shortfall = np.array([x > 0 for x in shortfall], dtype=bool)
    return {"borrowers": int((book.debt > 0).any(axis=1).sum()), "liquidated": checked,
            "shortfall_not_liquidatable": int((in_shortfall & ~succeeded).sum())}


@pytest.mark.parametrize("drop", [0.05, 0.15, 0.30])
def test_rule_predicts_real_liquidations(chain_checkpoint, drop):
    """After a price drop, the rule's liquidatable set == the accounts where liquidateBorrow succeeds,
    and the predicted seized cTokens (and the protocol's share) == what the receipt shows."""
    devnet = chain_checkpoint
    counts = check_rule_against_chain(devnet, _deployment(devnet), drop, ("WETH", "wstETH", "WBTC", "LINK"))
    assert counts["shortfall_not_liquidatable"] == 0
    if drop >= 0.15:
        assert counts["liquidated"] > 0


def test_fork_of_devnet_reads_identically(devnet):
    deployment = _deployment(devnet)
    block = devnet.w3.eth.block_number
    here = read_snapshot(devnet.w3, deployment, block)
    with Anvil(fork_url=devnet.url, fork_block=block) as fork:
        there = read_snapshot(fork.w3, deployment, block)
    for table in ("assets", "markets", "accounts", "positions"):
        assert here.table(table).equals(there.table(table)), table


def test_executor_moves_prices_on_a_deployment_without_feeds(chain_checkpoint):
    """As on a mainnet fork (only a Comptroller known): the executor finds each market's feed
    through the Comptroller's oracle and moves the root feed behind it, leaving the oracle in place;
    the native market reads the same feed as WETH and moves with it; a liquidation succeeds."""
    devnet = chain_checkpoint
    full = _deployment(devnet)
    w3 = devnet.w3
    executor = CompoundV2Executor(w3, {"comptroller": full["comptroller"], "profile": "compound"}, w3.eth.accounts[6])
    comptroller = _comptroller(w3, full)
    oracle_abi = fixture_artifact("compound_v2", "FeedPriceOracle")["abi"]
    # a market whose oracle configuration was dropped has no price to keep (it reverts ConfigNotFound)
    priced = {s: m for s, m in full["markets"].items()
              if s not in devnet.scenario.protocol(PROTOCOL).get("oracle_removed", [])}
    oracle = w3.eth.contract(address=comptroller.functions.oracle().call(), abi=oracle_abi)
    before = {s: oracle.functions.getUnderlyingPrice(m["cToken"]).call() for s, m in priced.items()}
    weth = full["markets"]["WETH"]
    executor.set_price(weth["underlying"], 1234.5)
    assert comptroller.functions.oracle().call() == oracle.address
    after = {s: oracle.functions.getUnderlyingPrice(m["cToken"]).call() for s, m in priced.items()}
    assert after["WETH"] == 123450000000 * 10**10 and after["ETH"] == after["WETH"]
    assert all(after[s] == before[s] for s in before if s not in ("WETH", "ETH", "wstETH"))
    snap = read_snapshot(w3, full)
    (book,) = CompoundV2Rules().books(snap)
    rows = np.flatnonzero(CompoundV2Rules().liquidatable(book, book.params["oracle_price_usd"]))
    assert len(rows) > 0
    i = int(rows[0])
    prices = book.params["oracle_price_usd"]
    step = CompoundV2Rules().liquidate(book, prices, np.arange(len(book.accounts)) == i)
    j, k = int(np.argmax(step.repaid[0] * prices)), int(np.argmax(step.seized[0] * prices))
    result = executor.liquidate(book.accounts[i], book.column_key(j), book.column_key(k))
    assert result.success, result.error
    assert result.seized[book.assets[k]] > 0
