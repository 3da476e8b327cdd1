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
    sweep/summary.json        a stress sweep (``contagion sweep SNAPSHOT --out <run>/sweep``), or the
                              ``summary.json`` of any sweep output folder given as ``sweep_dir=``
                              (``contagion report RUN --sweep DIR``); results.parquet beside it is not read

The headline is the top-level ``cascade.json`` when present, else ``run.json``'s ``headline``,
else the first scenario by name. Missing optional parts are reported as absent; a part that is
present but malformed raises ContagionError naming the file and the field.

cascade.json is analyzer.engine.result's (schema ``defi-contagion/cascade`` version 1); read:
``scenario`` (price_shocks, iv_shocks, forced_sales, name), ``stop_reason``, ``converged``,
``protocols{p}`` (liquidations, liquidated_usd, seized_usd, bad_debt_usd, receipt_writedown_usd,
unrealised_supplier_loss_usd: 0 when absent),
``rounds[]`` (round, liquidations{p}, liquidated_usd{p}, bad_debt_usd{p}, price_usd{symbol},
iv{symbol}), ``assets[]`` (symbol, amplification), ``contagion`` (sources, protocols,
usd[source][protocol]), ``divergence``, ``snapshot`` (chain_id, block_number), and, beside it,
``accounts.parquet`` (protocol, account, liquidated_usd, bad_debt_usd, first_round, cause:<source>
shares) when present. ``null`` (a non-finite number) reads as NaN and shows as "–".

sweep summary.json is analyzer.sweep.results' (schema ``defi-contagion/sweep-summary`` version 1);
read: ``name``, ``scenarios``, ``protocols``, ``snapshot_key``, ``heatmap`` (assets, shocks,
liquidated_usd / bad_debt_usd / static_liquidated_usd as asset × shock lists), ``curves[]``,
``systemic[]`` (rank, kind, name, losses_usd, liquidated_usd, bad_debt_usd, scenario_id),
``distance[]`` (asset, shock or null, bracket [safe, failing], bad_debt_usd, evaluations, found) and
``montecarlo`` (paths; mean, p50, p95, p99 of liquidated_usd and bad_debt_usd; or null).
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
from analyzer.sweep.results import RESULTS_VERSION as SWEEP_VERSION
from analyzer.sweep.results import SUMMARY_SCHEMA as SWEEP_SCHEMA


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
    sweep: dict[str, Any] | None = None
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
        table = pq.read_table(file)
        table.validate(full=True)       # strings that are not UTF-8 are read as they are
        frame = table.to_pandas()
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
                                 for key in ("liquidated_usd", "seized_usd", "bad_debt_usd", "receipt_writedown_usd",
                                             "unrealised_supplier_loss_usd")}
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
        sources, targets, cells = m.get("sources"), m.get("protocols"), m.get("usd")
        if not (isinstance(sources, list) and isinstance(targets, list) and isinstance(cells, list)):
            raise ContagionError(f"{path}: contagion needs lists sources, protocols and usd")
        if len(cells) != len(sources) or any(not isinstance(r, list) or len(r) != len(targets) for r in cells):
            raise ContagionError(f"{path}: contagion.usd must be {len(sources)} rows of {len(targets)} numbers")
        matrix = {"sources": [str(s) for s in sources], "targets": [str(t) for t in targets],
                  "usd": [[_num(v, path, f"contagion.usd[{i}][{j}]") for j, v in enumerate(r)]
                          for i, r in enumerate(cells)]}
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


def _field(raw: dict, key: str, path: Path, where: str) -> Any:
    if key not in raw:
        raise ContagionError(f"{path}: missing field {where}{key}")
    return raw[key]


