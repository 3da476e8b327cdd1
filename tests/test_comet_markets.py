"""Comet as Ethereum runs it: several markets per chain, accounts found through transfers, and a
store front that closes at targetReserves.

The devnet has two Comets (cUSDCv3-like and cWETHv3-like, sharing wstETH and WBTC). A scan goes
through the address book exactly as ``contagion devnet up --book-out`` writes it, and every figure
is checked against the Comet's own views. cUSDCv3 starts with reserves below its target (it sells
absorbed collateral), cWETHv3 above (``buyCollateral`` reverts ``NotForSale``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from eth_utils import event_signature_to_log_topic

from analyzer.books import deployments_for, load_book, market_of
from analyzer.cheats import rpc
from analyzer.devnet.build import write_address_book
from analyzer.devnet.scenario import account_address
from analyzer.scan import scan
from protocols import plugins
from protocols.comet.executor import CometExecutor, comet_abi
from protocols.comet.rules import CometRules
from tests.conftest import requires_anvil

pytestmark = requires_anvil
OLD_EVENTS = [event_signature_to_log_topic(s) for s in (
    "Supply(address,address,uint256)", "Withdraw(address,address,uint256)",
    "SupplyCollateral(address,address,address,uint256)", "WithdrawCollateral(address,address,address,uint256)")]
MINT_ABI = [{"type": "function", "name": "mint", "stateMutability": "nonpayable", "outputs": [{"type": "bool"}],
             "inputs": [{"type": "address", "name": "a"}, {"type": "uint256", "name": "v"}]}]


@pytest.fixture(scope="module")
def comets(devnet):
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    return {name: devnet.w3.eth.contract(address=d["comet"], abi=comet_abi())
            for name, d in devnet.book["protocols"]["comet"].items()}


def scan_comets(devnet, tmp_path):
    """Scan through the book file as `devnet up --book-out` writes it, read back by the loader."""
    book = load_book(write_address_book(devnet.book, tmp_path / "book.json"))
    block = devnet.w3.eth.block_number
    return scan(devnet.url, [plugins()["comet"]], book=book, block=block, cache_dir=None), block, book


def test_the_devnet_has_two_comets_sharing_collateral(comets):
    assert set(comets) >= {"cUSDCv3", "cWETHv3"}
    listed = {name: {c.functions.getAssetInfo(i).call()[1] for i in range(c.functions.numAssets().call())}
              for name, c in comets.items()}
    assert len(listed["cUSDCv3"] & listed["cWETHv3"]) >= 2
    assert comets["cUSDCv3"].functions.baseToken().call() != comets["cWETHv3"].functions.baseToken().call()


def test_a_scan_through_the_written_book_reads_every_comet_to_the_wei(devnet, comets, tmp_path):
    snapshot, block, book = scan_comets(devnet, tmp_path)
    assert snapshot.meta["protocols"]["comet"] == book["protocols"]["comet"]
    markets = snapshot.markets[snapshot.markets["protocol"] == "comet"]
    roles = [json.loads(p)["role"] for p in markets["params"]]
    base_rows = markets[[r == "base" for r in roles]]
    # one market (one base row) per Comet of the book, named by its address
    assert sorted(base_rows["market"]) == sorted(c.address for c in comets.values())
    positions, accounts = snapshot.positions, snapshot.accounts
    for name, comet in comets.items():
        at = {"block_identifier": block}
        assets = [comet.functions.getAssetInfo(i).call()[1] for i in range(comet.functions.numAssets().call())]
        held = positions[positions["market"] == comet.address]
        flags = accounts[accounts["market"] == comet.address].set_index("account")["params"]
        assert len(flags), name
        for account in flags.index:
            mine = held[held["account"] == account]
            debt = mine[mine["side"] == "debt"]["raw"]
            assert (int(debt.iloc[0]) if len(debt) else 0) == comet.functions.borrowBalanceOf(account).call(**at)
            for asset in assets:
                raw = mine[(mine["asset"] == asset) & (mine["side"] == "collateral")]["raw"]
                ours = int(raw.iloc[0]) if len(raw) else 0
                assert ours == comet.functions.collateralBalanceOf(account, asset).call(**at), (name, account)
            assert json.loads(flags[account])["is_liquidatable"] == comet.functions.isLiquidatable(account).call(**at)
        # totals: every collateral's holdings add up to the Comet's own total
        for asset in assets:
            total = comet.functions.totalsCollateral(asset).call(**at)[0]
            rows = held[(held["asset"] == asset) & (held["side"] == "collateral")]
            assert sum(int(r) for r in rows["raw"]) == total, (name, asset)
        borrowed = sum(int(r) for r in held[held["side"] == "debt"]["raw"])
        total_borrow = comet.functions.totalBorrow().call(**at)
        assert abs(borrowed - total_borrow) <= len(flags), name   # each present value rounds down


def test_accounts_reached_only_by_transfers_are_found(devnet, comets, chain_checkpoint, tmp_path):
    """A borrow through a base transfer (no Withdraw) and collateral moved by TransferCollateral:
    the two accounts appear in none of Supply/Withdraw/SupplyCollateral/WithdrawCollateral."""
    w3, comet = devnet.w3, comets["cUSDCv3"]
    lender, holder = account_address("comet-lender-1"), account_address("comet-7")   # comet-7: 80 WBTC, health 2.4
    receiver, borrower = account_address("transfer-receiver"), account_address("transfer-borrower")
    wbtc, start = devnet.book["tokens"]["WBTC"], w3.eth.block_number + 1
    for account in (lender, holder, borrower):
        rpc(w3, "anvil_impersonateAccount", [account])
        rpc(w3, "anvil_setBalance", [account, hex(10**20)])

    def send(call, sender):
        assert w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))["status"] == 1

    send(comet.functions.transfer(receiver, 1_000 * 10**6), lender)             # Transfer(lender, 0), Transfer(0, receiver)
    send(comet.functions.transferAsset(borrower, wbtc, 10 * 10**8), holder)      # TransferCollateral(holder, borrower)
    send(comet.functions.transfer(receiver, 200_000 * 10**6), borrower)          # a borrow through a transfer
    assert comet.functions.borrowBalanceOf(borrower).call() >= 200_000 * 10**6
    logs = w3.eth.get_logs({"address": comet.address, "fromBlock": start, "toBlock": "latest"})
    named_by_old_events = {w3.to_checksum_address(t[-20:]) for log in logs if log["topics"][0] in OLD_EVENTS
                           for t in log["topics"][1:]}
    assert not {receiver, borrower} & named_by_old_events

    snapshot, block, _ = scan_comets(devnet, tmp_path)
    mine = snapshot.positions[snapshot.positions["market"] == comet.address]
    debt = mine[(mine["account"] == borrower) & (mine["side"] == "debt")]["raw"]
    assert int(debt.iloc[0]) == comet.functions.borrowBalanceOf(borrower).call(block_identifier=block)
    supplied = mine[(mine["account"] == receiver) & (mine["side"] == "collateral")]["raw"]
    assert int(supplied.iloc[0]) == comet.functions.balanceOf(receiver).call(block_identifier=block)


def _absorb_step(devnet, comet, drop: dict[str, float], tmp_path):
    """Shock the feeds of ``drop`` (symbol -> fall), read the Comet, and the rule's absorb step."""
    executor = CometExecutor(devnet.w3, {"comet": comet.address}, devnet.w3.eth.accounts[4])
    for symbol, fall in drop.items():
        executor.set_price(devnet.book["tokens"][symbol], devnet.scenario.assets[symbol].price_usd * (1 - fall))
    snapshot, _, _ = scan_comets(devnet, tmp_path)
    rules = CometRules()
    (book,) = [b for b in rules.books(snapshot) if b.market == comet.address]
    prices = np.array([snapshot.price_of()[a] for a in book.assets])
    return executor, rules, book, rules.liquidate(book, prices)


