"""Lyra V1 away from the shipped book: the engine against the replay on ``lyra-thin-b`` (a thin option
pool, shorts a hair above their minimum collateral, other prices, expiries and skews than
mainnet-like), with the scenario's IV move put on chain. The engine must liquidate the same shorts and
price their buy-back within 1% of what the real ``liquidatePosition`` calls paid the pool."""

from __future__ import annotations

import pytest

from analyzer.scenarios import ShockScenario
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]


@pytest.fixture(scope="module")
def thin_devnet():
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from protocols import plugins

    running = start_devnet(scenario_mod.load("lyra-thin-b"), list(plugins().values()))
    try:
        yield running
    finally:
        running.anvil.stop()


@pytest.mark.parametrize("shock", [
    ShockScenario(name="weth-10-iv+40", price_shocks={"WETH": -0.10}, iv_shocks={"WETH": 0.40}),
    ShockScenario(name="weth-30", price_shocks={"WETH": -0.30}),   # shorts the collateral no longer covers
    ShockScenario(name="weth+20", price_shocks={"WETH": 0.20}),    # calls, many collateralised in base
], ids=lambda s: s.name)
def test_the_engine_liquidates_the_replays_lyra_shorts_at_its_buyback_value(thin_devnet, shock):
    from analyzer.engine import simulate
    from analyzer.fidelity import engine_scenario
    from analyzer.replay import replay
    from protocols import plugins

    chosen = [plugins()[name] for name in ("uniswap-v3", "lyra-v1")]
    replayed = replay(thin_devnet.url, thin_devnet.book, shock, chosen)
    engine = simulate(replayed.snapshot_before, engine_scenario(shock, replayed))
    accounts = engine.accounts
    engine_shorts = accounts[(accounts["protocol"] == "lyra-v1") & (accounts["liquidated_usd"] > 0)]
    replay_shorts = [x for r in replayed.rounds for x in r.liquidations if x.protocol == "lyra-v1"]
    assert replayed.source_unchanged and len(replay_shorts) >= 10
    assert set(engine_shorts["account"]) == {x.account for x in replay_shorts}
    lyra = engine.to_json()["protocols"]["lyra-v1"]
    assert lyra["liquidations"] == len(replay_shorts)
    assert lyra["liquidated_usd"] == pytest.approx(replayed.liquidated_usd["lyra-v1"], rel=0.01)
