"""A receipt token across protocols (fixtures/scenarios/receipts.toml): Aave takes bad debt at a
WBTC fall while its aWETH backs debt at Comet. On chain, Aave never writes an aToken balance
down (3.3+ books a reserve deficit) and Comet prices aWETH from the WETH feed, so the aWETH
borrowers at Comet sitting just above liquidation stay there. The engine, run from the replay's
own pre-shock snapshot, must liquidate exactly the Comet accounts the chain liquidates, and carry
Aave's loss as the suppliers' unrealised loss, not as a move of aWETH."""

from __future__ import annotations

import pytest

from analyzer.engine.cascade import simulate
from analyzer.fidelity import compare, engine_scenario
from analyzer.scenarios import ShockScenario
from protocols import get
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]

PROTOCOLS = ("aave-v3", "comet", "uniswap-v3")
SHOCK = ShockScenario(name="wbtc-35", price_shocks={"WBTC": -0.35})


@pytest.fixture(scope="module")
def replayed():
    from analyzer.devnet import scenario
    from analyzer.devnet.build import start_devnet
    from analyzer.replay import replay

    plugins = [get(name) for name in PROTOCOLS]
    running = start_devnet(scenario.load("receipts"), plugins)
    try:
        yield replay(running.url, running.book, SHOCK, plugins)
    finally:
        running.anvil.stop()


def test_the_engine_liquidates_at_comet_exactly_whom_the_chain_liquidates_while_aave_takes_bad_debt(replayed):
    engine = simulate(replayed.snapshot_before, engine_scenario(SHOCK, replayed))
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    accounts = {p: set(g["account"]) for p, g in liquidated.groupby("protocol")}
    chain = replayed.to_json()
    fidelity = compare(engine.to_json(), accounts, chain)
    assert replayed.reached_fixed_point and replayed.source_unchanged
    assert chain["bad_debt_usd"]["aave-v3"] > 100_000           # the chain's Aave took bad debt
    comet = fidelity["protocols"]["comet"]
    assert comet["accounts_ok"], comet
    assert comet["replay_accounts"] >= 2                        # the WBTC-backed ones went, on chain too
    # the aWETH borrowers just above liquidation survive on chain, and in the engine
    symbols = dict(zip(engine.symbols, range(len(engine.symbols)), strict=True))
    a_weth, weth = symbols["aWETH"], symbols["WETH"]
    for r in engine.rounds:
        assert r.price_after[a_weth] == pytest.approx(r.price_after[weth], rel=1e-12)
    assert engine.receipt_writedown == {}


def test_aaves_loss_is_reported_as_the_suppliers_unrealised_loss(replayed):
    engine = simulate(replayed.snapshot_before, engine_scenario(SHOCK, replayed))
    out = engine.to_json()
    chain_bad_debt = replayed.to_json()["bad_debt_usd"]["aave-v3"]
    loss = out["protocols"]["aave-v3"]["unrealised_supplier_loss_usd"]
    # what the chain's Aave lost (deficit plus debt left uncovered), read back from the fork
    assert loss == pytest.approx(chain_bad_debt, rel=0.01)
    by_cause = dict(zip(out["supplier_loss"]["sources"],
                        (row[out["supplier_loss"]["protocols"].index("aave-v3")] for row in out["supplier_loss"]["usd"]),
                        strict=True))
    assert sum(by_cause.values()) == pytest.approx(loss, rel=1e-9)
    assert by_cause["shock"] > 0.5 * loss                      # the WBTC fall put the borrowers under
    assert out["protocols"]["aave-v3"]["receipt_writedown_usd"] == 0.0   # aWETH holders lost nothing
