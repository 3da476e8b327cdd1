"""Fidelity: the engine's cascade beside the replay's, and how far apart they are.

The gap is the engine's model error, and we publish it (``fidelity.json``, a table in the report).
Criteria (issue 7): the same accounts liquidated; value liquidated per protocol within 1%; final
pool prices within 0.5%; bad debt within 1% of the larger of the two, or $1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analyzer.atomic import atomic_write_text

VALUE_TOLERANCE = 0.01
PRICE_TOLERANCE = 0.005
BAD_DEBT_TOLERANCE = 0.01
BAD_DEBT_FLOOR_USD = 1.0


def engine_scenario(scenario, replay_result):
    """The scenario the engine runs beside a replay: interest accrues over the replay's own clock
    (per protocol and round, the time and blocks before its keepers read the round's book:
    :meth:`~analyzer.replay.result.ReplayResult.interest_clock`), and past the replay's rounds over
    its mean time and blocks per round; unless the scenario sets its own ``round_seconds`` /
    ``round_blocks`` (then those, evenly)."""
    from dataclasses import replace

    measured = scenario.round_seconds is None and scenario.round_blocks is None and not scenario.round_clock
    return replace(scenario, round_clock=replay_result.interest_clock() if measured else scenario.round_clock,
                   round_seconds=replay_result.seconds_per_round if scenario.round_seconds is None
                   else scenario.round_seconds,
                   round_blocks=replay_result.blocks_per_round if scenario.round_blocks is None
                   else scenario.round_blocks)


def _relative(a: float, b: float) -> float:
    scale = max(abs(a), abs(b))
    return 0.0 if scale == 0 else abs(a - b) / scale


def compare(engine_json: dict[str, Any], engine_accounts: dict[str, set[str]], replay_json: dict[str, Any]) -> dict:
    """Engine (``cascade.json`` dict and liquidated accounts by protocol) vs replay (``ReplayResult.to_json``)."""
    protocols = sorted(set(replay_json["liquidated_usd"]) | {p for p in engine_json.get("protocols", {})
                                                               if p in replay_json["liquidated_usd"]})
    per_protocol = {}
    for name in protocols:
        engine_p = engine_json.get("protocols", {}).get(name, {})
        eng_value, rep_value = float(engine_p.get("liquidated_usd") or 0.0), float(replay_json["liquidated_usd"].get(name, 0.0))
        eng_bad, rep_bad = float(engine_p.get("bad_debt_usd") or 0.0), float(replay_json["bad_debt_usd"].get(name, 0.0))
        eng_accounts = set(engine_accounts.get(name, set()))
        rep_accounts = set(replay_json["accounts_liquidated"].get(name, []))
        bad_gap = abs(eng_bad - rep_bad)
        per_protocol[name] = {
            "engine_liquidated_usd": eng_value, "replay_liquidated_usd": rep_value,
            "liquidated_relative_error": _relative(eng_value, rep_value),
            "engine_bad_debt_usd": eng_bad, "replay_bad_debt_usd": rep_bad, "bad_debt_gap_usd": bad_gap,
            "engine_accounts": len(eng_accounts), "replay_accounts": len(rep_accounts),
            "only_in_engine": sorted(eng_accounts - rep_accounts), "only_in_replay": sorted(rep_accounts - eng_accounts),
            "value_ok": _relative(eng_value, rep_value) <= VALUE_TOLERANCE or max(eng_value, rep_value) < 1.0,
            "bad_debt_ok": bad_gap <= max(BAD_DEBT_TOLERANCE * max(eng_bad, rep_bad), BAD_DEBT_FLOOR_USD),
            "accounts_ok": eng_accounts == rep_accounts,
        }
    engine_prices = {a["address"]: a.get("price_final_usd") for a in engine_json.get("assets", [])}
    symbols = {a["address"]: a.get("symbol", a["address"]) for a in engine_json.get("assets", [])}
    prices = {}
    for asset, replay_price in sorted(replay_json.get("final_prices", {}).items()):
        engine_price = engine_prices.get(asset)
        if engine_price is None:
            continue
        error = _relative(float(engine_price), float(replay_price))
        prices[symbols.get(asset, asset)] = {"engine_usd": float(engine_price), "replay_usd": float(replay_price),
                                             "relative_error": error, "ok": error <= PRICE_TOLERANCE}
    rounds = []
    for index, replay_round in enumerate(replay_json.get("rounds", [])):
        engine_round: dict = next((r for r in engine_json.get("rounds", []) if r.get("round") == index), {})
        replay_by_protocol: dict[str, float] = {}
        for liquidation in replay_round["liquidations"]:
            replay_by_protocol[liquidation["protocol"]] = replay_by_protocol.get(liquidation["protocol"], 0.0) + liquidation["repaid_usd"]
        rounds.append({"round": index, "replay_liquidated_usd": replay_by_protocol,
                       "engine_liquidated_usd": {p: float(v or 0.0) for p, v in engine_round.get("liquidated_usd", {}).items()},
                       "replay_liquidations": len(replay_round["liquidations"])})
    passed = all(p["value_ok"] and p["bad_debt_ok"] and p["accounts_ok"] for p in per_protocol.values()) and \
        all(p["ok"] for p in prices.values())
    return {
        "schema": "defi-contagion/fidelity", "schema_version": 1,
        "tolerances": {"value": VALUE_TOLERANCE, "price": PRICE_TOLERANCE, "bad_debt": BAD_DEBT_TOLERANCE,
                       "bad_debt_floor_usd": BAD_DEBT_FLOOR_USD},
        "passed": passed, "protocols": per_protocol, "final_prices": prices, "rounds": rounds,
        "replay": {"source_block": replay_json["source_block"], "reached_fixed_point": replay_json["reached_fixed_point"],
                   "source_unchanged": replay_json["source_unchanged"], "rounds": len(replay_json.get("rounds", []))},
        "engine": {"stop_reason": engine_json.get("stop_reason"), "rounds_run": engine_json.get("rounds_run")},
    }


def write_fidelity(result: dict, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
