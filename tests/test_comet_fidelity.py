"""Comet's store front in the engine and in the replay, on both sides of ``targetReserves``.

A WBTC fall absorbs accounts in both devnet Comets: cUSDCv3 holds reserves below its target (the
keeper buys the absorbed WBTC at the store-front price and sells it), cWETHv3 above it
(``buyCollateral`` reverts ``NotForSale``: its absorbed WBTC stays with the protocol). The engine,
run on the replay's own pre-shock read, must sell what the replay sold and nothing of cWETHv3's.
Which side each Comet is on comes from the chain (``getReserves``, ``targetReserves``); the WBTC
each absorbed account held, from the pre-shock snapshot.
"""

from __future__ import annotations

import pytest

from analyzer.replay import replay
from analyzer.scenarios import ShockScenario
from protocols import plugins
from protocols.comet.executor import comet_abi
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]


def test_absorbed_collateral_is_sold_only_below_target_reserves_in_engine_and_replay(devnet):
    from analyzer.engine import simulate
    from analyzer.fidelity import compare, engine_scenario

    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet (CONTAGION_TEST_PROTOCOLS)")
    w3 = devnet.w3
    comets = {name: w3.eth.contract(address=d["comet"], abi=comet_abi())
              for name, d in devnet.book["protocols"]["comet"].items()}
    block = w3.eth.block_number
    open_store = {name: c.functions.getReserves().call(block_identifier=block)
                  < c.functions.targetReserves().call(block_identifier=block) for name, c in comets.items()}
    assert open_store == {"cUSDCv3": True, "cWETHv3": False}
    chosen = [plugins()[name] for name in ("comet", "uniswap-v3") if name in devnet.book["protocols"]]
    scenario = ShockScenario(name="wbtc-20", price_shocks={"WBTC": -0.20})
    replayed = replay(devnet.url, devnet.book, scenario, chosen)
    assert replayed.reached_fixed_point and replayed.source_unchanged
    before = replayed.snapshot_before
    wbtc = before.address_of("WBTC")
    absorbed = set(replayed.accounts_liquidated.get("comet", []))
    held = before.positions[(before.positions["protocol"] == "comet") & (before.positions["asset"] == wbtc)
                            & (before.positions["side"] == "collateral") & before.positions["account"].isin(absorbed)]
    by_market = {name: float(held.loc[held["market"] == c.address, "amount"].sum()) for name, c in comets.items()}
    assert by_market["cUSDCv3"] > 0 and by_market["cWETHv3"] > 0, "the shock absorbs WBTC in both Comets"
    replay_sold = sum(int(r.sold_raw.get(wbtc, 0)) for r in replayed.rounds) / 10 ** 8
    assert replay_sold == pytest.approx(by_market["cUSDCv3"], rel=1e-6)       # all of the open store's, none else
    engine = simulate(before, engine_scenario(scenario, replayed))
    index = list(engine.assets).index(wbtc)
    engine_sold = float(sum(r.flows[index].sum() for r in engine.rounds))
    assert engine_sold == pytest.approx(replay_sold, rel=0.01)
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    fidelity = compare(engine.to_json(), {p: set(g["account"]) for p, g in liquidated.groupby("protocol")},
                       replayed.to_json())
    gap = fidelity["protocols"]["comet"]
    assert gap["accounts_ok"], (gap["only_in_engine"], gap["only_in_replay"])
    assert gap["value_ok"] and gap["bad_debt_ok"], gap
    assert all(p["ok"] for p in fidelity["final_prices"].values()), fidelity["final_prices"]
