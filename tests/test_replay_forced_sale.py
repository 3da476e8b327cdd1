"""A scenario's forced sale replayed on the devnets: the demo's receipt holder (a Comet borrower
with aWETH collateral), an Aave, a Compound V2 and a Morpho Blue borrower closed by their protocols' own
repay and withdraw calls in round 0. Checked against the chain (the protocols' views of the accounts
after), the snapshot (what each held), and the engine on the same book (the fidelity criteria)."""

from __future__ import annotations

import json

import pytest

from analyzer.books import market_of
from analyzer.cheats import read
from analyzer.demo import largest_receipt_holder
from analyzer.scenarios import ForcedSale, ShockScenario
from protocols.compound_v2.constants import NATIVE_ASSET
from tests.conftest import requires_anvil
from tests.test_morpho_blue import morpho_devnet, scan  # noqa: F401 (the fixture)

pytestmark = [requires_anvil, pytest.mark.slow]


def test_a_forced_sale_closes_each_account_on_the_fork_and_the_engine_agrees(devnet):
    from analyzer.recommend.prove import chain_copy
    from analyzer.replay import replay
    from analyzer.scan import scan as scan_chain
    from protocols import plugins

    chosen = list(plugins().values())
    snapshot = scan_chain(devnet.url, chosen, book=devnet.book, cache_dir=None)
    holder = largest_receipt_holder(snapshot)
    assert holder is not None and holder[1] == "comet"
    pos = snapshot.positions
    aave = pos[(pos["protocol"] == "aave-v3") & (pos["side"] == "debt")]
    borrower = str(aave.loc[aave["amount"].idxmax(), "account"])
    compound = pos[(pos["protocol"] == "compound-v2") & (pos["side"] == "debt")]
    native = compound["asset"].str.lower() == NATIVE_ASSET.lower()      # CEther borrows are not closed
    compound = compound[~compound["account"].isin(compound.loc[native, "account"])]
    lender = str(compound.loc[compound["amount"].idxmax(), "account"])
    scenario = ShockScenario(name="forced", forced_sales=[ForcedSale(holder[0], "comet"), ForcedSale(borrower, "aave-v3"),
                                                          ForcedSale(lender, "compound-v2")])
    held = {(p, a.lower()): rows for (p, a), rows in pos.groupby(["protocol", pos["account"]])}
    with chain_copy(devnet.url) as fork:
        result = replay(fork.url, devnet.book, scenario, chosen, in_place=True)
        comet = str(held[("comet", holder[0].lower())]["market"].iloc[0])
        aave_pool = str(held[("aave-v3", borrower.lower())]["market"].iloc[0])
        assert read(fork.w3, comet, "borrowBalanceOf(address)(uint256)", holder[0]) == 0
        for asset in held[("comet", holder[0].lower())].query("side == 'collateral'")["asset"]:
            assert read(fork.w3, comet, "collateralBalanceOf(address,address)(uint128)", holder[0], asset) == 0
        data = read(fork.w3, aave_pool, "getUserAccountData(address)(uint256,uint256,uint256,uint256,uint256,uint256)",
                    borrower)
        assert data[1] == 0        # totalDebtBase
        for reserve, side in held[("compound-v2", lender.lower())][["reserve", "side"]].itertuples(index=False):
            view = "borrowBalanceStored(address)(uint256)" if side == "debt" else "balanceOf(address)(uint256)"
            assert read(fork.w3, reserve, view, lender) == 0, (reserve, side)
    forced = {(f["protocol"], f["account"].lower()): f for f in result.rounds[0].forced}
    assert set(forced) == {("comet", holder[0].lower()), ("aave-v3", borrower.lower()), ("compound-v2", lender.lower())}
    check_amounts(snapshot, held, forced)
    assert result.rounds[0].sold_raw, "what the accounts withdrew is sold through the pools"
    check_fidelity(scenario, result)


def test_a_forced_sale_of_a_morpho_borrower_repays_and_withdraws_in_each_of_its_markets(morpho_devnet):  # noqa: F811
    from analyzer.recommend.prove import chain_copy
    from analyzer.replay import replay
    from protocols import get

    snapshot = scan(morpho_devnet)
    pos = snapshot.positions
    debt = pos[(pos["protocol"] == "morpho-blue") & (pos["side"] == "debt")]
    account = str(debt.loc[debt["amount"].idxmax(), "account"])
    # the Morpho devnet has no pools to sell into: the engine moves no price either
    scenario = ShockScenario(name="forced", forced_sales=[ForcedSale(account, "morpho-blue")], price_impact=False)
    held = {(p, a.lower()): rows for (p, a), rows in pos.groupby(["protocol", pos["account"]])}
    markets = set(held[("morpho-blue", account.lower())]["market"])
    with chain_copy(morpho_devnet.url) as fork:
        result = replay(fork.url, morpho_devnet.book, scenario, [get("morpho-blue")], in_place=True)
        singleton = market_of(morpho_devnet.book, "morpho-blue")["morpho"]
        for market in markets:
            position = read(fork.w3, singleton, "position(bytes32,address)(uint256,uint128,uint128)",
                            bytes.fromhex(market[2:]), account)
            assert tuple(position[1:]) == (0, 0), market
    forced = {(f["protocol"], f["account"].lower()): f for f in result.rounds[0].forced}
    assert set(forced) == {("morpho-blue", account.lower())}
    check_amounts(snapshot, held, forced)
    check_fidelity(scenario, result)


def check_amounts(snapshot, held: dict, forced: dict) -> None:
    """Each closed account's withdrawn collateral and repaid debt are what the snapshot read (token
    units), but for the interest of the few blocks since (Comet's collateral earns none)."""
    decimals = dict(zip(snapshot.assets["address"], snapshot.assets["decimals"], strict=True))
    for key, record in forced.items():
        rows = held[key]
        for side, moved in (("collateral", record["withdrawn_raw"]), ("debt", record["repaid_raw"])):
            mine = rows[rows["side"] == side].groupby("asset")["amount"].sum()
            assert {a.lower() for a in moved} == {a.lower() for a in mine.index}, (key, side)
            for asset, amount in mine.items():
                assert int(moved[asset]) / 10 ** int(decimals[asset]) == pytest.approx(amount, rel=1e-4), (key, side, asset)


def check_fidelity(scenario: ShockScenario, result) -> None:
    """The engine on the replay's own book agrees with the replay within the fidelity criteria."""
    from analyzer.engine import simulate
    from analyzer.fidelity import compare, engine_scenario

    engine = simulate(result.snapshot_before, engine_scenario(scenario, result))
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    fidelity = compare(engine.to_json(), {p: set(g["account"]) for p, g in liquidated.groupby("protocol")},
                       result.to_json())
    assert fidelity["passed"], json.dumps({k: v for k, v in fidelity.items() if k not in ("engine", "replay")})[:3000]
