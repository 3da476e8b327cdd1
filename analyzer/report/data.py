"""The numbers of the report, computed once: every table, figure, summary line and the embedded
``report-data`` JSON block are rendered from the dict that :func:`report_data` returns, so they
cannot disagree with each other or with ``cascade.json`` (which they copy, never recompute).
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.report.inputs import RunInputs
from analyzer.report.options import feedback_view, gamma_map_view
from analyzer.report.vaults import vault_reach_view

TOP_ACCOUNTS = 20
MAX_PRICE_COLUMNS = 4
MIN_CAUSE_SHARE = 0.0005  # causes under 0.05% of a liquidation are noise in a table


def tool_version() -> str:
    try:
        return metadata.version("defi-contagion")
    except metadata.PackageNotFoundError:
        return "unknown"


def _totals(cascade: dict) -> dict[str, float]:
    rows = cascade["protocols"].values()
    return {key: float(sum(r[key] for r in rows))
            for key in ("liquidated_usd", "bad_debt_usd", "receipt_writedown_usd", "unrealised_supplier_loss_usd")}


def scenario_rows(inputs: RunInputs) -> list[dict[str, Any]]:
    return [{"name": name, "headline": name == inputs.headline, "shocks": c["shocks"], "iv_shocks": c["iv_shocks"],
             "forced_sales": c["forced_sales"],
             **_totals(c), "rounds": len(c["rounds"]), "converged": c["converged"], "stop_reason": c["stop_reason"]}
            for name, c in inputs.scenarios.items()]


def _nonzero(values) -> bool:
    return any(v for v in values if v == v)  # NaN (v != v) is "unknown", not activity


def timeline(cascade: dict) -> dict[str, Any]:
    """Liquidations per round and protocol (count, USD) and prices after each round, from
    ``rounds``. Protocols that liquidated nothing in any round and assets whose price never moved
    are left out (``quiet_protocols``, ``steady_assets`` name them) so the table stays readable."""
    rounds = cascade["rounds"]
    zero = {"count": 0, "usd": 0.0}
    every = sorted({p for r in rounds for p in r["liquidations"]} | set(cascade["protocols"]))
    usd = {p: [r["liquidations"].get(p, zero)["usd"] for r in rounds] for p in every}
    count = {p: [r["liquidations"].get(p, zero)["count"] for r in rounds] for p in every}
    protocols = [p for p in every if _nonzero(usd[p]) or _nonzero(count[p])]
    before = cascade["price_before"]
    prices = {a: [r["prices"].get(a) for r in rounds] for a in sorted({a for r in rounds for a in r["prices"]})}
    moving = [a for a, ps in prices.items() if len({before.get(a)} | set(ps)) > 1]
    # the shocked assets, then the largest other moves: a table of every receipt token is unreadable
    final_move = {a: abs((prices[a][-1] or 0.0) / before[a] - 1.0) if before.get(a) else 0.0 for a in moving}
    shocked = [a for a in moving if a in cascade["shocks"]]
    others = sorted((a for a in moving if a not in cascade["shocks"]), key=lambda a: (-final_move[a], a))
    moving = shocked + others[:MAX_PRICE_COLUMNS - len(shocked)]
    return {"rounds": [r["round"] for r in rounds], "protocols": protocols,
            "quiet_protocols": [p for p in every if p not in protocols], "assets": moving,
            "steady_assets": [a for a in prices if a not in moving and len({before.get(a)} | set(prices[a])) == 1],
            "other_moving_assets": [a for a in prices if a not in moving
                                    and len({before.get(a)} | set(prices[a])) > 1],
            "usd": {p: usd[p] for p in protocols}, "count": {p: count[p] for p in protocols},
            "prices": {a: prices[a] for a in moving}, "price_before": {a: before.get(a) for a in moving},
            "iv": {a: [r["iv"].get(a) for r in rounds] for a in sorted({a for r in rounds for a in r["iv"]})}}


def contagion_view(matrix: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contagion matrix without its all-zero rows (sources that caused nothing) and columns
    (protocols that lost nothing); ``quiet_sources`` / ``quiet_targets`` name what was left out."""
    if not matrix:
        return None
    usd = matrix["usd"]
    rows = [i for i, row in enumerate(usd) if _nonzero(row)]
    cols = [j for j in range(len(matrix["targets"])) if _nonzero([row[j] for row in usd])]
    return {"sources": [matrix["sources"][i] for i in rows], "targets": [matrix["targets"][j] for j in cols],
            "usd": [[usd[i][j] for j in cols] for i in rows],
            "quiet_sources": [s for i, s in enumerate(matrix["sources"]) if i not in rows],
            "quiet_targets": [t for j, t in enumerate(matrix["targets"]) if j not in cols]}


