"""Losses through vaults: which vaults a market's loss reaches, and who holds their shares.

From ``exposure.json``'s ``loss_reach`` (:func:`analyzer.graph.metrics.loss_reach`) when the run
has one, else computed from the snapshot's graph. One row per (market, vault).
"""

from __future__ import annotations

from typing import Any

from analyzer.errors import ContagionError


def vault_reach_view(snapshot, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    found = (metrics or {}).get("loss_reach")
    if found is None:
        if snapshot is None:
            return []
        from analyzer.graph import build_graph
        from analyzer.graph.metrics import loss_reach

        found = loss_reach(build_graph(snapshot, fold_below_usd=None))
    if not isinstance(found, list) or not all(isinstance(m, dict) and isinstance(m.get("vaults"), list) for m in found):
        raise ContagionError("exposure.json: loss_reach must be a list of markets with a list of vaults")
    rows = []
    for market in found:
        for vault in market["vaults"]:
            consumers = vault.get("consumers") or []
            rows.append({"market": str(market.get("label") or str(market["market"]).split(":", 2)[-1]),
                         "protocol": market.get("protocol", ""),
                         "vault": vault.get("symbol") or vault.get("address", ""), "vault_usd": float(vault["usd"]),
                         "consumer_markets": len(consumers),
                         "consumer_usd": float(sum(float(c.get("usd", 0.0)) for c in consumers)),
                         "holders": len(vault.get("holders") or [])})
    return rows
