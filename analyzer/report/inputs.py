"""What the report reads from a run directory, checked field by field.

Run directory layout (every part but one cascade is optional)::

    run.json                  {"title": str, "headline": "<scenario>", "scenarios": ["<scenario>", ...]}
    cascade.json              the headline scenario (a single-scenario run needs only this)
    scenarios/<name>/cascade.json   one per scenario of a set (demo, sweep)
    snapshot/                 analyzer.model.Snapshot (meta.json + Parquet), or ``snapshot_dir=``
    graph.json                node-link JSON of analyzer.graph (nodes: id, kind, label, usd; edges: kind, usd)
    exposure.json             exposure metrics of analyzer.graph (static liquidation curves); metrics.json
                              is read under the same schema when exposure.json is absent
    fidelity.json             replay against engine (analyzer.replay)

The headline is the top-level ``cascade.json`` when present, else ``run.json``'s ``headline``,
else the first scenario by name. Missing optional parts are reported as absent; a part that is
present but malformed raises ContagionError naming the file and the field.

cascade.json is analyzer.engine.result's (schema ``defi-contagion/cascade`` version 1); read:
``scenario`` (price_shocks, iv_shocks, forced_sales, name), ``stop_reason``, ``converged``,
``protocols{p}`` (liquidations, liquidated_usd, seized_usd, bad_debt_usd, receipt_writedown_usd),
``rounds[]`` (round, liquidations{p}, liquidated_usd{p}, bad_debt_usd{p}, price_usd{symbol},
iv{symbol}), ``assets[]`` (symbol, amplification), ``contagion`` (sources, protocols,
usd[source][protocol]), ``divergence``, ``snapshot`` (chain_id, block_number), and, beside it,
``accounts.parquet`` (protocol, account, liquidated_usd, bad_debt_usd, first_round, cause:<source>
shares) when present. ``null`` (a non-finite number) reads as NaN and shows as "–".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analyzer.engine.result import SCHEMA, SCHEMA_VERSION
from analyzer.errors import ContagionError
from analyzer.model import Snapshot


@dataclass
class RunInputs:
    run_dir: Path
    title: str
    headline: str
    scenarios: dict[str, dict[str, Any]]          # name -> normalised cascade, headline included
    snapshot: Snapshot | None = None
    graph: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    fidelity: dict[str, Any] | None = None
    present: dict[str, bool] = field(default_factory=dict)

    @property
    def cascade(self) -> dict[str, Any]:
        return self.scenarios[self.headline]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"{path}: not valid JSON ({exc})") from None


def _obj(value: Any, path: Path, where: str) -> dict:
    if not isinstance(value, dict):
        raise ContagionError(f"{path}: {where} must be an object, got {type(value).__name__}")
    return value


def _num(value: Any, path: Path, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContagionError(f"{path}: {where} must be a number, got {value!r}")
    return float(value)


def _num_map(value: Any, path: Path, where: str, names: dict[str, str] | None = None) -> dict[str, float]:
    names = names or {}
    return {names.get(str(k), str(k)): _num(v, path, f"{where}.{k}") for k, v in _obj(value, path, where).items()}


def _list(raw: dict, key: str, path: Path) -> list:
    if not isinstance(raw.get(key), list):
        raise ContagionError(f"{path}: {key} must be a list")
    return raw[key]


def _accounts(path: Path) -> list[dict[str, Any]]:
    """Per-account outcomes from ``accounts.parquet`` beside cascade.json (liquidated ones only)."""
    file = path.with_name("accounts.parquet")
    if not file.is_file():
        return []
    try:
        frame = pq.read_table(file).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise ContagionError(f"{file}: unreadable Parquet ({' '.join(str(exc).split())[:200]})") from None
    missing = {"protocol", "account", "liquidated_usd", "bad_debt_usd"} - set(frame.columns)
    if missing:
        raise ContagionError(f"{file}: missing columns {sorted(missing)}")
    frame = frame[(frame["liquidated_usd"] > 0) | (frame["bad_debt_usd"] > 0)]
    cause_cols = [c for c in frame.columns if c.startswith("cause:")]
    first = frame["first_round"] if "first_round" in frame else pd.Series(-1, index=frame.index)
    return [{"protocol": str(r["protocol"]), "account": str(r["account"]), "liquidated_usd": float(r["liquidated_usd"]),
             "bad_debt_usd": float(r["bad_debt_usd"]), "first_round": int(f) if f >= 0 else None,
             "causes": {c.split(":", 1)[1]: float(r[c]) for c in cause_cols if r[c] > 0}}
            for (_, r), f in zip(frame.iterrows(), first, strict=True)]


def read_cascade(path: Path, names: dict[str, str], default_name: str) -> dict[str, Any]:
    """One engine cascade.json (+ accounts.parquet) as the normalised dict the report uses; asset
    addresses are renamed to symbols with ``names``."""
    raw = _obj(read_json(path), path, "the top level")
    if raw.get("schema") != SCHEMA or raw.get("schema_version") != SCHEMA_VERSION:
        raise ContagionError(f"{path}: schema {raw.get('schema')!r} version {raw.get('schema_version')!r} "
                             f"(this report reads {SCHEMA} version {SCHEMA_VERSION})")
    for key in ("rounds", "protocols", "scenario"):
        if key not in raw:
            raise ContagionError(f"{path}: missing field {key}")
    scenario = _obj(raw["scenario"], path, "scenario")
    protocols = {}
    for proto, row in _obj(raw["protocols"], path, "protocols").items():
        row = _obj(row, path, f"protocols.{proto}")
        protocols[str(proto)] = {key: _num(row.get(key, 0.0), path, f"protocols.{proto}.{key}")
                                 for key in ("liquidated_usd", "seized_usd", "bad_debt_usd", "receipt_writedown_usd")}
        protocols[str(proto)]["liquidations"] = int(_num(row.get("liquidations", 0), path, f"protocols.{proto}.liquidations"))
    rounds = []
    for i, rnd in enumerate(_list(raw, "rounds", path)):
        rnd = _obj(rnd, path, f"rounds[{i}]")
        where = f"rounds[{i}]"
        count = _num_map(rnd.get("liquidations", {}), path, f"{where}.liquidations")
        usd = _num_map(rnd.get("liquidated_usd", {}), path, f"{where}.liquidated_usd")
        rounds.append({"round": int(_num(rnd.get("round", i), path, f"{where}.round")),
                       "prices": _num_map(rnd.get("price_usd", {}), path, f"{where}.price_usd", names),
                       "iv": _num_map(rnd.get("iv", {}), path, f"{where}.iv", names),
                       "liquidations": {p: {"count": int(count.get(p, 0)), "usd": usd.get(p, 0.0)}
                                        for p in sorted(set(count) | set(usd))}})
    matrix = None
    if raw.get("contagion") is not None:
        m = _obj(raw["contagion"], path, "contagion")
        sources, targets, usd = m.get("sources"), m.get("protocols"), m.get("usd")
        if not (isinstance(sources, list) and isinstance(targets, list) and isinstance(usd, list)):
            raise ContagionError(f"{path}: contagion needs lists sources, protocols and usd")
        if len(usd) != len(sources) or any(not isinstance(r, list) or len(r) != len(targets) for r in usd):
            raise ContagionError(f"{path}: contagion.usd must be {len(sources)} rows of {len(targets)} numbers")
        matrix = {"sources": [str(s) for s in sources], "targets": [str(t) for t in targets],
                  "usd": [[_num(v, path, f"contagion.usd[{i}][{j}]") for j, v in enumerate(r)]
                          for i, r in enumerate(usd)]}
    amplification, price_before = {}, {}
    for i, asset in enumerate(raw.get("assets", []) or []):
        asset = _obj(asset, path, f"assets[{i}]")
        price_before[str(asset.get("symbol") or asset.get("address"))] = _num(
            asset.get("price_before_usd"), path, f"assets[{i}].price_before_usd")
        if asset.get("amplification") is not None:
            amplification[str(asset.get("symbol") or asset.get("address"))] = _num(
                asset["amplification"], path, f"assets[{i}].amplification")
    return {"name": str(scenario.get("name") or default_name),
            "shocks": _num_map(scenario.get("price_shocks", {}), path, "scenario.price_shocks", names),
            "iv_shocks": _num_map(scenario.get("iv_shocks", {}), path, "scenario.iv_shocks", names),
            "forced_sales": [str(f.get("account", "")) if isinstance(f, dict) else str(f)
                             for f in scenario.get("forced_sales", []) or []],
            "rounds": rounds, "protocols": protocols, "amplification": amplification, "price_before": price_before, "matrix": matrix,
            "accounts": _accounts(path), "converged": raw.get("converged"), "stop_reason": raw.get("stop_reason"),
            "divergence": raw.get("divergence"), "snapshot": raw.get("snapshot") or {},
            "rounds_run": raw.get("rounds_run", len(rounds)), "file": str(path)}


def read_run(run_dir: Path, *, snapshot_dir: Path | None = None, title: str | None = None) -> RunInputs:
    """Everything the report needs from ``run_dir`` (see the module docstring for the layout)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ContagionError(f"{run_dir}: not a directory")
    run_meta = _obj(read_json(run_dir / "run.json"), run_dir / "run.json", "the top level") \
        if (run_dir / "run.json").is_file() else {}
    snap_path = Path(snapshot_dir) if snapshot_dir is not None else run_dir / "snapshot"
    snapshot = Snapshot.read(snap_path) if (snap_path / "meta.json").is_file() else None
    if snapshot_dir is not None and snapshot is None:
        raise ContagionError(f"{snap_path}: not a snapshot (no meta.json)")
    names = snapshot.symbol_of() if snapshot is not None else {}

    scenarios: dict[str, dict[str, Any]] = {}
    order = [str(n) for n in run_meta.get("scenarios", [])]
    found = sorted(p.parent.name for p in (run_dir / "scenarios").glob("*/cascade.json"))
    for name in order + [n for n in found if n not in order]:
        path = run_dir / "scenarios" / name / "cascade.json"
        if not path.is_file():
            raise ContagionError(f"{run_dir / 'run.json'}: scenario {name} has no {path}")
        scenarios[name] = read_cascade(path, names, name)
    headline = str(run_meta.get("headline", ""))
    if (run_dir / "cascade.json").is_file():
        top = read_cascade(run_dir / "cascade.json", names, headline or "headline")
        headline = headline or top["name"]
        scenarios[headline] = {**top, "name": headline}
    if not scenarios:
        raise ContagionError(f"{run_dir}: no cascade.json and no scenarios/<name>/cascade.json to report on")
    if not headline:
        headline = next(iter(scenarios))
    if headline not in scenarios:
        raise ContagionError(f"{run_dir / 'run.json'}: headline {headline} is not among the scenarios "
                             f"({', '.join(scenarios)})")

    def optional(name: str) -> dict | None:
        path = run_dir / name
        return _obj(read_json(path), path, "the top level") if path.is_file() else None

    graph = optional("graph.json")
    if graph is not None:
        edges = graph.get("edges", graph.get("links"))
        if not isinstance(graph.get("nodes"), list) or not isinstance(edges, list):
            raise ContagionError(f"{run_dir / 'graph.json'}: node-link JSON needs lists nodes and edges (or links)")
        for i, node in enumerate(graph["nodes"]):
            if not isinstance(node, dict) or "id" not in node:
                raise ContagionError(f"{run_dir / 'graph.json'}: nodes[{i}] needs an id")
    return RunInputs(run_dir=run_dir, title=title or str(run_meta.get("title") or f"Contagion report: {headline}"),
                     headline=headline, scenarios=scenarios, snapshot=snapshot, graph=graph,
                     metrics=optional("exposure.json") or optional("metrics.json"), fidelity=optional("fidelity.json"),
                     present={"snapshot": snapshot is not None, "graph": graph is not None})
