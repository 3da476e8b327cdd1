"""Comet on the devnet: the reader against the chain, the absorb rule against real absorbs.

Acceptance of issue 11: after 5/15/30% collateral price falls, the accounts the rule marks
liquidatable are exactly those ``absorb`` accepts, and the change of ``getReserves()`` the rule
predicts equals the real one (relative error < 1e-9); ``quoteCollateral`` equals the rule's
store-front price. Absorbs are mined at the snapshot block's timestamp, so no interest accrues
between the read and the absorb (anvil allows an equal timestamp).
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import event_signature_to_log_topic

from analyzer.books import market_of
from analyzer.chain import rpc
from analyzer.devnet.scenario import account_address
from analyzer.model import Snapshot
from analyzer.multicall import multicall
from protocols.base import ReadContext
from protocols.comet import exact
from protocols.comet.executor import CometExecutor, comet_abi
from protocols.comet.reader import CometReader
from protocols.comet.rules import CometRules, exact_state
from tests.conftest import requires_anvil

pytestmark = requires_anvil
COLLATERALS = ("WETH", "wstETH", "WBTC", "LINK")
ABSORB_DEBT = event_signature_to_log_topic("AbsorbDebt(address,address,uint256,uint256)")


@pytest.fixture(scope="module")
def comet(devnet):
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    return devnet.w3.eth.contract(address=market_of(devnet.book, "comet", "cUSDCv3")["comet"], abi=comet_abi())


def read_snapshot(devnet) -> tuple[Snapshot, int]:
    w3 = devnet.w3
    block = w3.eth.block_number
    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block),
                      get_logs=lambda address, topics, start, end: w3.eth.get_logs(
                          {"address": address, "topics": topics, "fromBlock": start, "toBlock": end}))
    reader = CometReader(ctx, market_of(devnet.book, "comet", "cUSDCv3"))
    rows = reader.read_markets()
    rows.update(reader.read_accounts(reader.discover_accounts(0, block)))
    return Snapshot(meta={"chain_id": ctx.chain_id, "block_number": block}, **rows).validate(), block


def seeded_labels(devnet) -> dict[str, float]:
    """cUSDCv3's scenario borrowers (label -> liquidation health at scenario prices) and lenders (inf)."""
    config = devnet.scenario.protocol("comet")["markets"]["cUSDCv3"]
    out = {b["label"]: float(b["health"]) for b in config["borrowers"]}
    out.update({lender["label"]: float("inf") for lender in config["lenders"]})
    return out


def shock(devnet, executor: CometExecutor, drop: float) -> None:
    for symbol in COLLATERALS:
        executor.set_price(devnet.book["tokens"][symbol], devnet.scenario.assets[symbol].price_usd * (1 - drop))


def book_prices(snapshot: Snapshot, book) -> np.ndarray:
    price = snapshot.price_of()
    return np.array([price[a] for a in book.assets])


def test_reader_matches_chain_for_every_seeded_account(devnet, comet):
    snapshot, block = read_snapshot(devnet)
    labels = seeded_labels(devnet)
    accounts = {account_address(label) for label in labels}
    assert accounts <= set(snapshot.accounts["account"]), "discover_accounts missed a seeded account"
    debt = snapshot.positions[snapshot.positions["side"] == "debt"].set_index("account")["raw"]
    flags = snapshot.accounts.set_index("account")["params"]
    for account in accounts:
        chain_debt = comet.functions.borrowBalanceOf(account).call(block_identifier=block)
        assert int(debt.get(account, "0")) == chain_debt
        chain_flag = comet.functions.isLiquidatable(account).call(block_identifier=block)
        assert ('"is_liquidatable": true' in flags[account]) == chain_flag
        # every collateral the contract lists, receipt tokens (Aave's aWETH) included
        listed = [comet.functions.getAssetInfo(i).call()[1] for i in range(comet.functions.numAssets().call())]
        for token in listed:
            held = snapshot.positions[(snapshot.positions["account"] == account)
                                      & (snapshot.positions["asset"] == token)]["raw"]
            ours = int(held.iloc[0]) if len(held) else 0
            assert ours == comet.functions.collateralBalanceOf(account, token).call(block_identifier=block)
    # the exact path reproduces the chain's reserves at the snapshot block to the wei
    state = exact_state(snapshot, comet.address)
    assert state.reserves() == comet.functions.getReserves().call(block_identifier=block)


