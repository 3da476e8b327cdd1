"""Replay, simulate, compare: the one path the CLI, the demo, the benchmark and the tests take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from analyzer.engine.result import CascadeResult
from analyzer.replay.result import ReplayResult
from analyzer.replay.run import log, replay
from analyzer.scenarios import ShockScenario
from protocols.base import Plugin


@dataclass
class ReplayComparison:
    """A replay, the engine's cascade from the same pre-shock read, and their fidelity record."""

    replay: ReplayResult
    engine: CascadeResult
    fidelity: dict[str, Any]       # what fidelity.json holds (:func:`analyzer.fidelity.compare`)

    @property
    def engine_accounts(self) -> dict[str, set[str]]:
        """The accounts the engine liquidated, by protocol."""
        return engine_liquidated_accounts(self.engine)


def engine_liquidated_accounts(engine: CascadeResult) -> dict[str, set[str]]:
    """The accounts ``engine`` liquidated (any USD), by protocol."""
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    return {str(p): set(g["account"]) for p, g in liquidated.groupby("protocol")}


def replay_and_compare(source_url: str, book: dict, scenario: ShockScenario, plugins: Sequence[Plugin], *,
                       max_rounds: int | None = None,
                       progress: Callable[[str], None] | None = None) -> ReplayComparison:
    """Replay ``scenario`` on a fork of ``source_url`` and run the engine beside it.

    Parameters
    ----------
    source_url
        RPC URL of the chain to fork (only read: the replay checks it is unchanged at the end).
    book
        The chain's address book (``contagion devnet up --book``), naming the plugins' markets.
    scenario
        The shock. The engine runs it from the replay's own pre-shock read, with interest accrued
        over the replay's measured time and blocks per round (:func:`analyzer.fidelity.engine_scenario`).
    plugins
        The protocols to replay and simulate.
    max_rounds
        Round limit of the replay (default: the scenario's).
    progress
        Called with one line per stage, round and first-seen skip of the replay (default: the
        ``analyzer.replay`` logger).

    Returns
    -------
    ReplayComparison
        The replay, the engine's cascade and the fidelity record (``fidelity["scenario"]`` named).

    Raises
    ------
    ContagionError
        The source is unreachable or not the book's chain, a market cannot be replayed, or the
        replay changed the source chain.
    """
    from analyzer.engine import simulate
    from analyzer.errors import ContagionError
    from analyzer.fidelity import compare, engine_scenario

    replayed = replay(source_url, book, scenario, plugins, max_rounds=max_rounds, progress=progress or log.info)
    if not replayed.source_unchanged:
        raise ContagionError("the replay changed the chain it forked (it must only read it)")
    assert replayed.snapshot_before is not None
    engine = simulate(replayed.snapshot_before, engine_scenario(scenario, replayed))
    fidelity = compare(engine.to_json(), engine_liquidated_accounts(engine), replayed.to_json())
    fidelity["scenario"] = scenario.name
    return ReplayComparison(replayed, engine, fidelity)
