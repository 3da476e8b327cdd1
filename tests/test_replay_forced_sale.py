"""A scenario's forced sale replayed on the devnet: the demo's receipt holder (a Comet borrower
with aWETH collateral) and an Aave borrower closed by their protocols' own repay and withdraw
calls in round 0. Checked against the chain (the protocols' views of the accounts after), the
snapshot (what each held), and the engine on the same book (the fidelity criteria)."""

from __future__ import annotations

import pytest

from analyzer.cheats import read
from analyzer.demo import largest_receipt_holder
from analyzer.scenarios import ForcedSale, ShockScenario
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]


def test_a_forced_sale_closes_each_account_on_the_fork_and_the_engine_agrees(devnet):
    from analyzer.engine import simulate
    from analyzer.fidelity import compare, engine_scenario
    from analyzer.recommend.prove import chain_copy
    from analyzer.replay import replay
    from analyzer.scan import scan
    from protocols import plugins

    chosen = list(plugins().values())
    snapshot = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    holder = largest_receipt_holder(snapshot)
    assert holder is not None and holder[1] == "comet"
    pos = snapshot.positions
    aave = pos[(pos["protocol"] == "aave-v3") & (pos["side"] == "debt")]
    borrower = str(aave.loc[aave["amount"].idxmax(), "account"])
    scenario = ShockScenario(name="forced", forced_sales=[ForcedSale(holder[0], "comet"), ForcedSale(borrower, "aave-v3")])
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
    forced = {(f["protocol"], f["account"].lower()): f for f in result.rounds[0].forced}
    assert set(forced) == {("comet", holder[0].lower()), ("aave-v3", borrower.lower())}
    for key, record in forced.items():
        rows = held[key]
        for side, moved in (("collateral", record["withdrawn_raw"]), ("debt", record["repaid_raw"])):
            mine = rows[rows["side"] == side]
            assert {a.lower() for a in moved} == {a.lower() for a in mine["asset"]}, (key, side)
            for asset, raw in zip(mine["asset"], mine["raw"], strict=True):
                # what the snapshot read, but for the interest of the few blocks since (Comet's
                # collateral earns none)
                assert int(moved[asset]) == pytest.approx(int(raw), rel=1e-4), (key, side, asset)
    assert result.rounds[0].sold_raw, "what the accounts withdrew is sold through the pools"
    engine = simulate(result.snapshot_before, engine_scenario(scenario, result))
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    fidelity = compare(engine.to_json(), {p: set(g["account"]) for p, g in liquidated.groupby("protocol")},
                       result.to_json())
    assert fidelity["passed"], fidelity