@pytest.mark.parametrize("drop", [0.05, 0.15, 0.30])
def test_absorb_rule_matches_chain_after_price_drop(devnet, comet, chain_checkpoint, drop):
    w3 = devnet.w3
    keeper = w3.eth.accounts[1]
    executor = CometExecutor(w3, market_of(devnet.book, "comet", "cUSDCv3"), keeper)
    shock(devnet, executor, drop)
    snapshot, block = read_snapshot(devnet)
    rules = CometRules()
    (book,) = rules.books(snapshot)
    prices = book_prices(snapshot, book)

    marked = set(book.accounts[rules.liquidatable(book, prices)])
    accepted = set()
    for account in book.accounts:
        try:
            comet.functions.absorb(keeper, [account]).call({"from": keeper}, block_identifier=block)
            accepted.add(account)
        except Exception:
            pass
    assert marked == accepted
    # independent of both: the scenario's health at seed prices, scaled by the fall
    expected = {account_address(label) for label, h in seeded_labels(devnet).items() if h * (1 - drop) < 1}
    assert marked == expected and marked

    state = exact_state(snapshot, comet.address)
    reserves_before = comet.functions.getReserves().call(block_identifier=block)
    assert state.reserves() == reserves_before
    order = sorted(marked)
    paid_exact = {account: state.absorb(account) for account in order}
    predicted_exact = state.reserves() - reserves_before
    step = rules.liquidate(book, prices)
    predicted_float = step.reserves_change_usd / prices[0] * 10 ** 6

    rpc(w3, "evm_setNextBlockTimestamp", [w3.eth.get_block(block)["timestamp"]])
    receipt = executor.absorb(order)
    reserves_after = comet.functions.getReserves().call(block_identifier=receipt["blockNumber"])
    change = reserves_after - reserves_before
    assert change == predicted_exact
    assert abs(predicted_float - change) / abs(change) < 1e-9
    paid_chain = {w3.to_checksum_address(log["topics"][2][-20:]): int.from_bytes(log["data"][:32], "big")
                  for log in receipt["logs"] if bytes(log["topics"][0]) == ABSORB_DEBT}
    assert paid_chain == paid_exact
    after = rules.apply(book, step)
    assert after.debt[step.rows].sum() == 0 and after.collateral[step.rows, 1:].sum() == 0
    assert abs(after.extra["reserves"] - reserves_after / 10**6) / abs(change / 10**6) < 1e-9
    (book_after,) = rules.books(read_snapshot(devnet)[0])  # the chain's inventory of absorbed collateral
    np.testing.assert_allclose(book_after.extra["protocol_collateral"], after.extra["protocol_collateral"], rtol=1e-12)
    if drop == 0.30:  # deep enough that the reserves pay more than they held: bad debt
        assert reserves_after < 0 and after.extra["reserves"] < 0
    for account in order:
        assert comet.functions.borrowBalanceOf(account).call() == 0
        assert not comet.functions.isLiquidatable(account).call()


def test_quote_collateral_is_the_rules_store_front_price(devnet, comet, chain_checkpoint):
    executor = CometExecutor(devnet.w3, market_of(devnet.book, "comet", "cUSDCv3"), devnet.w3.eth.accounts[1])
    shock(devnet, executor, 0.15)
    snapshot, block = read_snapshot(devnet)
    rules = CometRules()
    (book,) = rules.books(snapshot)
    prices = book_prices(snapshot, book)
    state = exact_state(snapshot, comet.address)
    sfpf = comet.functions.storeFrontPriceFactor().call()
    base_amount = 5_000_000 * 10**6
    for column, asset in enumerate(book.assets[1:], start=1):
        info = comet.functions.getAssetInfoByAddress(asset).call()
        chain = comet.functions.quoteCollateral(asset, base_amount).call(block_identifier=block)
        offset = info[0]
        assert chain == exact.quote_collateral(base_amount, state.asset_price[offset], state.base_price,
                                               state.asset_scale[offset], state.base_scale,
                                               state.liquidation_factor[offset], sfpf)
        model = rules.quote_collateral(book, prices, column, base_amount / 10**6) * info[3]
        assert abs(model - chain) / chain < 1e-9
        # the store-front discount is storeFrontPriceFactor × (1 − liquidationFactor) off the oracle price
        assert rules.store_front_price(book, prices)[column] == pytest.approx(
            prices[column] * (1 - sfpf / 1e18 * (1 - info[6] / 1e18)), rel=1e-12)


