"""``contagion recommend --prove``: the recommended changes made on an anvil fork through each
protocol's own configuration functions (:meth:`protocols.base.ParameterTuning.configure`), then
every stress scenario replayed there (:func:`analyzer.replay.replay`), settled then shocked as
the engine evaluated it:

1. a fork of the chain (of an anvil source, a copy of its whole state: ``anvil_dumpState`` loaded
   into a new anvil, with nothing left to fetch slot by slot from the source); a scan before the
   change; each recommendation's change alone, a fresh scan, and back (``recommendations_alone``:
   the accounts and debt it makes liquidatable there beside its trade-off figures); all the
   changes; a fresh scan after them, whose market rows are set beside those each protocol's tuning
   wrote offline (``parameters_on_fork``: the values, caps included, the configuration calls
   stored) and whose newly liquidatable accounts (each protocol's own rule at the fork's oracle
   prices) beside the document's ``liquidatable_now``;
2. per scenario, from the configured fork (evm_snapshot / evm_revert): a replay with no shock on
   the fork itself (the liquidations the change causes at today's prices, their sales through the
   real pools), then the scenario's replay on the same, settled, fork; its bad debt against the
   budget (strictly, and allowing the fidelity criteria's bad-debt tolerance:
   ``within_budget_to_model_error``) and against the engine's prediction, and the engine beside the
   stress replay on the settled fork (:func:`analyzer.fidelity.compare`).

A scenario's forced sales are made in the replay's first round (the account's positions closed by
its protocol's executor: :meth:`protocols.base.Executor.close_account`).

The recommendations proven are a search's just made, or a previous search's document
(``recommend --from recommendations.json``, :func:`read_recommendations`): its changes, its scenarios
and its budget, on the snapshot it was searched on.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from analyzer.errors import ContagionError
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange

LIQUIDATABLE_USD_TOLERANCE = 1e-6


def read_recommendations(path: str | Path, snapshot) -> tuple[dict[str, Any], list[ShockScenario]]:
    """A previous search's document (``recommendations.json``) and its stress scenarios; refused
    unless it is one, found a feasible set of changes, and was searched on ``snapshot`` (the same
    chain and block: the figures it predicts are that snapshot's)."""
    import json

    from analyzer.recommend.run import SCHEMA

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContagionError(f"--from {path}: not a readable recommendations.json ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ContagionError(f"--from {path}: not a recommendations document (schema {SCHEMA})")
    if not doc.get("feasible") or not doc.get("changes"):
        raise ContagionError(f"--from {path}: its search met no budget: there are no changes to prove")
    searched = doc.get("snapshot") or {}
    for key in ("chain_id", "block_number"):
        if searched.get(key) != snapshot.meta.get(key):
            raise ContagionError(f"--from {path}: searched on {key} {searched.get(key)}, but the snapshot's is "
                                 f"{snapshot.meta.get(key)}: give the snapshot it was searched on")
    records = doc.get("scenarios")
    if not isinstance(records, list) or not records:
        raise ContagionError(f"--from {path}: no scenarios recorded")
    return doc, [ShockScenario.from_dict(r, f"--from {path.name}: scenario {i + 1}") for i, r in enumerate(records)]


def configure(w3, book: dict, plugins, changes: Sequence[ParameterChange]) -> None:
    """Every change made on ``w3`` (anvil) by its protocol's tuning, market by market of ``book``."""
    from eth_utils import to_checksum_address

    from analyzer.books import deployments_for
    from analyzer.chain import require_anvil

    require_anvil(w3)
    markets = deployments_for(plugins, w3.eth.chain_id, book)
    for protocol in sorted({c.protocol for c in changes}):
        mine = [c for c in changes if c.protocol == protocol]
        for market in sorted({c.market for c in mine}):
            # a market named by an address is that deployment's; one named by an id (Morpho Blue's
            # bytes32 market ids) belongs to the protocol's deployment (its singleton)
            found = [m for m in markets if m.plugin.name == protocol and (len(market) != 42 or (
                m.main_address and m.main_address == to_checksum_address(market)))]
            if not found or found[0].plugin.tuning is None:
                raise ContagionError(f"recommend --prove: {protocol} market {market} is not in the address book "
                                     "or has no parameter tuning")
            found[0].plugin.tuning().configure(w3, found[0].deployment, [c for c in mine if c.market == market])


@contextlib.contextmanager
def chain_copy(rpc_url: str) -> Iterator[Any]:
    """A running anvil to change, as of the head of ``rpc_url``: a copy of its state when the
    source is anvil itself (a devnet), else a fork pinned at its head block."""
    from analyzer.chain import Anvil, connect, dump_state, is_anvil
    from analyzer.devnet.build import CODE_SIZE_LIMIT
    from analyzer.rpc import RpcClient

    source = connect(rpc_url)
    if is_anvil(source):
        head = source.eth.get_block("latest")
        with tempfile.TemporaryDirectory(prefix="contagion-prove-") as folder:
            state = Path(folder) / "state.json"
            state.write_text(dump_state(source))
            # the copy's clock runs on from the source's head: anvil would stamp its next block with the
            # wall clock, and a devnet state loaded hours after it was built would accrue hours of
            # interest that the snapshot (taken at the head) does not have
            with Anvil(chain_id=source.eth.chain_id, load_state=state, code_size_limit=CODE_SIZE_LIMIT,
                       extra_args=("--timestamp", str(int(head["timestamp"]) + 1))) as node:
                yield node
        return
    with Anvil(fork_url=rpc_url, fork_block=RpcClient(rpc_url).head_block()) as node:
        yield node


def prove(rpc_url: str, book: dict, doc: dict[str, Any], scenarios: Sequence[ShockScenario], plugins, *,
          predicted_usd: dict[str, float] | None = None,
          progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """The proof document (module docstring) of the recommendations ``doc`` on a fork of ``rpc_url``;
    ``predicted_usd``: the engine's bad debt per scenario on the book as it stands on the chain, with
    the changes (default: the document's ``bad_debt_after_usd``; not the same when the search
    stressed the book grown to the caps)."""
    from analyzer.chain import require_anvil
    from analyzer.cheats import mine
    from analyzer.engine import simulate
    from analyzer.engine.settle import settle_scenario
    from analyzer.fidelity import BAD_DEBT_FLOOR_USD, BAD_DEBT_TOLERANCE, compare, engine_scenario
    from analyzer.recommend.evaluate import newly_liquidatable
    from analyzer.replay import replay
    from analyzer.scan import scan

    changes = [ParameterChange(**c) for c in doc["changes"]]
    with chain_copy(rpc_url) as fork:
        require_anvil(fork.w3)
        block = fork.w3.eth.block_number
        progress(f"prove: {len(changes)} changes on a fork at block {block}")
        before = scan(fork.url, plugins, book=book, cache_dir=None)
        alone = _each_alone(fork, book, plugins, doc, before, progress)
        configure(fork.w3, book, plugins, changes)
        mine(fork.w3)
        after = scan(fork.url, plugins, book=book, cache_dir=None)
        now = newly_liquidatable(before, after)
        parameters = parameters_on_fork(before, after, changes)
        configured = fork.snapshot()
        rows = []
        for scenario in scenarios:
            fork.revert(configured)
            configured = fork.snapshot()        # a reverted snapshot id is spent
            def say(message: str, name: str = scenario.name) -> None:
                progress(f"prove {name}: {message}")

            settled = replay(fork.url, book, settle_scenario(scenario), plugins, in_place=True, progress=say)
            stress = replay(fork.url, book, scenario, plugins, in_place=True, progress=say)
            engine = simulate(stress.snapshot_before, engine_scenario(scenario, stress))
            liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
            fidelity = compare(engine.to_json(), {p: set(g["account"]) for p, g in liquidated.groupby("protocol")},
                               stress.to_json())
            replayed = float(sum(stress.bad_debt_usd.values()))
            predicted = float((predicted_usd or doc["bad_debt_after_usd"]).get(scenario.name, float("nan")))
            gap = abs(replayed - predicted)
            allowance = max(BAD_DEBT_TOLERANCE * replayed, BAD_DEBT_FLOOR_USD)    # the fidelity criteria's
            rows.append({
                "scenario": scenario.name, "replayed": True, "budget_usd": doc["budget_usd"],
                "replayed_bad_debt_usd": replayed, "within_budget": replayed <= doc["budget_usd"],
                "within_budget_to_model_error": replayed <= doc["budget_usd"] + allowance,
                "predicted_bad_debt_usd": predicted, "bad_debt_gap_usd": gap,
                "prediction_ok": gap <= max(BAD_DEBT_TOLERANCE * max(replayed, predicted), BAD_DEBT_FLOOR_USD),
                "settle_liquidations": sum(len(r.liquidations) for r in settled.rounds),
                "settle_liquidated_usd": float(sum(settled.liquidated_usd.values())),
                "stress_liquidated_usd": float(sum(stress.liquidated_usd.values())),
                "stress_fixed_point": stress.reached_fixed_point, "fidelity": fidelity})
    return {"block": block, "changes": doc["changes"], "liquidatable_now_fork": now,
            "liquidatable_now_predicted": doc["liquidatable_now"],
            "liquidatable_now_ok": now["accounts"] == doc["liquidatable_now"]["accounts"]
            and _same_usd(now["debt_usd"], doc["liquidatable_now"]["debt_usd"]),
            "recommendations_alone": alone, "parameters_on_fork": parameters,
            "parameters_on_fork_ok": all(p["ok"] for p in parameters), "scenarios": rows}


CHECKED_COLUMNS = ("ltv", "liquidation_threshold", "liquidation_bonus", "supply_cap", "borrow_cap")


def parameters_on_fork(before, after, changes: Sequence[ParameterChange]) -> list[dict[str, Any]]:
    """Per market row the ``changes`` touch and per field they move (the market columns of
    :data:`CHECKED_COLUMNS`, and the protocol's raw parameters in ``params``): the value a fresh
    scan of the configured fork reads (``after``) beside the value each protocol's tuning writes
    offline into the scan before the change (``before``), the snapshot the engine evaluated."""
    import json

    from analyzer.recommend.evaluate import tuned

    touched = {(c.protocol, c.market, c.asset) for c in changes}

    def rows(snapshot) -> dict[tuple, dict[str, Any]]:
        mk = snapshot.markets.assign(reserve=snapshot.markets["reserve"].fillna(""))
        return {(r["protocol"], r["market"], r["asset"], r["reserve"]): r for r in mk.to_dict("records")
                if (r["protocol"], r["market"], r["asset"]) in touched}

    was, want, got = rows(before), rows(tuned(before, changes)), rows(after)
    out = []
    for key in sorted(want):
        old, new, read = was.get(key, {}), want[key], got.get(key)
        fields = {c: (new[c], read[c] if read else None) for c in CHECKED_COLUMNS if not _equal(new[c], old.get(c))}
        params = [json.loads(r.get("params") or "{}") if r else {} for r in (old, new, read)]
        fields |= {f"params.{k}": (v, params[2].get(k)) for k, v in params[1].items() if params[0].get(k) != v}
        for field, (predicted, fork) in sorted(fields.items()):
            out.append({"protocol": key[0], "market": key[1], "asset": key[2], "reserve": key[3], "field": field,
                        "predicted": predicted, "fork": fork, "ok": fork is not None and _equal(predicted, fork)})
    return out


def _equal(a: Any, b: Any) -> bool:
    """Raw parameters (strings) exactly; numbers to float precision, an absent cap (NaN) equal to itself."""
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return a == b
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _same_usd(fork_usd: float, predicted_usd: float) -> bool:
    """Debt USD of the same accounts at the same oracle prices: equal but for the interest the
    fork's few mined blocks accrue."""
    return abs(fork_usd - predicted_usd) <= max(LIQUIDATABLE_USD_TOLERANCE * max(fork_usd, predicted_usd), 1.0)


def _each_alone(fork, book: dict, plugins, doc: dict[str, Any], before, progress: Callable[[str], None]
                ) -> list[dict[str, Any]]:
    """Per recommendation of ``doc``, its change alone made on ``fork`` and the fork scanned again:
    the accounts it makes liquidatable there (count, debt USD) beside the trade-off figures the
    recommendation reports (``liquidatable_now_*``); the fork is left as it was."""
    from analyzer.cheats import mine
    from analyzer.recommend.evaluate import newly_liquidatable
    from analyzer.scan import scan

    out = []
    for rec in doc.get("recommendations") or []:
        change = ParameterChange(rec["protocol"], rec["market"], rec["asset"], rec["parameter"], rec["new_value"])
        progress(f"prove: {rec['protocol']} {rec['symbol']} {rec['parameter']} -> {rec['new_value']:g} alone")
        pristine = fork.snapshot()
        configure(fork.w3, book, plugins, [change])
        mine(fork.w3)
        found = newly_liquidatable(before, scan(fork.url, plugins, book=book, cache_dir=None))
        fork.revert(pristine)
        accounts, usd = len(found["accounts"]), found["debt_usd"]
        out.append({**vars(change), "liquidatable_now_accounts_fork": accounts, "liquidatable_now_usd_fork": usd,
                    "liquidatable_now_accounts": rec["liquidatable_now_accounts"],
                    "liquidatable_now_usd": rec["liquidatable_now_usd"],
                    "ok": accounts == rec["liquidatable_now_accounts"] and _same_usd(usd, rec["liquidatable_now_usd"])})
    return out


__all__ = ["configure", "prove", "read_recommendations"]
