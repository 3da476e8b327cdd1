"""The Aave V3 rule against real liquidationCall transactions after oracle moves, on 3.6 and 3.0.

For each drop, the set of accounts the rule calls liquidatable must be exactly the set for which
``Pool.liquidationCall`` succeeds (simulated at the snapshot's block for every account), and for
each of them the collateral the rule seizes (liquidator's part + protocol fee) and the debt it
repays must equal what the real transaction moved.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.model import raw_to_amount
from analyzer.multicall import Call
from protocols.aave_v3.executor import MAX_UINT, AaveV3Executor
from protocols.aave_v3.reader import read_snapshot
from protocols.aave_v3.rules import AaveV3Rules
from tests.aave_v3_devnets import aave_checkpoint, aave_devnet, devnet_v30  # noqa: F401 -- fixtures
from tests.conftest import requires_anvil

pytestmark = requires_anvil
LIQUIDATION_CALL = "liquidationCall(address,address,address,uint256,bool)()"


def slash_wsteth(w3, feeds: dict, factor: float) -> None:
    """wstETH's stETH ratio times ``factor`` (a slashing): the devnet's ratio provider is given the
    code of a fresh StETHShares whose pooled ether is ``factor`` × the original's (its immutables)."""
    from eth_utils import to_checksum_address

    from analyzer.chain import rpc
    from analyzer.devnet.solc import fixture_artifact

    provider = to_checksum_address(Call(feeds["wstETH"], "RATIO_PROVIDER()(address)").decode(
        w3.eth.call({"to": feeds["wstETH"], "data": "0x" + Call(feeds["wstETH"], "RATIO_PROVIDER()(address)").calldata.hex()})))
    contract = w3.eth.contract(address=provider, abi=fixture_artifact("oracles", "StETHShares")["abi"])
    pooled, shares = contract.functions.getTotalPooledEther().call(), contract.functions.getTotalShares().call()
    artifact = fixture_artifact("oracles", "StETHShares")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(int(pooled * factor), shares).transact(
        {"from": w3.eth.accounts[0]}))
    rpc(w3, "anvil_setCode", [provider, "0x" + bytes(w3.eth.get_code(receipt["contractAddress"])).hex()])


def simulate_liquidation(w3, pool, keeper, collateral, debt, account, block) -> bool:
    """``eth_call`` of the keeper's liquidationCall at ``block``: True when it would not revert."""
    data = "0x" + Call(pool, LIQUIDATION_CALL, (collateral, debt, account, MAX_UINT, False)).calldata.hex()
    answer = w3.provider.make_request("eth_call", [{"from": keeper, "to": pool, "data": data, "gas": hex(5_000_000)},
                                                   hex(block)])
    return "error" not in answer


MOVES = [("WETH", 0.05), ("WETH", 0.15), ("WETH", 0.30), ("WETH", -0.10), ("LINK", 0.30)]
MIN_LIQUIDATABLE = {("WETH", 0.05): 3, ("WETH", 0.15): 10, ("WETH", 0.30): 30, ("WETH", -0.10): 3, ("LINK", 0.30): 3}