def liquidation_curves(inputs: RunInputs) -> dict[str, Any]:
    """Liquidated USD per protocol against one asset's drop: static and cascaded.

    ``cascaded``: every scenario that shocks exactly one asset gives a point (its liquidated USD,
    debt repaid, per protocol); ``first_round``: the first round of the same scenarios, what the
    shock alone liquidates before any feedback (the same unit). ``static``: when the run has
    ``exposure.json`` (analyzer.graph.curves), its static curves over its own grid of drops
    (``static_drops``): collateral seizable in the first keeper step, per protocol's own rule.
    """
    curves: dict[str, dict[str, Any]] = {}

    def blank() -> dict[str, Any]:
        return {"drops": [], "cascaded": {}, "first_round": {}, "static_drops": [], "static": {}}

    for cascade in inputs.scenarios.values():
        if len(cascade["shocks"]) != 1 or not cascade["rounds"] or cascade["iv_shocks"] or cascade["forced_sales"]:
            continue
        (asset, shock), = cascade["shocks"].items()
        curve = curves.setdefault(asset, blank())
        curve["drops"].append(-shock)
        first = cascade["rounds"][0]["liquidations"]
        for proto, row in cascade["protocols"].items():
            curve["cascaded"].setdefault(proto, []).append(row["liquidated_usd"])
            curve["first_round"].setdefault(proto, []).append(first.get(proto, {"usd": 0.0})["usd"])
    for curve in curves.values():
        order = np.argsort(curve["drops"], kind="stable")
        curve["drops"] = [curve["drops"][i] for i in order]
        active = {p for p, v in curve["cascaded"].items() if _nonzero(v)}
        for key in ("cascaded", "first_round"):
            curve[key] = {p: [v[i] for i in order] for p, v in curve[key].items()
                          if len(v) == len(order) and p in active}
    static = (inputs.metrics or {}).get("liquidation_curves")
    if static is not None:
        if not isinstance(static, dict) or not isinstance(static.get("drops"), list) \
                or not isinstance(static.get("curves"), list):
            raise ContagionError("exposure.json: liquidation_curves needs lists drops and curves")
        for i, spec in enumerate(static["curves"]):
            values = spec.get("seizable_usd") if isinstance(spec, dict) else None
            if not isinstance(values, list) or len(values) != len(static["drops"]):
                raise ContagionError(f"exposure.json: liquidation_curves.curves[{i}].seizable_usd must be a list "
                                     f"as long as drops ({len(static['drops'])})")
            curve = curves.setdefault(str(spec.get("symbol") or spec.get("asset")), blank())
            curve["static_drops"] = [float(d) for d in static["drops"]]
            if _nonzero(v for v in values if v is not None):
                curve["static"][str(spec["protocol"])] = [math.nan if v is None else float(v) for v in values]
    return {asset: curve for asset, curve in curves.items() if curve["static"] or curve["cascaded"]}


