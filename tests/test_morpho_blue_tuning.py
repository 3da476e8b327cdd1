"""Morpho Blue's choice of LLTV (protocols/morpho_blue/tuning.py) on the Morpho devnet: the enabled
set read from the chain, a market's positions moved to its sibling at a lower enabled LLTV on a
copy of the devnet, and a fresh scan of it equal to the tuning's offline rows; the accounts the
move makes liquidatable are those Morpho's own health rule (read from the contract) says are."""

from __future__ import annotations

import json

import pytest

from analyzer.cheats import read
from analyzer.recommend.evaluate import liquidatable_now, newly_liquidatable, tunings
from analyzer.recommend.prove import chain_copy
from protocols import get
from protocols.base import ParameterChange
from protocols.morpho_blue import exact
from protocols.morpho_blue.contracts import MARKET, market_id
from tests.conftest import requires_anvil
from tests.test_morpho_blue import markets_of, morpho_devnet, scan  # noqa: F401 (the fixture)

pytestmark = [requires_anvil, pytest.mark.slow]
NEW_LLTV = 86 * 10**16       # enabled on the devnet (WETH/USDC's LLTV)


@pytest.fixture(scope="module")
def case(morpho_devnet):  # noqa: F811
    snapshot = scan(morpho_devnet)
    symbols = snapshot.symbol_of()
    market, info = next((m, p) for m, p in markets_of(snapshot).items()
                        if symbols[p["loan_token"]] == "USDC" and symbols[p["collateral_token"]] == "USDe")
    assert int(info["lltv"]) == 915 * 10**15
    return snapshot, market, info


def test_the_enabled_lltvs_are_those_the_singleton_reports(morpho_devnet, case):  # noqa: F811
    snapshot, market, info = case
    morpho = markets_deployments(morpho_devnet)[0]
    enabled = [int(v) for v in info["enabled_lltvs"]]
    assert enabled == sorted({int(p["lltv"]) for p in markets_of(snapshot).values()})
    for lltv in (*enabled, 90 * 10**16, 10**18):
        assert read(morpho_devnet.w3, morpho, "isLltvEnabled(uint256)(bool)", lltv) == (lltv in enabled)
    param = next(p for p in tunings(snapshot)["morpho-blue"].parameters(snapshot) if p.market == market)
    assert (param.value, param.minimum, param.maximum) == (0.915, 0.77, 0.915)


def markets_deployments(devnet) -> list[str]:
    from analyzer.books import deployments_for

    return [m.deployment["morpho"] for m in deployments_for([get("morpho-blue")], devnet.w3.eth.chain_id, devnet.book)]


