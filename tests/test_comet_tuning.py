"""Comet tuning (protocols/comet/tuning.py) on the devnet: a liquidate-collateral-factor cut, a
liquidation-factor cut and a store-front-factor cut set on a fork of the devnet, read back from
the contract (``getAssetInfoByAddress``, ``storeFrontPriceFactor``, ``quoteCollateral``), a fresh
scan of the fork equal to the tuning's offline rows, and the accounts the cut makes liquidatable
equal to those the contract's own ``isLiquidatable`` reports after it."""

from __future__ import annotations

import json

import pytest

from analyzer.cheats import read
from analyzer.recommend.evaluate import liquidatable, liquidatable_now, newly_liquidatable, tunings
from analyzer.recommend.prove import chain_copy, configure
from protocols.base import ParameterChange
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]
LCF_CUT, LF_CUT, SF_CUT = 0.05, 0.03, 0.10


@pytest.fixture(scope="module")
def case(devnet):
    from analyzer.scan import scan
    from protocols import plugins

    chosen = list(plugins().values())
    snapshot = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    symbols = snapshot.symbol_of()
    params = tunings(snapshot)["comet"].parameters(snapshot)
    cuts = {"liquidate_collateral_factor": LCF_CUT, "liquidation_factor": LF_CUT, "store_front_price_factor": SF_CUT}
    # WETH collateral of the Comet whose base is not WETH, and that Comet's store front
    weth = next(p for p in params if symbols[p.asset] == "WETH" and p.parameter == "liquidate_collateral_factor")
    changes = [ParameterChange("comet", p.market, p.asset, p.parameter, round(p.value - cuts[p.parameter], 4))
               for p in params if p.market == weth.market and (p.asset == weth.asset or p.parameter == "store_front_price_factor")]
    assert {c.parameter for c in changes} == set(cuts)
    return snapshot, chosen, changes


def test_the_factors_read_back_from_the_contract_and_a_fresh_scan_matches_the_offline_rows(devnet, case):
    from analyzer.scan import scan

    snapshot, chosen, changes = case
    by = {c.parameter: c for c in changes}
    comet, weth = by["liquidate_collateral_factor"].market, by["liquidate_collateral_factor"].asset
    row = snapshot.markets[(snapshot.markets["protocol"] == "comet") & (snapshot.markets["market"] == comet)
                           & (snapshot.markets["asset"] == weth)].iloc[0]
    old = json.loads(row["params"])
    with chain_copy(devnet.url) as fork:
        configure(fork.w3, devnet.book, chosen, changes)
        info = fork.w3.eth.contract(address=comet, abi=_abi()).functions.getAssetInfoByAddress(weth).call()
        lcf = round(by["liquidate_collateral_factor"].value * 1e4) * 10**14
        assert info[5] == lcf
        assert info[4] == int(old["borrow_collateral_factor"]) - (int(old["liquidate_collateral_factor"]) - lcf)
        assert info[6] == round(by["liquidation_factor"].value * 1e4) * 10**14
        sf = round(by["store_front_price_factor"].value * 1e4) * 10**14
        assert read(fork.w3, comet, "storeFrontPriceFactor()(uint256)") == sf
        # the sale price follows: quoteCollateral = base / (price × (1 − sf × (1 − lf)))
        price = int(read(fork.w3, comet, "getPrice(address)(uint256)", info[2]))
        base_price = int(read(fork.w3, comet, "getPrice(address)(uint256)",
                              read(fork.w3, comet, "baseTokenPriceFeed()(address)")))
        base_scale = int(read(fork.w3, comet, "baseScale()(uint256)"))
        discounted = price * (10**18 - sf * (10**18 - info[6]) // 10**18) // 10**18
        quote = int(read(fork.w3, comet, "quoteCollateral(address,uint256)(uint256)", weth, 1000 * base_scale))
        assert quote == pytest.approx(1000 * base_price * info[3] / discounted, rel=1e-9)
        scanned = scan(fork.url, chosen, book=devnet.book, cache_dir=None).markets
        expected = tunings(snapshot)["comet"].apply(snapshot, changes).markets
        expected = expected[expected["protocol"] == "comet"]
        for (m, a), mine in expected.groupby(["market", "asset"]):
            theirs = scanned[(scanned["protocol"] == "comet") & (scanned["market"] == m) & (scanned["asset"] == a)].iloc[0]
            assert list(mine[["ltv", "liquidation_threshold", "liquidation_bonus"]].iloc[0]) == \
                pytest.approx(list(theirs[["ltv", "liquidation_threshold", "liquidation_bonus"]]), abs=1e-12)
            keys = ("borrow_collateral_factor", "liquidate_collateral_factor", "liquidation_factor",
                    "store_front_price_factor")
            ours, chain = json.loads(mine["params"].iloc[0]), json.loads(theirs["params"])
            assert {k: ours[k] for k in keys if k in ours} == {k: chain[k] for k in keys if k in chain}


def test_the_accounts_made_liquidatable_are_those_comet_reports_after_the_change(devnet, case):
    from analyzer.scan import scan

    snapshot, chosen, changes = case
    predicted = liquidatable_now(snapshot, changes)
    assert predicted["accounts"], "a five-point cut makes a Comet borrower liquidatable on the devnet"
    with chain_copy(devnet.url) as fork:
        before = scan(fork.url, chosen, book=devnet.book, cache_dir=None)

        def chain_says(market: str, account: str) -> bool:
            return bool(read(fork.w3, market, "isLiquidatable(address)(bool)", account))

        assert not any(chain_says(m, a) for _, m, a in predicted["accounts"])
        configure(fork.w3, devnet.book, chosen, changes)
        assert all(chain_says(m, a) for _, m, a in predicted["accounts"])
        fresh = newly_liquidatable(before, scan(fork.url, chosen, book=devnet.book, cache_dir=None))
        assert fresh["accounts"] == predicted["accounts"]
        assert fresh["debt_usd"] == pytest.approx(predicted["debt_usd"], rel=1e-6)
        borrowers = snapshot.positions[(snapshot.positions["protocol"] == "comet") & (snapshot.positions["side"] == "debt")]
        others = {(m, a) for m, a in zip(borrowers["market"], borrowers["account"], strict=True)} \
            - {(m, a) for _, m, a in predicted["accounts"]}
        assert {o for o in others if chain_says(*o)} <= {(m, a) for p, m, a in liquidatable(snapshot) if p == "comet"}


def _abi():
    from analyzer.devnet.solc import fixture_artifact

    return fixture_artifact("comet", "Comet")["abi"]