def gamma_by_strike(inputs: RunInputs) -> list[dict[str, Any]]:
    """Per option market and strike: the users' net gamma and the pool's (its negative), summed
    over the market's boards (expiries), as the option plugin's reader records it in the market's
    ``params`` JSON (``strikes: [{"strike", "expiry", "net_gamma", "call_exposure", "put_exposure"}]``,
    gamma in base units per 1 USD of spot; protocols/lyra_v1/rules.py ``gamma_by_strike``). A
    negative pool gamma is a short-gamma cluster: the pool's hedger sells into a fall there."""
    snap = inputs.snapshot
    if snap is None:
        return []
    symbols = snap.symbol_of()
    out = []
    for row in snap.markets.itertuples(index=False):
        if not row.params:
            continue
        try:
            params = json.loads(row.params)
        except json.JSONDecodeError as exc:
            raise ContagionError(f"snapshot markets: params of {row.protocol} {row.market} is not JSON ({exc})") from None
        strikes = params.get("strikes") if isinstance(params, dict) else None
        if not isinstance(strikes, list) or not strikes or not all(isinstance(k, dict) for k in strikes):
            continue
        for i, k in enumerate(strikes):
            for key in ("strike", "net_gamma"):
                if isinstance(k.get(key), bool) or not isinstance(k.get(key), int | float):
                    raise ContagionError(f"snapshot markets: params.strikes[{i}].{key} of {row.protocol} "
                                         f"{row.market} must be a number")
        frame = pd.DataFrame({"strike": [float(k["strike"]) for k in strikes],
                              "user_gamma": [float(k["net_gamma"]) for k in strikes],
                              "exposure": [float(k.get("call_exposure", 0.0)) + float(k.get("put_exposure", 0.0))
                                           for k in strikes]})
        per = frame.groupby("strike", sort=True).sum()
        out.append({"protocol": row.protocol, "market": row.market, "underlying": symbols.get(row.asset, row.asset),
                    "spot_usd": params.get("spot"), "strikes": per.index.tolist(),
                    "user_gamma": per["user_gamma"].tolist(), "pool_gamma": (-per["user_gamma"]).tolist(),
                    "exposure": per["exposure"].tolist()})
    return out


def _health_factors(inputs: RunInputs) -> dict[tuple[str, str], float]:
    """Health factor per (protocol, account) from each protocol plugin's own rule (via analyzer.graph)."""
    snap = inputs.snapshot
    if snap is None or snap.positions.empty:
        return {}
    from analyzer.graph.curves import protocol_rules, rule_health

    rules, _ = protocol_rules(sorted(set(snap.positions["protocol"])))
    return rule_health(snap, rules)


def account_positions(inputs: RunInputs) -> pd.DataFrame:
    """Snapshot positions with symbol and USD value (empty without a snapshot)."""
    snap = inputs.snapshot
    if snap is None:
        return pd.DataFrame(columns=["protocol", "account", "asset", "symbol", "side", "amount", "usd"])
    pos = snap.positions.copy()
    pos["symbol"] = pos["asset"].map(snap.symbol_of())
    pos["usd"] = pos["amount"] * pos["asset"].map(snap.price_of()).astype(float)
    return pos


def top_accounts(inputs: RunInputs) -> list[dict[str, Any]]:
    """Accounts most at risk: liquidated in the headline scenario first (largest liquidated USD),
    then by lowest health factor; each with the scenarios that liquidate it."""
    liquidated_in: dict[tuple[str, str], list[str]] = {}
    for name, cascade in inputs.scenarios.items():
        for acc in cascade["accounts"]:
            if acc["liquidated_usd"] > 0:
                liquidated_in.setdefault((acc["protocol"], acc["account"]), []).append(name)
    outcome = {(a["protocol"], a["account"]): a for a in inputs.cascade["accounts"]}
    pos = account_positions(inputs)
    sums = pos.pivot_table(index=["protocol", "account"], columns="side", values="usd", aggfunc="sum", fill_value=0.0)
    hf = _health_factors(inputs)
    keys = set(outcome) | set(liquidated_in) | set(sums.index)
    rows = []
    for key in keys:
        acc = outcome.get(key, {})
        rows.append({"protocol": key[0], "account": key[1],
                     "collateral_usd": float(sums["collateral"].get(key, 0.0)) if "collateral" in sums else 0.0,
                     "debt_usd": float(sums["debt"].get(key, 0.0)) if "debt" in sums else 0.0,
                     "health_factor": hf.get(key), "liquidated_usd": acc.get("liquidated_usd", 0.0),
                     "bad_debt_usd": acc.get("bad_debt_usd", 0.0), "first_round": acc.get("first_round"),
                     "causes": dict(sorted(((c, v) for c, v in acc.get("causes", {}).items() if v >= MIN_CAUSE_SHARE),
                                           key=lambda item: -float(item[1]))),
                     "liquidated_in": liquidated_in.get(key, [])})
    rows = [r for r in rows if r["debt_usd"] > 0 or r["liquidated_usd"] > 0]
    rows.sort(key=lambda r: (-r["liquidated_usd"], -len(r["liquidated_in"]),
                             r["health_factor"] if r["health_factor"] is not None else math.inf, r["account"]))
    return rows[:TOP_ACCOUNTS]


