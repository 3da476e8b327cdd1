"""The sweep's results table (one row per scenario) and its JSON summary.

``results.parquet`` columns, sorted by ``scenario_id``:

    scenario_id (int64)  kind (baseline | grid | static | joint | montecarlo | systemic_asset |
    systemic_protocol | systemic_account)  label  assets (comma-joined symbols)  shock (grid size,
    NaN when not a grid point)  price_shocks (JSON {symbol: relative move})  forced_sales (JSON
    [[account, protocol]])  failed_protocol  price_impact (bool)
    liquidated_usd  bad_debt_usd  liquidations (int64)   totals over protocols, oracle USD
    amplification       mean over shocked assets of final move / initial shock (NaN: none shocked)
    worst_move          the most negative final relative price move over all assets
    rounds (int64)  stop_reason (fixed_point | round_limit)  diverging (bool)
    liquidated_usd:<protocol>  bad_debt_usd:<protocol>   one pair per protocol of the snapshot

``summary.json`` (schema ``defi-contagion/sweep-summary`` v1, sorted keys, no timestamps)::

    name, snapshot_key, spec_key, scenarios, protocols
    heatmap      assets[], shocks[], liquidated_usd[asset][shock], bad_debt_usd[asset][shock],
                 static_liquidated_usd[asset][shock] (null when the static pass was not run)
    curves[]     asset, shocks[], cascaded_liquidated_usd[], static_liquidated_usd[]
    systemic[]   rank, kind (asset | protocol | account), name, losses_usd, liquidated_usd,
                 bad_debt_usd, scenario_id
    distance[]   asset, shock (smallest fall causing bad debt, or null), bracket, bad_debt_usd,
                 evaluations, found
    montecarlo   paths, mean/p50/p95/p99 of liquidated_usd and bad_debt_usd (null without paths)
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

SUMMARY_SCHEMA = "defi-contagion/sweep-summary"
RESULTS_VERSION = 1
PARAM_COLUMNS = ["scenario_id", "kind", "label", "assets", "shock", "price_shocks", "forced_sales",
                 "failed_protocol", "price_impact"]
TOTAL_COLUMNS = ["liquidated_usd", "bad_debt_usd", "liquidations", "amplification", "worst_move", "rounds",
                 "stop_reason", "diverging"]


def result_row(row: dict, result, protocols: list[str]) -> dict:
    """One results row from an expanded scenario ``row`` and its :class:`CascadeResult`."""
    liquidated, bad = result.liquidated_usd, result.bad_debt_usd
    amplification = list(result.amplification().values())
    before, final = result.price_before, result.price_final
    moves = np.divide(final, before, out=np.ones_like(final), where=before > 0) - 1.0
    out = {"scenario_id": int(row["scenario_id"]), "kind": row["kind"], "label": row["label"], "assets": row["assets"],
           "shock": float(row["shock"]), "price_shocks": json.dumps(row["price_shocks"], sort_keys=True),
           "forced_sales": json.dumps(row["forced_sales"]), "failed_protocol": row["failed_protocol"],
           "price_impact": bool(row["price_impact"]),
           "liquidated_usd": float(sum(liquidated.values())), "bad_debt_usd": float(sum(bad.values())),
           "liquidations": int(sum(result.liquidations.values())),
           "amplification": float(np.mean(amplification)) if amplification else math.nan,
           "worst_move": float(moves.min()) if len(moves) else 0.0, "rounds": len(result.rounds),
           "stop_reason": result.stop_reason, "diverging": bool(result.diverging)}
    for p in protocols:
        out[f"liquidated_usd:{p}"] = float(liquidated.get(p, 0.0))
        out[f"bad_debt_usd:{p}"] = float(bad.get(p, 0.0))
    return out


def results_frame(rows: list[dict], protocols: list[str]) -> pd.DataFrame:
    """Rows as the typed, column-ordered table (see the module docstring)."""
    columns = PARAM_COLUMNS + TOTAL_COLUMNS + [f"{m}:{p}" for p in protocols for m in ("liquidated_usd", "bad_debt_usd")]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("scenario_id", "liquidations", "rounds"):
        frame[col] = frame[col].astype("int64")
    for col in ("price_impact", "diverging"):
        frame[col] = frame[col].astype(bool)
    return frame.sort_values("scenario_id", kind="stable").reset_index(drop=True)


def _num(value):
    value = float(value)
    return value if math.isfinite(value) else None


def heatmap(results: pd.DataFrame) -> dict:
    """Losses by asset × shock size from the grid (cascaded) and static rows."""
    grid = results[results["kind"] == "grid"]
    assets = list(dict.fromkeys(grid["assets"]))
    shocks = sorted(set(grid["shock"].tolist()), reverse=True)

    def matrix(kind: str, column: str):
        rows = results[results["kind"] == kind]
        if rows.empty:
            return None
        table = rows.pivot_table(index="assets", columns="shock", values=column, aggfunc="first")
        table = table.reindex(index=assets, columns=shocks)
        return [[_num(v) for v in line] for line in table.to_numpy(float)]

    return {"assets": assets, "shocks": shocks, "liquidated_usd": matrix("grid", "liquidated_usd") or [],
            "bad_debt_usd": matrix("grid", "bad_debt_usd") or [],
            "static_liquidated_usd": matrix("static", "liquidated_usd")}


def curves(heat: dict) -> list[dict]:
    """Liquidation curves per asset: cascaded vs static liquidated USD along the shock sizes."""
    static = heat["static_liquidated_usd"]
    return [{"asset": a, "shocks": heat["shocks"], "cascaded_liquidated_usd": heat["liquidated_usd"][i],
             "static_liquidated_usd": static[i] if static else None} for i, a in enumerate(heat["assets"])]


def montecarlo_stats(results: pd.DataFrame) -> dict | None:
    paths = results[results["kind"] == "montecarlo"]
    if paths.empty:
        return None
    out: dict[str, Any] = {"paths": len(paths)}
    for col in ("liquidated_usd", "bad_debt_usd"):
        values = paths[col].to_numpy(float)
        out[col] = {"mean": _num(values.mean()), "p50": _num(np.quantile(values, 0.5)),
                    "p95": _num(np.quantile(values, 0.95)), "p99": _num(np.quantile(values, 0.99))}
    return out


def summary(results: pd.DataFrame, distance: list[dict], *, name: str, snapshot_key: str, spec_key: str,
            protocols: list[str]) -> dict:
    from analyzer.sweep.systemic import ranking

    heat = heatmap(results)
    clean = [{k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()} for d in distance]
    return {"schema": SUMMARY_SCHEMA, "schema_version": RESULTS_VERSION, "name": name, "snapshot_key": snapshot_key,
            "spec_key": spec_key, "scenarios": len(results), "protocols": protocols, "heatmap": heat,
            "curves": curves(heat), "systemic": ranking(results), "distance": clean,
            "montecarlo": montecarlo_stats(results)}
