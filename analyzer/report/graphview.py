"""The contagion graph as Cytoscape.js elements, with what a click on a node shows.

Source: ``graph.json`` (node-link JSON of analyzer.graph: nodes ``id, kind, label, usd``; edges
``source, target, kind, usd``); without it, analyzer.graph.build_graph on the run's snapshot.

Two views: protocol level (default) hides account nodes (kinds ``account`` and
``folded-accounts``), whose totals the graph already carries on its market → asset edges
(``backed-by``, ``lends``); the account level adds the ``MAX_ACCOUNTS`` largest of them and their
edges.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from analyzer.report.data import account_positions
from analyzer.report.inputs import RunInputs

MAX_ACCOUNTS = 300
ACCOUNT_KINDS = {"account", "folded-accounts"}


def graph_from_snapshot(inputs: RunInputs) -> dict[str, Any]:
    """Node-link JSON built by analyzer.graph from the snapshot, for runs without graph.json."""
    if inputs.snapshot is None:
        return {"nodes": [], "edges": []}
    import networkx as nx

    from analyzer.graph import build_graph, json_safe

    graph = build_graph(inputs.snapshot, fold_below_usd=None, max_accounts=MAX_ACCOUNTS)
    return json_safe(nx.node_link_data(graph, edges="edges"))


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def node_details(inputs: RunInputs, nodes: list[dict]) -> dict[str, dict[str, Any]]:
    """What a click shows: positions (accounts), headline outcome and what liquidated it."""
    cascade = inputs.cascade
    pos = account_positions(inputs)
    by_account = {a: grp for a, grp in pos.groupby("account")} if len(pos) else {}
    outcomes = defaultdict(list)
    for acc in cascade["accounts"]:
        outcomes[acc["account"].lower()].append(acc)
    matrix = cascade["matrix"]
    details = {}
    for node in nodes:
        nid, kind = node["id"], node.get("kind", "")
        info: dict[str, Any] = {}
        if kind == "account":
            address = str(node.get("address") or nid.split(":", 1)[-1])
            grp = by_account.get(address)
            if grp is not None:
                info["positions"] = [{"protocol": r.protocol, "asset": r.symbol, "side": r.side,
                                      "amount": float(r.amount), "usd": float(r.usd)}
                                     for r in grp.sort_values("usd", ascending=False).itertuples()]
            info["outcomes"] = outcomes.get(address.lower(), [])
        elif kind in ("protocol", "market", "option-market"):
            proto = str(node.get("protocol") or nid.split(":")[1])
            info["protocol"] = proto
            info["outcome"] = cascade["protocols"].get(proto)
            if matrix and proto in matrix["targets"]:
                j = matrix["targets"].index(proto)
                info["liquidated_by"] = {s: row[j] for s, row in zip(matrix["sources"], matrix["usd"], strict=True)
                                         if row[j]}
        details[nid] = info
    return details


def cytoscape_elements(inputs: RunInputs) -> dict[str, Any]:
    """``{"protocol": [elements], "accounts": [elements], "details": {node id: {...}}}``."""
    graph = inputs.graph if inputs.graph is not None else graph_from_snapshot(inputs)
    raw_edges = graph.get("edges", graph.get("links", []))
    nodes = {str(n["id"]): {**n, "id": str(n["id"])} for n in graph["nodes"]}

    def is_account(nid: str) -> bool:
        return nodes.get(nid, {}).get("kind") in ACCOUNT_KINDS

    def node_el(n: dict) -> dict:
        usd = _num(n.get("usd"))
        return {"group": "nodes", "data": {"id": n["id"], "label": str(n.get("label") or n["id"]),
                                           "kind": str(n.get("kind", "")), "usd": usd,
                                           "size": 18 + 6 * math.log10(1 + usd)}}

    def edge_el(eid: str, src: str, dst: str, kind: str, usd: float) -> dict:
        return {"group": "edges", "data": {"id": eid, "source": src, "target": dst, "kind": kind, "usd": usd,
                                           "width": 1 + math.log10(1 + usd) / 2}}

    protocol_nodes = [node_el(n) for nid, n in nodes.items() if not is_account(nid)]
    protocol_edges: list[dict] = []
    account_edges: list[dict] = []
    for i, e in enumerate(raw_edges):
        src, dst = str(e["source"]), str(e["target"])
        if src not in nodes or dst not in nodes:
            continue
        edge = edge_el(f"e{i}", src, dst, str(e.get("kind", "")), _num(e.get("usd")))
        (account_edges if is_account(src) or is_account(dst) else protocol_edges).append(edge)
    accounts = sorted((n for nid, n in nodes.items() if is_account(nid)), key=lambda n: -_num(n.get("usd")))
    shown = {n["id"] for n in accounts[:MAX_ACCOUNTS]}
    account_els = [node_el(n) for n in accounts[:MAX_ACCOUNTS]]
    visible = shown | {n["data"]["id"] for n in protocol_nodes}
    account_els += [e for e in account_edges if e["data"]["source"] in visible and e["data"]["target"] in visible]
    shown_nodes = [n for n in nodes.values() if not is_account(n["id"]) or n["id"] in shown]
    return {"protocol": protocol_nodes + protocol_edges, "accounts": account_els,
            "hidden_accounts": max(0, len(accounts) - MAX_ACCOUNTS), "details": node_details(inputs, shown_nodes)}