def fidelity_rows(fidelity: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Engine against replay per protocol and asset, from analyzer.fidelity's ``fidelity.json``
    (schema ``defi-contagion/fidelity`` 1): liquidated USD, bad debt USD and accounts liquidated
    per protocol, final price per asset, each with the gap (replay − engine), the relative gap
    (over the larger of the two, as analyzer.fidelity measures it) and whether it is within the published tolerance (``ok``)."""
    if fidelity is None:
        return []
    if fidelity.get("schema") != "defi-contagion/fidelity" or fidelity.get("schema_version") != 1:
        raise ContagionError(f"fidelity.json: schema {fidelity.get('schema')!r} version "
                             f"{fidelity.get('schema_version')!r} (this report reads defi-contagion/fidelity 1)")
    pairs: list[tuple[str, Any, Any, Any]] = []
    for proto, row in sorted((fidelity.get("protocols") or {}).items()):
        if not isinstance(row, dict):
            raise ContagionError(f"fidelity.json: protocols.{proto} must be an object")
        pairs += [(f"{proto} liquidated USD", row.get("engine_liquidated_usd"), row.get("replay_liquidated_usd"),
                   row.get("value_ok")),
                  (f"{proto} bad debt USD", row.get("engine_bad_debt_usd"), row.get("replay_bad_debt_usd"),
                   row.get("bad_debt_ok")),
                  (f"{proto} accounts liquidated", row.get("engine_accounts"), row.get("replay_accounts"),
                   row.get("accounts_ok"))]
    for symbol, row in sorted((fidelity.get("final_prices") or {}).items()):
        if not isinstance(row, dict):
            raise ContagionError(f"fidelity.json: final_prices.{symbol} must be an object")
        pairs.append((f"{symbol} final price", row.get("engine_usd"), row.get("replay_usd"), row.get("ok")))
    rows = []
    for metric, engine, replay, ok in pairs:
        for name, value in (("engine", engine), ("replay", replay)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ContagionError(f"fidelity.json: {metric}: {name} value must be a number, got {value!r}")
        gap = float(replay) - float(engine)
        larger = max(abs(float(engine)), abs(float(replay)))  # analyzer.fidelity's relative error scale
        rows.append({"metric": metric, "engine": float(engine), "replay": float(replay), "gap": gap,
                     "relative_gap": gap / larger if larger else None, "ok": ok})
    return rows


def _top(matrix: list[list[float]]) -> float:
    return max((v for line in matrix for v in line if v == v), default=0.0)


def sweep_view(inputs: RunInputs) -> dict[str, Any] | None:
    """The stress sweep (a sweep's summary.json, analyzer.sweep.results) as report rows: the heat
    maps of cascaded liquidated USD and bad debt USD by asset × shock (``top_*``: their largest
    cell, the colour scale), the systemic-importance ranking (largest losses caused first), the
    distance to cascade (nearest first; not found last), the Monte Carlo quantiles, and per asset
    the static (no price impact) against the cascaded liquidation curve. ``same_snapshot``: whether
    the sweep ran on this run's snapshot (None without a snapshot to compare)."""
    sweep = inputs.sweep
    if sweep is None:
        return None
    heat = sweep["heatmap"]
    distance = sorted(sweep["distance"], key=lambda d: (not d["found"], -(d["shock"] or 0.0), d["asset"]))
    same = None
    if inputs.snapshot is not None and sweep["snapshot_key"]:
        from analyzer.sweep.run import snapshot_key

        same = snapshot_key(inputs.snapshot) == sweep["snapshot_key"]
    montecarlo = sweep["montecarlo"]
    return {"name": sweep["name"], "file": sweep["file"], "scenarios": sweep["scenarios"],
            "protocols": sweep["protocols"], "snapshot_key": sweep["snapshot_key"], "same_snapshot": same,
            "heatmap": {**heat, "top_liquidated_usd": _top(heat["liquidated_usd"]),
                        "top_bad_debt_usd": _top(heat["bad_debt_usd"])},
            "ranking": sorted(sweep["systemic"], key=lambda r: r["rank"]),
            "distance": [{**d, "safe": d["bracket"][0], "failing": d["bracket"][1]} for d in distance],
            "montecarlo": None if montecarlo is None else
            {"paths": montecarlo["paths"],
             "rows": [{"metric": label, "key": key, **montecarlo[key]}
                      for key, label in (("liquidated_usd", "liquidated"), ("bad_debt_usd", "bad debt"))]},
            "curves": [c for c in sweep["curves"] if c["shocks"]]}


def provenance(inputs: RunInputs) -> dict[str, Any]:
    meta = inputs.snapshot.meta if inputs.snapshot is not None else inputs.cascade["snapshot"]
    return {"chain_id": meta.get("chain_id"), "block_number": meta.get("block_number"),
            "block_timestamp": meta.get("block_timestamp", meta.get("timestamp")),
            "rpc": meta.get("rpc", meta.get("rpc_host")), "protocols": meta.get("protocols", {}),
            "snapshot_tool_version": meta.get("tool_version"), "report_tool_version": tool_version(),
            "headline": inputs.headline, "scenario": {"shocks": inputs.cascade["shocks"],
                                                       "iv_shocks": inputs.cascade["iv_shocks"]},
            "cascade_file": inputs.cascade["file"], "run_dir": str(inputs.run_dir),
            "assumed_depth": meta.get("assumed_depth") or {}, "depth_by_asset": depth_by_asset(inputs)}


def depth_by_asset(inputs: RunInputs) -> dict[str, str]:
    """Which depth each asset of the snapshot trades on: its venues' protocols and pool counts
    (e.g. "uniswap-v3 ×2, centralised-depth"), by symbol; empty without the snapshot."""
    if inputs.snapshot is None or inputs.snapshot.venues.empty:
        return {}
    from analyzer.engine.centralised import PARAMETER_FILE, PROTOCOL, load_parameters

    symbols = inputs.snapshot.symbol_of()
    counts = inputs.snapshot.venues.groupby(["asset", "protocol"]).size()
    out: dict[str, list[str]] = {}
    for (asset, protocol), n in counts.items():
        out.setdefault(symbols.get(asset, asset), []).append(f"{protocol} ×{n}" if n > 1 else str(protocol))
    if (inputs.cascade.get("scenario") or {}).get("cex_arbitrage"):
        # the engine put a CEX beside every asset's pools and arbitraged them to it each round
        listed = load_parameters()[0]
        for symbol, parts in out.items():
            if parts != [PROTOCOL]:
                entry = symbol if symbol in listed else "the generic default"
                parts.append(f"CEX arbitrage ({PARAMETER_FILE.name}: {entry})")
    return {symbol: ", ".join(parts) for symbol, parts in sorted(out.items())}


def report_data(inputs: RunInputs) -> dict[str, Any]:
    """The whole report as plain JSON-able data (see the module docstring)."""
    cascade = inputs.cascade
    return {"title": inputs.title, "headline": inputs.headline, "scenarios": scenario_rows(inputs),
            "protocols": [{"protocol": p, **row} for p, row in sorted(cascade["protocols"].items())],
            "totals": _totals(cascade), "converged": cascade["converged"], "stop_reason": cascade["stop_reason"],
            "divergence": cascade["divergence"],
            "timeline": timeline(cascade), "amplification": cascade["amplification"],
            "matrix": cascade["matrix"], "matrix_view": contagion_view(cascade["matrix"]),
            "curves": liquidation_curves(inputs), "gamma": gamma_by_strike(inputs),
            "accounts": top_accounts(inputs), "fidelity": inputs.fidelity,
            "fidelity_rows": fidelity_rows(inputs.fidelity), "sweep": sweep_view(inputs),
            "provenance": provenance(inputs), "gamma_map": gamma_map_view(inputs.snapshot),
            "feedback": feedback_view(inputs.snapshot, inputs.metrics),
            "vault_reach": vault_reach_view(inputs.snapshot, inputs.metrics)}