@pytest.mark.parametrize("market, extra_reserves", [("cUSDCv3", 0), ("cUSDCv3", 10_000_000), ("cWETHv3", 0)])
def test_the_rule_sells_absorbed_collateral_exactly_when_comet_does(devnet, comets, chain_checkpoint, tmp_path,
                                                                    market, extra_reserves):
    """cUSDCv3 as seeded is below targetReserves (it sells), with 10M USDC more it is above (it
    does not); cWETHv3 is above as seeded. The rule's ``for_sale`` against buyCollateral itself."""
    w3, comet = devnet.w3, comets[market]
    base = comet.functions.baseToken().call()
    if extra_reserves:   # base held beyond what lenders supplied is reserves
        token = w3.eth.contract(address=base, abi=MINT_ABI)
        w3.eth.wait_for_transaction_receipt(token.functions.mint(comet.address, extra_reserves * 10**6)
                                            .transact({"from": w3.eth.accounts[0]}))
    drop = {"WETH": 0.15, "wstETH": 0.15, "WBTC": 0.15, "LINK": 0.15} if market == "cUSDCv3" else \
        {"WBTC": 0.20}
    executor, rules, book, step = _absorb_step(devnet, comet, drop, tmp_path)
    assert len(step.rows), "the shock liquidates someone"
    paid_out_raw = step.base_paid_out[0] * comet.functions.baseScale().call()
    expected_open = comet.functions.getReserves().call() - paid_out_raw < comet.functions.targetReserves().call()
    on_sale = rules.for_sale(book, step)
    assert bool(on_sale[0]) == expected_open == (market == "cUSDCv3" and not extra_reserves)
    first = str(book.accounts[step.rows[0]])
    outcome = executor.liquidate(first, None, None)
    assert outcome.success, outcome.error
    bought = {a: raw - outcome.fee.get(a, 0) for a, raw in outcome.seized.items()}
    assert any(bought.values()) == bool(on_sale[0])
    if not on_sale[0]:   # the chain itself refuses: NotForSale
        asset = next(iter(outcome.seized))
        with pytest.raises(Exception, match="NotForSale|0x|revert"):
            comet.functions.buyCollateral(asset, 0, 10**6, w3.eth.accounts[4]).call({"from": w3.eth.accounts[4]})
    if on_sale[0]:
        return
    # the engine's keeper takes nothing from a closed store (no venue is even asked)
    from analyzer.engine.keeper import keeper_take

    m = len(book.assets)
    closed = step.select(~on_sale)      # fewer absorbs before each: the store stays closed for all of them
    assert not rules.for_sale(book, closed).any()
    take = keeper_take(rules, book, closed, np.ones(m), cols=np.arange(m), sale_index=np.arange(m),
                       sale_units=np.ones(m), price=np.ones(m), curves=lambda a: None,
                       committed_sell=np.zeros(m), committed_buy=np.zeros(m), sell_through=1.0, gas_usd=0.0)
    assert not take.sell_units.any()


def test_devnet_book_lists_both_comets_for_scan_markets(devnet, comets):
    found = deployments_for([plugins()["comet"]], devnet.w3.eth.chain_id, devnet.book, ["cWETHv3"])
    assert [m.name for m in found] == ["cWETHv3"]
    assert found[0].main_address == comets["cWETHv3"].address == market_of(devnet.book, "comet", "cWETHv3")["comet"]