def test_moving_a_market_to_its_sibling_on_a_fork_gives_the_offline_book(morpho_devnet, case):  # noqa: F811
    from analyzer.recommend.prove import configure
    from analyzer.scan import scan as scan_chain

    snapshot, market, info = case
    morpho = markets_deployments(morpho_devnet)[0]
    changes = [ParameterChange("morpho-blue", market, info["collateral_token"], "lltv", NEW_LLTV / 1e18)]
    sibling = market_id(info["loan_token"], info["collateral_token"], info["oracle"], info["irm"], NEW_LLTV)
    offline = tunings(snapshot)["morpho-blue"].apply(snapshot, changes)
    predicted = liquidatable_now(snapshot, changes)
    assert predicted["accounts"], "a 0.915 -> 0.86 move makes a borrower near health 1 liquidatable"
    plugins = [get("morpho-blue")]
    with chain_copy(morpho_devnet.url) as fork:
        w3 = fork.w3
        movers = sorted(set(snapshot.positions.loc[snapshot.positions["market"] == market, "account"]))
        tokens = (info["loan_token"], info["collateral_token"])
        wallets = {(a, t): read(w3, t, "balanceOf(address)(uint256)", a) for a in movers for t in tokens}
        configure(w3, morpho_devnet.book, plugins, changes)
        fresh = scan_chain(fork.url, plugins, book=morpho_devnet.book, cache_dir=None)
        # the chain: the sibling exists at the new LLTV, the old market is empty, wallets are as before
        params = read(w3, morpho, "idToMarketParams(bytes32)(address,address,address,address,uint256)",
                      bytes.fromhex(sibling[2:]))
        assert int(params[4]) == NEW_LLTV
        old = read(w3, morpho, f"market(bytes32){MARKET}", bytes.fromhex(market[2:]))
        assert old[2] == 0 and old[3] == 0          # no borrow left in the old market
        assert {k: read(w3, k[1], "balanceOf(address)(uint256)", k[0]) for k in wallets} == wallets
        # Morpho's own health rule, from the contract, for every borrower moved
        price = int(read(w3, info["oracle"], "price()(uint256)"))
        totals = exact.MarketTotals(*read(w3, morpho, f"market(bytes32){MARKET}", bytes.fromhex(sibling[2:])))
        unhealthy = set()
        for account in movers:
            _, shares, collateral = read(w3, morpho, "position(bytes32,address)(uint256,uint128,uint128)",
                                         bytes.fromhex(sibling[2:]), account)
            if not exact.is_healthy(shares, collateral, totals, price, NEW_LLTV):
                unhealthy.add(account)
    assert {a for _, m, a in predicted["accounts"]} == unhealthy
    assert newly_liquidatable(snapshot, fresh)["accounts"] == predicted["accounts"]
    # the fresh scan's book of the sibling is the offline one (interest of the move's few blocks aside)
    ours, chain = (s.positions[s.positions["market"] == sibling].set_index(["account", "asset", "side"])["amount"]
                   for s in (offline, fresh))
    assert sorted(ours.index) == sorted(chain.index)
    assert chain.sort_index().to_numpy() == pytest.approx(ours.sort_index().to_numpy(), rel=1e-6)
    row = fresh.markets[(fresh.markets["market"] == sibling)].iloc[0]
    assert json.loads(row["params"])["lltv"] == str(NEW_LLTV) and row["liquidation_threshold"] == 0.86
    assert (fresh.positions["market"] == market).sum() == 0


def test_a_recommended_lltv_made_on_a_fork_keeps_the_scenario_under_the_budget(morpho_devnet, case):  # noqa: F811
    """recommend on the USDe markets for a -15% USDe stress: the LLTV it picks is an enabled one,
    and the engine on a fresh scan of the fork where the move was made (settled, then shocked) finds
    the bad debt the search predicted, under the budget; one step back is today's LLTV, over it."""
    from analyzer.engine.settle import settle_then_shock
    from analyzer.recommend import recommend
    from analyzer.recommend.prove import configure
    from analyzer.scan import scan as scan_chain
    from analyzer.scenarios import ShockScenario

    snapshot, _, info = case
    stress, budget = ShockScenario(name="usde-15", price_shocks={"USDe": -0.15}), 50_000.0
    doc = recommend(snapshot, [stress], budget, markets=["USDe"], with_distance=False)
    assert doc["bad_debt_before_usd"][stress.name] > budget and doc["feasible"]
    enabled = {int(v) for v in info["enabled_lltvs"]}
    for change in doc["changes"]:
        assert round(change["value"] * 1e4) * 10**14 in enabled
    changes = [ParameterChange(**c) for c in doc["changes"]]
    plugins = [get("morpho-blue")]
    with chain_copy(morpho_devnet.url) as fork:
        configure(fork.w3, morpho_devnet.book, plugins, changes)
        fresh = scan_chain(fork.url, plugins, book=morpho_devnet.book, cache_dir=None)
    on_fork = settle_then_shock(fresh, stress).total_bad_debt_usd
    assert on_fork <= budget
    assert on_fork == pytest.approx(doc["bad_debt_after_usd"][stress.name], rel=1e-3)
    assert newly_liquidatable(snapshot, fresh)["accounts"] == doc["liquidatable_now"]["accounts"]
    for rec in doc["recommendations"]:
        back = [c if c.market != rec["market"] else ParameterChange(**{**vars(c), "value": rec["new_value"] + rec["step"]})
                for c in changes]
        undone = tunings(snapshot)["morpho-blue"].apply(snapshot, back)
        assert settle_then_shock(undone, stress).total_bad_debt_usd > budget