@pytest.mark.parametrize("symbol,drop", MOVES)
def test_rule_matches_real_liquidations_after_a_price_move(aave_checkpoint, symbol, drop):  # noqa: F811
    """On both releases. WETH -10% is a 10% *rise* with wstETH's stETH ratio slashed by 10%: wstETH's
    price is that ratio × ETH / USD (a CAPO adapter), so this puts e-mode accounts (wstETH against
    WETH debt) under water. LINK is collateral only inside an e-mode on 3.6 (reserve threshold 0) and
    nobody borrows it: a LINK drop is felt by e-mode accounts only (skipped on 3.0, where LINK is a
    plain collateral). The accounts the dust rule refuses must be exactly those the chain refuses."""
    devnet = aave_checkpoint
    w3, book_json = devnet.w3, devnet.book
    deployment = book_json["protocols"]["aave-v3"]
    if symbol == "LINK" and deployment["version"] == "3.0":
        pytest.skip("LINK is a plain collateral on the 3.0 devnet")
    tokens, decimals = book_json["tokens"], book_json["decimals"]
    keeper = w3.eth.accounts[1]
    executor = AaveV3Executor(w3, deployment, keeper)
    for funded in ("USDC", "USDT", "DAI", "WETH"):
        executor.fund_keeper(tokens[funded], 10**9 * 10 ** decimals[funded])

    new_price = devnet.scenario.assets[symbol].price_usd * (1 - drop)
    executor.set_price(symbol, new_price)
    if symbol == "WETH" and drop < 0:
        slash_wsteth(w3, book_json["feeds"], 0.9)
    block = w3.eth.block_number
    snap = read_snapshot(w3, deployment, block)
    rules = AaveV3Rules()
    (book,) = rules.books(snap)
    prices = book.extra["oracle_prices"]
    assert prices[list(book.assets).index(tokens[symbol])] == pytest.approx(new_price, rel=1e-12)

    step = rules.step(book, prices)
    plan = rules.liquidate(book, prices)
    liquidatable = rules.liquidatable(book, prices)
    assert set(step.liquidation.rows) == set(np.flatnonzero(liquidatable))
    assert set(plan.rows) == set(step.liquidation.rows) - set(step.refused)
    # the chain's answer for every account: the planned pair where there is one, else the largest
    j_debt = np.where((book.debt > 0).any(axis=1), (book.debt * prices).argmax(axis=1), 0)
    j_coll = (book.collateral * prices).argmax(axis=1)
    planned = step.liquidation
    for k, row in enumerate(planned.rows):
        j_debt[row], j_coll[row] = planned.repaid[k].argmax(), planned.seized[k].argmax()
    by_chain = np.array([simulate_liquidation(w3, deployment["pool"], keeper, book.assets[j_coll[i]],
                                              book.assets[j_debt[i]], account, block)
                         for i, account in enumerate(book.accounts)])
    rule_set, chain_set = set(book.accounts[plan.rows]), set(book.accounts[by_chain])
    assert rule_set == chain_set, (sorted(rule_set - chain_set), sorted(chain_set - rule_set))
    assert len(set(book.accounts[liquidatable])) >= MIN_LIQUIDATABLE[(symbol, drop)]  # many accounts, not one

    hf = rules.health_factor(book, prices)[plan.rows]
    capped = in_emode = 0
    for k, row in enumerate(plan.rows):
        jd, jc = int(plan.repaid[k].argmax()), int(plan.seized[k].argmax())
        debt_asset, coll_asset = book.assets[jd], book.assets[jc]
        keeper_before = executor.read(coll_asset, "balanceOf(address)(uint256)", keeper)
        done = executor.liquidate(book.accounts[row], debt_asset, coll_asset)
        assert done.success, done.error
        received = executor.read(coll_asset, "balanceOf(address)(uint256)", keeper) - keeper_before
        assert received == done.seized[coll_asset] - done.fee[coll_asset]  # the event agrees with the balances
        coll_decimals = int(snap.assets.set_index("address").loc[coll_asset, "decimals"])
        debt_decimals = int(snap.assets.set_index("address").loc[debt_asset, "decimals"])
        seized = raw_to_amount(done.seized[coll_asset], coll_decimals)
        fee = raw_to_amount(done.fee[coll_asset], coll_decimals)
        repaid = raw_to_amount(done.repaid[debt_asset], debt_decimals)
        unit_coll, unit_debt = 10.0 ** -coll_decimals, 10.0 ** -debt_decimals  # the chain rounds to one unit
        assert seized == pytest.approx(plan.seized[k, jc], rel=1e-6, abs=unit_coll), book.accounts[row]
        assert fee == pytest.approx(plan.fee[k, jc], rel=1e-6, abs=unit_coll), book.accounts[row]
        assert repaid == pytest.approx(plan.repaid[k, jd], rel=1e-6, abs=unit_debt), book.accounts[row]
        capped += plan.seized[k, jc] >= book.collateral[row, jc] * (1 - 1e-12)
        in_emode += int(book.category[row] != 0)
    print(f"{deployment['version']} {symbol} {-drop:+.0%}: {len(plan.rows)} liquidated, {len(step.refused)} refused "
          f"as dust, {int((hf <= 0.95).sum())} at HF <= 0.95, {capped} with all collateral seized, {in_emode} in e-mode")
    if (symbol, drop) == ("WETH", 0.05) and deployment["version"] == "3.6":
        from analyzer.devnet.scenario import account_address
        assert account_address("dust-1") in set(book.accounts[step.refused])  # and the chain refused it too
    if drop < 0 or symbol == "LINK":
        assert in_emode == len(plan.rows)
    if drop == 0.30 and symbol == "WETH":  # the hard branches were exercised: full close and collateral run out
        assert (hf <= 0.95).sum() >= 5 and capped >= 3


def test_executor_refuses_a_non_liquidatable_account(chain_checkpoint):
    devnet = chain_checkpoint
    deployment = devnet.book["protocols"]["aave-v3"]
    from analyzer.devnet.scenario import account_address

    executor = AaveV3Executor(devnet.w3, deployment, devnet.w3.eth.accounts[1])
    done = executor.liquidate(account_address("whale-1"), None, None)
    assert not done.success and "revert" in done.error


def test_keeper_balance_can_be_written_in_storage(chain_checkpoint):
    """The fork path of keeper funding: find the balance slot of an OpenZeppelin-style token."""
    devnet = chain_checkpoint
    w3 = devnet.w3
    executor = AaveV3Executor(w3, devnet.book["protocols"]["aave-v3"], w3.eth.accounts[2])
    usdc = devnet.book["tokens"]["USDC"]
    executor.set_token_balance(usdc, 123_456_789)
    assert executor.read(usdc, "balanceOf(address)(uint256)", w3.eth.accounts[2]) == 123_456_789