def _typed(value: Any, kind: type | tuple[type, ...], path: Path, where: str, what: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise ContagionError(f"{path}: {where} must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise ContagionError(f"{path}: {where} must be {what}, got {value!r}"[:300])
    return value


def _nums(value: Any, path: Path, where: str, length: int | None = None) -> list[float]:
    """A list of numbers (null reads as NaN), of ``length`` when given."""
    values = _typed(value, list, path, where, "a list of numbers")
    if length is not None and len(values) != length:
        raise ContagionError(f"{path}: {where} must have {length} entries, got {len(values)}")
    return [_num(v, path, f"{where}[{i}]") for i, v in enumerate(values)]


def _matrix(value: Any, path: Path, where: str, rows: int, cols: int) -> list[list[float]]:
    lines = _typed(value, list, path, where, f"a list of {rows} rows")
    if len(lines) != rows:
        raise ContagionError(f"{path}: {where} must have {rows} rows (one per asset), got {len(lines)}")
    return [_nums(line, path, f"{where}[{i}]", cols) for i, line in enumerate(lines)]


def _sweep_entry(raw: Any, path: Path, where: str, fields: dict[str, str]) -> dict[str, Any]:
    """One object of a summary.json list; ``fields``: name -> str | int | num | num? | bool | bracket."""
    raw = _obj(raw, path, where)
    out: dict[str, Any] = {}
    for key, kind in fields.items():
        value, at = _field(raw, key, path, f"{where}."), f"{where}.{key}"
        if kind == "str":
            out[key] = _typed(value, str, path, at, "a string")
        elif kind == "int":
            out[key] = _typed(value, int, path, at, "an integer")
        elif kind == "bool":
            out[key] = _typed(value, bool, path, at, "true or false")
        elif kind == "num?":
            out[key] = None if value is None else _num(value, path, at)
        elif kind == "bracket":
            out[key] = _nums(value, path, at, 2)
        else:
            out[key] = _num(value, path, at)
    return out


def read_sweep(path: Path) -> dict[str, Any]:
    """A sweep's ``summary.json`` (schema in the module docstring), checked field by field."""
    raw = _obj(read_json(path), path, "the top level")
    if raw.get("schema") != SWEEP_SCHEMA or raw.get("schema_version") != SWEEP_VERSION:
        raise ContagionError(f"{path}: schema {raw.get('schema')!r} version {raw.get('schema_version')!r} "
                             f"(this report reads {SWEEP_SCHEMA} version {SWEEP_VERSION})")
    heat = _obj(_field(raw, "heatmap", path, ""), path, "heatmap")
    assets = _typed(_field(heat, "assets", path, "heatmap."), list, path, "heatmap.assets", "a list of symbols")
    for i, asset in enumerate(assets):
        _typed(asset, str, path, f"heatmap.assets[{i}]", "a string")
    shocks = _nums(_field(heat, "shocks", path, "heatmap."), path, "heatmap.shocks")
    shape = (len(assets), len(shocks)) if assets else (0, 0)  # no grid: the sweep writes [] for each matrix
    static = heat.get("static_liquidated_usd")
    heatmap = {"assets": assets, "shocks": shocks,
               **{key: _matrix(_field(heat, key, path, "heatmap."), path, f"heatmap.{key}", *shape)
                  for key in ("liquidated_usd", "bad_debt_usd")},
               "static_liquidated_usd": None if static is None else
               _matrix(static, path, "heatmap.static_liquidated_usd", *shape)}
    curves = []
    for i, curve in enumerate(_typed(_field(raw, "curves", path, ""), list, path, "curves", "a list")):
        curve, where = _obj(curve, path, f"curves[{i}]"), f"curves[{i}]"
        drops = _nums(_field(curve, "shocks", path, f"{where}."), path, f"{where}.shocks")
        static_curve = _field(curve, "static_liquidated_usd", path, f"{where}.")
        curves.append({"asset": _typed(_field(curve, "asset", path, f"{where}."), str, path, f"{where}.asset",
                                       "a string"), "shocks": drops,
                       "cascaded_liquidated_usd": _nums(_field(curve, "cascaded_liquidated_usd", path, f"{where}."),
                                                        path, f"{where}.cascaded_liquidated_usd", len(drops)),
                       "static_liquidated_usd": None if static_curve is None else
                       _nums(static_curve, path, f"{where}.static_liquidated_usd", len(drops))})
    systemic = [_sweep_entry(r, path, f"systemic[{i}]", {
        "rank": "int", "kind": "str", "name": "str", "losses_usd": "num", "liquidated_usd": "num",
        "bad_debt_usd": "num", "scenario_id": "int"})
        for i, r in enumerate(_typed(_field(raw, "systemic", path, ""), list, path, "systemic", "a list"))]
    distance = [_sweep_entry(r, path, f"distance[{i}]", {
        "asset": "str", "shock": "num?", "bracket": "bracket", "bad_debt_usd": "num", "evaluations": "int",
        "found": "bool"})
        for i, r in enumerate(_typed(_field(raw, "distance", path, ""), list, path, "distance", "a list"))]
    montecarlo = raw.get("montecarlo")
    if montecarlo is not None:
        montecarlo = _obj(montecarlo, path, "montecarlo")
        montecarlo = {"paths": _typed(_field(montecarlo, "paths", path, "montecarlo."), int, path,
                                      "montecarlo.paths", "an integer"),
                      **{key: _sweep_entry(_field(montecarlo, key, path, "montecarlo."), path, f"montecarlo.{key}",
                                           dict.fromkeys(("mean", "p50", "p95", "p99"), "num"))
                         for key in ("liquidated_usd", "bad_debt_usd")}}
    protocols = _typed(raw.get("protocols", []), list, path, "protocols", "a list of names")
    return {"file": str(path), "name": str(raw.get("name") or path.parent.name),
            "scenarios": _typed(raw.get("scenarios", 0), int, path, "scenarios", "an integer"),
            "protocols": [str(p) for p in protocols], "snapshot_key": str(raw.get("snapshot_key") or ""),
            "heatmap": heatmap, "curves": curves, "systemic": systemic, "distance": distance,
            "montecarlo": montecarlo}


def _sweep_file(run_dir: Path, sweep_dir: Path | None) -> Path | None:
    """``sweep_dir``/summary.json (which must exist), else ``run_dir``/sweep/summary.json if present."""
    if sweep_dir is None:
        path = run_dir / "sweep" / "summary.json"
        return path if path.is_file() else None
    if not sweep_dir.is_dir():
        raise ContagionError(f"{sweep_dir}: not a folder (the --out folder of contagion sweep)")
    if not (sweep_dir / "summary.json").is_file():
        raise ContagionError(f"{sweep_dir}: no summary.json (the --out folder of contagion sweep holds one)")
    return sweep_dir / "summary.json"


def _recorded_snapshot(run_dir: Path) -> Path | None:
    """The snapshot folder ``cascade.json`` records (``snapshot.path``), or None."""
    cascade = run_dir / "cascade.json"
    if not cascade.is_file():
        return None
    try:
        path = json.loads(cascade.read_text()).get("snapshot", {}).get("path")
    except (ValueError, AttributeError):
        return None     # read_json below names a malformed cascade.json
    return Path(path) if isinstance(path, str) and path else None


def read_run(run_dir: Path, *, snapshot_dir: Path | None = None, sweep_dir: Path | None = None,
             title: str | None = None) -> RunInputs:
    """Everything the report needs from ``run_dir`` (see the module docstring for the layout)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ContagionError(f"{run_dir}: not a directory")
    sweep_file = _sweep_file(run_dir, Path(sweep_dir) if sweep_dir is not None else None)
    run_meta = _obj(read_json(run_dir / "run.json"), run_dir / "run.json", "the top level") \
        if (run_dir / "run.json").is_file() else {}
    snap_path = Path(snapshot_dir) if snapshot_dir is not None else run_dir / "snapshot"
    if snapshot_dir is None and not (snap_path / "meta.json").is_file():
        recorded = _recorded_snapshot(run_dir)     # the snapshot `simulate` read, when it says so
        if recorded is not None:
            if not (recorded / "meta.json").is_file():
                raise ContagionError(f"{run_dir}: the snapshot this run simulated, {recorded}, is gone "
                                     "(give --snapshot FOLDER)")
            snap_path = recorded
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
                     sweep=read_sweep(sweep_file) if sweep_file is not None else None,
                     present={"snapshot": snapshot is not None, "graph": graph is not None,
                              "sweep": sweep_file is not None})