def test_executor_absorbs_then_buys_the_collateral(devnet, comet, frozen_block_time):
    w3 = devnet.w3
    keeper = w3.eth.accounts[2]
    executor = CometExecutor(w3, market_of(devnet.book, "comet", "cUSDCv3"), keeper)
    shock(devnet, executor, 0.15)
    usdc = w3.eth.contract(address=devnet.book["tokens"]["USDC"], abi=[{
        "type": "function", "name": "mint", "stateMutability": "nonpayable", "outputs": [{"type": "bool"}],
        "inputs": [{"type": "address", "name": "a"}, {"type": "uint256", "name": "v"}]}])
    w3.eth.wait_for_transaction_receipt(usdc.functions.mint(keeper, 50_000_000 * 10**6).transact({"from": keeper}))
    account = account_address("pop-0")     # WETH 300 at health 1.02: liquidatable after 15%
    weth = devnet.book["tokens"]["WETH"]
    held = comet.functions.collateralBalanceOf(account, weth).call()
    debt = comet.functions.borrowBalanceOf(account).call()
    weth_token = w3.eth.contract(address=weth, abi=[{
        "type": "function", "name": "balanceOf", "stateMutability": "view", "outputs": [{"type": "uint256"}],
        "inputs": [{"type": "address", "name": "a"}]}])
    result = executor.liquidate(account, None, None)
    assert result.success, result.error
    assert result.seized == {weth: held}
    # debt 300 × 3,000 × 0.9 / 1.02 ≈ 794k against a credit of 300 × 2,550 × 0.95 = 726,750: the
    # whole debt is repaid (block time is frozen: no interest since the read), nothing is left to the account
    assert abs(result.repaid[executor.base] - debt) <= 1   # one unit: present-value rounding
    assert comet.functions.balanceOf(account).call() == 0
    assert comet.functions.borrowBalanceOf(account).call() == 0
    bought = weth_token.functions.balanceOf(keeper).call()
    assert 0 < bought <= held
    # the keeper bought at the store-front price: 0.6 × (1 − 0.95) = 3% under the oracle
    assert comet.functions.getCollateralReserves(weth).call() == held - bought
    assert result.fee == {weth: held - bought}     # what the protocol still holds is not the keeper's
    # pop-1: 10 WBTC at 51,000 × 0.95 = 484,500 of credit against ≈ 446k of debt: the excess is
    # left to the account as a base supply and is not counted as repaid
    account = account_address("pop-1")
    debt = comet.functions.borrowBalanceOf(account).call()
    result = executor.liquidate(account)
    assert result.success and abs(result.repaid[executor.base] - debt) <= 1
    excess = comet.functions.balanceOf(account).call()
    assert excess == pytest.approx(484_500 * 10**6 - result.repaid[executor.base], rel=1e-12)
    not_liquidatable = account_address("comet-8")
    assert not executor.liquidate(not_liquidatable).success


def test_set_price_moves_the_root_behind_the_chainlink_proxy(devnet, comet, chain_checkpoint):
    """The feeds are Chainlink proxies, as on mainnet: set_price moves the aggregator behind one
    (analyzer/oracles.py); the proxy keeps its code, its aggregator and its owner."""
    w3 = devnet.w3
    feed = devnet.book["feeds"]["LINK"]
    proxy_abi = [{"type": "function", "name": n, "stateMutability": "view", "inputs": [],
                  "outputs": [{"type": "address", "name": ""}]} for n in ("aggregator", "owner")]
    proxy = w3.eth.contract(address=feed, abi=proxy_abi)
    code, aggregator, owner = w3.eth.get_code(feed), proxy.functions.aggregator().call(), proxy.functions.owner().call()
    executor = CometExecutor(w3, market_of(devnet.book, "comet", "cUSDCv3"), w3.eth.accounts[3])
    executor.set_price(devnet.book["tokens"]["LINK"], 12.34)
    assert comet.functions.getPrice(feed).call() == 1_234_000_000
    assert (w3.eth.get_code(feed), proxy.functions.aggregator().call(), proxy.functions.owner().call()) == \
        (code, aggregator, owner)


def test_reader_accrues_indices_like_comet_after_a_month(devnet, comet, chain_checkpoint):
    """A month without any Comet transaction: the views accrue interest on the fly, and so must
    the reader's indices (exact path: getReserves to the wei; debts via borrowBalanceOf)."""
    w3 = devnet.w3
    rpc(w3, "evm_increaseTime", [30 * 86400])
    rpc(w3, "evm_mine", [])
    snapshot, block = read_snapshot(devnet)
    state = exact_state(snapshot, comet.address)
    assert state.reserves() == comet.functions.getReserves().call(block_identifier=block)
    for account, principal in state.principal.items():
        if principal < 0:
            expected = exact.present_value(principal, state.supply_index, state.borrow_index)
            assert -expected == comet.functions.borrowBalanceOf(account).call(block_identifier=block)