def test_moving_into_a_sibling_that_already_has_positions_adds_the_books_up(morpho_devnet, case):  # noqa: F811
    """The sibling at 0.86 exists with positions of its own (the vault supplying the market supplies
    there too, and one borrower has collateral there) before the move: the offline merge equals a
    fresh scan of the fork after the move, account by account."""
    from analyzer.cheats import deal, send_as
    from analyzer.recommend.prove import configure
    from analyzer.scan import scan as scan_chain
    from protocols.morpho_blue.contracts import MARKET_PARAMS

    snapshot, market, info = case
    morpho = markets_deployments(morpho_devnet)[0]
    sibling_params = (info["loan_token"], info["collateral_token"], info["oracle"], info["irm"], NEW_LLTV)
    sibling = market_id(*sibling_params)
    held = snapshot.positions[snapshot.positions["market"] == market]
    vault = held.loc[(held["asset"] == info["loan_token"]) & (held["side"] == "collateral"), "account"].iloc[0]
    borrower = held.loc[held["side"] == "debt", "account"].iloc[0]
    plugins = [get("morpho-blue")]
    with chain_copy(morpho_devnet.url) as fork:
        w3 = fork.w3
        send_as(w3, w3.eth.accounts[0], morpho, f"createMarket({MARKET_PARAMS})", sibling_params)
        send_as(w3, read(w3, vault, "owner()(address)"), vault, f"submitCap({MARKET_PARAMS},uint256)", sibling_params,
                10**30)
        for account, token, amount, call in ((vault, info["loan_token"], 10**12, "supply"),
                                             (borrower, info["collateral_token"], 10**22, "supplyCollateral")):
            deal(w3, token, account, amount)
            send_as(w3, account, token, "approve(address,uint256)", morpho, amount)
            if call == "supply":
                send_as(w3, account, morpho, f"supply({MARKET_PARAMS},uint256,uint256,address,bytes)", sibling_params,
                        amount, 0, account, b"")
            else:
                send_as(w3, account, morpho, f"supplyCollateral({MARKET_PARAMS},uint256,address,bytes)",
                        sibling_params, amount, account, b"")
        before = scan_chain(fork.url, plugins, book=morpho_devnet.book, cache_dir=None)
        assert ((before.positions["market"] == sibling) & (before.positions["account"] == borrower)).any()
        change = ParameterChange("morpho-blue", market, info["collateral_token"], "lltv", NEW_LLTV / 1e18)
        offline = tunings(before)["morpho-blue"].apply(before, [change])
        configure(w3, morpho_devnet.book, plugins, [change])
        fresh = scan_chain(fork.url, plugins, book=morpho_devnet.book, cache_dir=None)
    ours, chain = (s.positions[s.positions["market"] == sibling].set_index(["account", "asset", "side"])["amount"]
                   .sort_index() for s in (offline, fresh))
    assert list(ours.index) == list(chain.index) and ours.index.is_unique
    assert chain.to_numpy() == pytest.approx(ours.to_numpy(), rel=1e-6)
    for key in ("total_supply_assets", "total_borrow_assets"):
        mine, theirs = (int(json.loads(s.markets[s.markets["market"] == sibling]["params"].iloc[0])[key])
                        for s in (offline, fresh))
        assert theirs == pytest.approx(mine, rel=1e-6)
    assert not (offline.markets["market"] == market).any() and not (fresh.positions["market"] == market).any()
