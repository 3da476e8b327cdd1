"""Compound V2's retired markets as mainnet has them: a deprecated market with open borrows, and a
market whose oracle reverts.

The devnet deprecates LINK after seeding (collateral factor 0, borrowing paused, reserve factor
1e18: ``Comptroller.isDeprecated``), so its healthy borrowers may be repaid in full by anyone; it
drops the oracle configuration of CRV (``getUnderlyingPrice`` reverts ``ConfigNotFound``). Every
expectation comes from the chain (``isDeprecated``, a real ``liquidateBorrow``), not from the rule.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.scan import scan
from protocols import plugins
from protocols.compound_v2.constants import PROTOCOL
from protocols.compound_v2.executor import CompoundV2Executor
from protocols.compound_v2.reader import read_snapshot
from protocols.compound_v2.rules import CompoundV2Rules
from tests.conftest import requires_anvil

pytestmark = requires_anvil
LINK_BORROWERS = ("compound-link-1", "compound-link-2")


@pytest.fixture(scope="module")
def deployment(devnet):
    if PROTOCOL not in devnet.book["protocols"]:
        pytest.skip("compound-v2 is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    return market_of(devnet.book, PROTOCOL)


def _comptroller(w3, deployment):
    return w3.eth.contract(address=deployment["comptroller"], abi=fixture_artifact("compound_v2", "Comptroller")["abi"])


def test_the_oracle_revert_market_is_read_warned_excluded_and_named(devnet, deployment, caplog):
    w3 = devnet.w3
    crv = deployment["markets"]["CRV"]
    oracle = w3.eth.contract(address=deployment["oracle"], abi=fixture_artifact("compound_v2", "FeedPriceOracle")["abi"])
    with pytest.raises(Exception, match="ConfigNotFound|revert|0x"):
        oracle.functions.getUnderlyingPrice(crv["cToken"]).call()
    holder = account_address("compound-crv-1")
    assert w3.eth.contract(address=crv["cToken"], abi=fixture_artifact("compound_v2", "CErc20")["abi"]) \
        .functions.balanceOf(holder).call() > 0
    with caplog.at_level("WARNING"):
        snapshot = scan(devnet.url, [plugins()[PROTOCOL]], book=devnet.book, cache_dir=None)
    named = snapshot.meta["excluded_markets"]
    assert [(e["protocol"], e["asset"]) for e in named] == [(PROTOCOL, crv["cToken"])]
    assert "reverted" in named[0]["reason"]
    assert any(crv["cToken"] in record.getMessage() for record in caplog.records)
    mine = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
    assert crv["underlying"] not in set(mine["asset"]) and (mine["oracle_price_usd"] > 0).all()
    held = snapshot.positions[snapshot.positions["protocol"] == PROTOCOL]
    assert crv["underlying"] not in set(held["asset"]) and holder not in set(held["account"])


def test_the_deprecated_market_is_read_as_deprecated(devnet, deployment):
    comptroller = _comptroller(devnet.w3, deployment)
    snap = read_snapshot(devnet.w3, deployment)
    flags = {row.reserve: json.loads(row.params)["deprecated"] for row in snap.markets.itertuples()}
    for symbol, market in deployment["markets"].items():
        if symbol == "CRV":
            continue
        assert flags[market["cToken"]] == comptroller.functions.isDeprecated(market["cToken"]).call(), symbol
    assert flags[deployment["markets"]["LINK"]["cToken"]]
    assert sum(flags.values()) == 1


def test_deprecated_borrows_are_liquidated_exactly_where_liquidate_borrow_succeeds(chain_checkpoint, deployment):
    """After WETH −20%: the rule marks the LINK borrowers (healthy: no shortfall) liquidatable with
    all of their LINK borrow repayable; the chain accepts a repay of all of it and refuses more."""
    devnet, w3 = chain_checkpoint, chain_checkpoint.w3
    executor = CompoundV2Executor(w3, deployment, w3.eth.accounts[6])
    executor.set_price(deployment["markets"]["WETH"]["underlying"], devnet.scenario.assets["WETH"].price_usd * 0.8)
    snap = read_snapshot(w3, deployment)
    rules = CompoundV2Rules()
    (book,) = rules.books(snap)
    prices = book.params["oracle_price_usd"]
    link = list(book.reserves).index(deployment["markets"]["LINK"]["cToken"])
    comptroller = _comptroller(w3, deployment)
    step = rules.liquidate(book, prices)
    for label in LINK_BORROWERS:
        account = account_address(label)
        i = list(book.accounts).index(account)
        assert comptroller.functions.getAccountLiquidity(account).call()[2] == 0     # no shortfall
        assert rules.liquidatable(book, prices)[i] and rules.liquidatable_exact(book)[i]
        n = list(step.rows).index(i)
        assert int(np.argmax(step.repaid[n] * prices)) == link
        borrowed = int(book.extra["debt_raw"][i, link])
        k = int(np.argmax(step.seized[n]))
        assert rules.max_repay_exact(book, i, link, k) == borrowed            # up to 100%
        # the float step repays what is owed now: the stored borrow grown by the chain's
        # borrowRatePerBlock over the blocks since the market's accrualBlockNumber
        link_token = w3.eth.contract(address=book.column_key(link), abi=fixture_artifact("compound_v2", "CErc20")["abi"])
        at = int(snap.meta["block"])
        pending = at - link_token.functions.accrualBlockNumber().call(block_identifier=at)
        rate = link_token.functions.borrowRatePerBlock().call(block_identifier=at) / 1e18
        assert step.repaid[n, link] == pytest.approx(borrowed / 10**18 * (1 + rate * pending), rel=1e-12)
        collateral = book.column_key(k)
        assert executor.liquidate(account, book.column_key(link), collateral, borrowed, dry_run=True).success
        too_much = borrowed + borrowed // 1000
        refused = executor.liquidate(account, book.column_key(link), collateral, too_much, dry_run=True)
        assert not refused.success
        # a healthy account's other borrows stay out of reach (not deprecated, no shortfall)
        for j in np.flatnonzero(book.debt[i] > 0):
            if j != link:
                assert not executor.liquidate(account, book.column_key(j), collateral, 1, dry_run=True).success
        mark = devnet.anvil.snapshot()
        try:
            done = executor.liquidate(account, book.column_key(link), collateral)    # as much as allowed
        finally:
            devnet.anvil.revert(mark)
        assert done.success and done.repaid[book.assets[link]] == borrowed
