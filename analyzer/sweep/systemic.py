"""Systemic importance (the DebtRank idea on our cascade) and the distance to cascade.

DebtRank (Battiston et al., "DebtRank: Too Central to Fail?", Sci. Rep. 2, 541, 2012) ranks a node
by the losses its distress causes in the rest of the network, net of its own. Our network is the
cascade engine: a node is an asset (shocked alone by ``[systemic] shock``) or a protocol (its
``accounts`` largest borrowers, by debt USD at snapshot prices, fail together: the engine's
``forced_sales`` close their positions at round 0 and dump their collateral). The closed accounts
are not liquidated by the engine, so every liquidation and all bad debt that follows is a loss
caused elsewhere. Losses are measured above the baseline (the snapshot with no shock), in USD:
``losses_usd = (liquidated_usd + bad_debt_usd) − baseline``.

Distance to cascade: for each asset, the smallest fall that leaves bad debt above the baseline
(more than ``min_bad_debt_usd``), by bisection on the engine between 0 and ``max_shock``. Bisection
assumes bad debt grows with the fall; a non-monotone response makes the figure an upper bound of
the smallest such fall within the final bracket.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.scenarios import parse_relative


def largest_borrowers(snapshot, count: int) -> pd.DataFrame:
    """The ``count`` largest borrowers of each protocol: columns protocol, account, debt_usd
    (Σ debt amount × snapshot price_usd), largest first, ties broken by account."""
    positions = snapshot.positions
    debt = positions[positions["side"] == "debt"]
    price = debt["asset"].map(snapshot.price_of()).fillna(0.0).to_numpy(float)
    frame = pd.DataFrame({"protocol": debt["protocol"].to_numpy(), "account": debt["account"].to_numpy(),
                          "debt_usd": debt["amount"].to_numpy(float) * price})
    totals = frame.groupby(["protocol", "account"], as_index=False)["debt_usd"].sum()
    totals = totals.sort_values(["protocol", "debt_usd", "account"], ascending=[True, False, True])
    return totals.groupby("protocol", sort=True).head(count).reset_index(drop=True)


def systemic_rows(config: dict[str, Any], snapshot, assets: list[str], where: str, make_row) -> list[dict]:
    """The systemic-importance scenarios: each asset alone, each protocol's largest borrowers together,
    and (``each_account = true``) each of those borrowers alone."""
    unknown = set(config) - {"shock", "accounts", "each_account"}
    if unknown:
        raise ContagionError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    shock = parse_relative(config.get("shock", "-30%"), f"{where}: shock")
    if not -1.0 < shock < 0.0:
        raise ContagionError(f"{where}: shock must be a fall within (-100%, 0%), got {shock:+.2%}")
    count = config.get("accounts", 10)
    if not isinstance(count, int) or count < 0:
        raise ContagionError(f"{where}: accounts must be a non-negative integer, got {count!r}")
    rows = [make_row("systemic_asset", asset, {asset: shock}, assets=asset, shock=shock) for asset in assets]
    if count == 0:
        return rows
    top = largest_borrowers(snapshot, count)
    for protocol, group in top.groupby("protocol", sort=True):
        sales = [[str(a), str(protocol)] for a in group["account"]]
        rows.append(make_row("systemic_protocol", str(protocol), {}, forced=sales, failed_protocol=str(protocol)))
        if config.get("each_account", False):
            rows += [make_row("systemic_account", f"{protocol}:{sale[0]}", {}, forced=[sale],
                              failed_protocol=str(protocol)) for sale in sales]
    return rows


def ranking(results: pd.DataFrame) -> list[dict[str, Any]]:
    """Systemic rows ranked by losses caused (USD above the baseline), largest first."""
    base = results[results["kind"] == "baseline"]
    base_loss = float((base["liquidated_usd"] + base["bad_debt_usd"]).iloc[0]) if len(base) else 0.0
    rows = results[results["kind"].isin(["systemic_asset", "systemic_protocol", "systemic_account"])]
    rows = rows.assign(losses_usd=rows["liquidated_usd"] + rows["bad_debt_usd"] - base_loss)
    rows = rows.sort_values(["losses_usd", "scenario_id"], ascending=[False, True])
    return [{"rank": i + 1, "kind": str(r.kind).removeprefix("systemic_"), "name": str(r.label),
             "losses_usd": float(r.losses_usd), "liquidated_usd": float(r.liquidated_usd),
             "bad_debt_usd": float(r.bad_debt_usd), "scenario_id": int(r.scenario_id)}
            for i, r in enumerate(rows.itertuples())]


def distance_config(config: dict[str, Any], assets: list[str], where: str) -> dict[str, Any]:
    unknown = set(config) - {"assets", "max_shock", "tolerance", "min_bad_debt_usd"}
    if unknown:
        raise ContagionError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    max_shock = parse_relative(config.get("max_shock", "-99%"), f"{where}: max_shock")
    tolerance = float(config.get("tolerance", 0.005))
    if not -1.0 < max_shock < 0.0 or not 0.0 < tolerance < 1.0:
        raise ContagionError(f"{where}: max_shock must be a fall within (-100%, 0%) and tolerance within (0, 1)")
    return {"assets": list(config.get("assets", assets)), "max_shock": max_shock, "tolerance": tolerance,
            "min_bad_debt_usd": float(config.get("min_bad_debt_usd", 1.0))}


def distance_to_cascade(bad_debt_at, asset: str, config: dict[str, Any]) -> dict[str, Any]:
    """Bisection for the smallest fall of ``asset`` whose bad debt exceeds the baseline.

    ``bad_debt_at(move)`` returns the total bad debt USD after the cascade with ``asset`` moved by
    ``move`` (0 = baseline). Returns asset, shock (negative relative move, or None when even
    ``max_shock`` causes none), bracket [safe, failing], bad_debt_usd at ``shock``, evaluations.
    """
    baseline = bad_debt_at(0.0)
    limit = config["min_bad_debt_usd"]
    safe, failing = 0.0, config["max_shock"]
    worst = bad_debt_at(failing)
    evaluations = 2
    if worst - baseline <= limit:
        return {"asset": asset, "shock": None, "bracket": [safe, failing], "bad_debt_usd": worst - baseline,
                "evaluations": evaluations, "found": False}
    at_failing = worst
    while abs(failing - safe) > config["tolerance"]:
        middle = round((safe + failing) / 2.0, 12)
        value = bad_debt_at(middle)
        evaluations += 1
        if value - baseline > limit:
            failing, at_failing = middle, value
        else:
            safe = middle
    return {"asset": asset, "shock": float(failing), "bracket": [float(safe), float(failing)],
            "bad_debt_usd": float(at_failing - baseline), "evaluations": evaluations, "found": True}


def distance_table(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """The distance-to-cascade entries as a table, nearest to a cascade first (None last)."""
    frame = pd.DataFrame(entries, columns=["asset", "shock", "bracket", "bad_debt_usd", "evaluations", "found"])
    order = np.argsort(np.where(frame["found"], -frame["shock"].astype(float).fillna(0.0), np.inf), kind="stable")
    return frame.iloc[order].reset_index(drop=True)
