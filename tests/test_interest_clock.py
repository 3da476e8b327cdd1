"""The engine beside a replay accrues interest on the replay's own clock: per protocol and round,
the time and blocks that passed on the fork before that protocol's keepers read the round's book.
(The slow replay tests check the outcome against the chain: bad debt within $10 at WETH -40%.)"""

from __future__ import annotations

from analyzer.engine.interest import round_time
from analyzer.fidelity import engine_scenario
from analyzer.model import Snapshot
from analyzer.replay.result import ReplayResult, ReplayRound
from analyzer.scenarios import ShockScenario

SNAPSHOT_BLOCK, SNAPSHOT_TIME = 1_000, 1_700_000_000


def replay_with_clock() -> ReplayResult:
    """Two rounds: round 0 with the shock's swaps and many liquidations (Compound's keepers read
    it 90 blocks in, after Aave's), round 1 short; the fork ends at block 1,130."""
    rounds = [ReplayRound(0, {}, clock={"aave-v3": (1_004, SNAPSHOT_TIME + 8), "compound-v2": (1_090, SNAPSHOT_TIME + 60)}),
              ReplayRound(1, {}, clock={"aave-v3": (1_120, SNAPSHOT_TIME + 75), "compound-v2": (1_130, SNAPSHOT_TIME + 81)})]
    before = Snapshot(meta={"block_number": SNAPSHOT_BLOCK, "block_timestamp": SNAPSHOT_TIME})
    return ReplayResult(SNAPSHOT_BLOCK, 1_130, rounds, True, {}, {}, {}, {}, True, before,
                        seconds_per_round=40.5, blocks_per_round=65.0)


def test_each_protocols_clock_counts_from_the_snapshot_to_its_keepers_read_of_each_round():
    assert replay_with_clock().interest_clock() == {
        "aave-v3": [(8.0, 4.0), (67.0, 116.0)],
        "compound-v2": [(60.0, 90.0), (21.0, 40.0)],
    }


def test_the_engine_beside_a_replay_runs_on_its_clock_and_past_it_on_the_mean_round():
    scenario = engine_scenario(ShockScenario(price_shocks={"WETH": -0.4}), replay_with_clock())
    assert round_time(scenario, "compound-v2", 0) == (60.0, 90.0)
    assert round_time(scenario, "aave-v3", 1) == (67.0, 116.0)
    assert round_time(scenario, "compound-v2", 2) == (40.5, 65.0)       # past the replay's rounds
    assert round_time(scenario, "comet", 0) == (40.5, 65.0)             # a protocol it did not read


def test_a_scenario_that_sets_its_own_time_per_round_keeps_it():
    own = engine_scenario(ShockScenario(price_shocks={"WETH": -0.4}, round_seconds=12.0, round_blocks=1.0),
                          replay_with_clock())
    assert own.round_clock == {}
    assert round_time(own, "compound-v2", 0) == (12.0, 1.0)
