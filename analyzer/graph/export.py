"""Exports of the collateral graph: GraphML and GEXF (open in Gephi), node-link JSON (for the
report) and Parquet node and edge lists. Every file is written atomically (analyzer/atomic.py).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analyzer.atomic import atomic_write_bytes, atomic_write_text

GRAPHML = "graph.graphml"
GEXF = "graph.gexf"
NODE_LINK = "graph.json"
EDGES = "edges.parquet"
NODES = "nodes.parquet"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf replaced by None and numpy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def edge_frame(graph: nx.MultiDiGraph) -> pd.DataFrame:
    """One row per edge: source, target, key, the source's and target's kinds, then the edge's attributes."""
    rows = [{"source": u, "target": v, "key": str(k), "source_kind": graph.nodes[u]["kind"],
             "target_kind": graph.nodes[v]["kind"], **d} for u, v, k, d in graph.edges(keys=True, data=True)]
    columns = ["source", "target", "key", "source_kind", "target_kind", "kind", "usd", "asset", "symbol", "amount",
               "protocol"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"usd": "float64", "amount": "float64"})


def node_frame(graph: nx.MultiDiGraph) -> pd.DataFrame:
    """One row per node: id, then the node's attributes."""
    return pd.DataFrame([{"id": n, **d} for n, d in graph.nodes(data=True)])


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def write_graph_outputs(graph: nx.MultiDiGraph, out_dir: str | Path) -> dict[str, Path]:
    """Write ``graph.graphml``, ``graph.gexf`` (edge weight = usd), ``graph.json`` (node-link: per node
    ``kind``, ``label``, ``usd``; per edge ``kind``, ``usd``; NaN as null), ``edges.parquet`` and
    ``nodes.parquet`` into ``out_dir``; return their paths by format name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    buffer = io.BytesIO()
    nx.write_graphml(graph, buffer)
    paths["graphml"] = atomic_write_bytes(out / GRAPHML, buffer.getvalue())

    weighted = graph.copy()
    for _, _, data in weighted.edges(data=True):
        data["weight"] = data["usd"]
    buffer = io.BytesIO()
    nx.write_gexf(weighted, buffer)
    paths["gexf"] = atomic_write_bytes(out / GEXF, buffer.getvalue())

    data = json_safe(nx.node_link_data(graph, edges="edges"))
    paths["json"] = atomic_write_text(out / NODE_LINK, json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n")
    paths["edges"] = atomic_write_bytes(out / EDGES, _parquet_bytes(edge_frame(graph)))
    paths["nodes"] = atomic_write_bytes(out / NODES, _parquet_bytes(node_frame(graph)))
    return paths
