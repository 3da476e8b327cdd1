"""The cross-protocol collateral graph, its exposure metrics and its exports.

Library entry points (the ``contagion graph SNAPSHOT`` command is :func:`graph_to_dir`):

- :func:`build_graph` (snapshot → networkx MultiDiGraph; node and edge kinds, and how small accounts
  fold, in :mod:`analyzer.graph.build`)
- :func:`exposure_metrics` (snapshot, graph → JSON-ready dict; :mod:`analyzer.graph.metrics`,
  :mod:`analyzer.graph.curves`)
- :func:`write_graph_outputs` (GraphML, GEXF, node-link JSON, Parquet; :mod:`analyzer.graph.export`)
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx

from analyzer.atomic import atomic_write_text
from analyzer.graph.build import DEFAULT_MAX_ACCOUNTS, build_graph
from analyzer.graph.curves import DEFAULT_DROPS, liquidation_curves, protocol_rules, rule_health
from analyzer.graph.export import json_safe, write_graph_outputs
from analyzer.graph.feedback import feedback_curves
from analyzer.graph.metrics import (
    collateral_composition,
    graph_summary,
    loss_reach,
    multi_protocol_accounts,
    receipt_chains,
    shared_collateral_overlap,
)
from analyzer.model import Snapshot

EXPOSURE = "exposure.json"

__all__ = ["build_graph", "exposure_metrics", "write_graph_outputs", "graph_to_dir"]


def exposure_metrics(snapshot: Snapshot, graph: nx.MultiDiGraph, drops: tuple[float, ...] = DEFAULT_DROPS,
                     top_accounts: int = 100) -> dict:
    """Every exposure metric of ``snapshot`` (and its ``graph``) as a JSON-serialisable dict (NaN and
    inf as null): ``composition``, ``overlap``, ``receipt_chains``, ``multi_protocol_accounts``,
    ``liquidation_curves``, ``loss_reach`` (where a market's loss reaches vault shares and their holders), ``feedback`` (:mod:`analyzer.graph.feedback`: where the loop ignites), ``graph``. USD at the snapshot's prices."""
    protocols = sorted(set(snapshot.positions["protocol"]) | set(snapshot.options["protocol"]))
    rules, _ = protocol_rules(protocols)
    metrics = {
        "chain_id": snapshot.meta.get("chain_id"),
        "block_number": snapshot.meta.get("block_number"),
        "composition": collateral_composition(snapshot),
        "overlap": shared_collateral_overlap(snapshot),
        "receipt_chains": receipt_chains(snapshot, graph),
        "loss_reach": loss_reach(graph),
        "multi_protocol_accounts": multi_protocol_accounts(snapshot, rule_health(snapshot, rules), top=top_accounts),
        "liquidation_curves": liquidation_curves(snapshot, drops, rules),
        "feedback": feedback_curves(snapshot, rules),
        "graph": graph_summary(graph),
    }
    return json_safe(metrics)


def graph_to_dir(snapshot_dir: str | Path, out_dir: str | Path, fold_below_usd: float | None = None,
                 max_accounts: int = DEFAULT_MAX_ACCOUNTS) -> dict[str, Path]:
    """Read the snapshot at ``snapshot_dir``, build its graph and metrics, write every export and
    ``exposure.json`` into ``out_dir``; return the written paths by name. ``fold_below_usd=None``
    keeps the ``max_accounts`` largest accounts as nodes and folds the rest (see build.py)."""
    from analyzer.atomic import check_output_dir, final_path, staged_folder

    check_output_dir(out_dir)
    snapshot = Snapshot.read(snapshot_dir)
    graph = build_graph(snapshot, fold_below_usd=fold_below_usd, max_accounts=max_accounts)
    metrics = json.dumps(exposure_metrics(snapshot, graph), indent=1, allow_nan=False) + "\n"
    with staged_folder(out_dir) as stage:   # every export or none (a refused graph leaves nothing)
        paths = write_graph_outputs(graph, stage)
        paths["exposure"] = atomic_write_text(stage / EXPOSURE, metrics)
    return {name: final_path(path, stage, Path(out_dir)) for name, path in paths.items()}
