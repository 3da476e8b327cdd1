"""Sweep specs and the scenarios they expand to: grids (assets × shock sizes), joint moves, static
vs cascaded liquidation curves, Monte Carlo paths and the systemic-importance shocks.

A sweep spec is TOML (every key optional; defaults in brackets)::

    name = "eth-btc-surface"
    assets = ["WETH", "WBTC"]       # [every non-receipt asset held as collateral]
    shocks = "-5%:-50%:5%"          # START:STOP:STEP, inclusive; or a list [-0.1, "-20%"]  [-10%:-50%:10%]
    joint = true                    # also move all the assets together by each shock size [false]
    static = true                   # also run each grid point without price impact [true]
    batch_size = 16                 # scenarios per task (the unit of caching and resumption)

    [scenario]                      # base scenario fields for every run (analyzer/scenarios.py format)
    max_rounds = 50
    sell_through = 1.0

    [[joint_move]]                  # named joint moves, run as given
    name = "eth-btc"
    price = { WETH = "-30%", WBTC = "-20%" }

    [montecarlo]                    # see analyzer/sweep/montecarlo.py
    paths = 1000
    seed = 0
    history = "prices.csv"          # or: assets = [...] + covariance = [[...]] (log returns, per horizon)
    horizon = 1                     # rows of the history per horizon

    [systemic]                      # see analyzer/sweep/systemic.py
    shock = "-30%"                  # each asset alone by this move
    accounts = 10                   # fail each protocol's N largest borrowers (by debt USD) together
    each_account = false            # and each of them alone

    [distance]                      # distance to cascade, by bisection (systemic.py)
    assets = ["WETH"]               # [the sweep's assets]
    max_shock = "-99%"
    tolerance = 0.005               # width of the final bracket, as a relative move
    min_bad_debt_usd = 1.0

CLI shorthands (:func:`spec_from_cli`) overlay a spec file: ``--assets WETH,WBTC --shocks -10%:-50%:5%``.
Size limits (the input controls the work, so it is bounded before anything runs): at most
``MAX_SHOCK_SIZES`` shock sizes and ``MAX_SCENARIOS`` scenarios in one sweep (Monte Carlo paths
included); a larger sweep is refused with the number it would have run. Split it into several.

Every scenario gets a stable integer id (its position in the expansion), so results never depend on
the order in which workers finish.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import ContagionError
from analyzer.inputs import read_toml
from analyzer.scenarios import parse_relative, scenario_from_dict

KINDS = ("baseline", "grid", "static", "joint", "montecarlo", "systemic_asset", "systemic_protocol",
         "systemic_account")
MAX_SHOCK_SIZES = 10_000
MAX_SCENARIOS = 200_000
_KEYS = {"name", "assets", "shocks", "joint", "static", "batch_size", "scenario", "joint_move", "montecarlo",
         "systemic", "distance"}


@dataclass
class SweepSpec:
    """A sweep as parsed from TOML (see the module docstring); ``base`` is a scenario TOML table."""

    name: str = "sweep"
    assets: list[str] = field(default_factory=list)
    shocks: list[float] = field(default_factory=lambda: parse_shock_range("-10%:-50%:10%", "default"))
    joint: bool = False
    static: bool = True
    batch_size: int = 16
    base: dict[str, Any] = field(default_factory=dict)
    joint_moves: list[dict[str, Any]] = field(default_factory=list)
    montecarlo: dict[str, Any] = field(default_factory=dict)
    systemic: dict[str, Any] = field(default_factory=dict)
    distance: dict[str, Any] = field(default_factory=dict)
    where: str = "sweep spec"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "assets": list(self.assets), "shocks": list(self.shocks), "joint": self.joint,
                "static": self.static, "batch_size": self.batch_size, "scenario": self.base,
                "joint_move": self.joint_moves, "montecarlo": self.montecarlo, "systemic": self.systemic,
                "distance": self.distance}


def parse_shock_range(text: Any, where: str) -> list[float]:
    """``"-10%:-50%:5%"`` -> [-0.10, -0.15, … -0.50] (inclusive; the step's sign follows the range);
    a list of numbers or percentages is taken as given. Values are rounded to 1e-12 so a grid
    computed anywhere gives the same floats."""
    if isinstance(text, list):
        if len(text) > MAX_SHOCK_SIZES:
            raise ContagionError(f"{where}: shocks lists {len(text):,} sizes; the limit is {MAX_SHOCK_SIZES:,}")
        values = [parse_relative(v, f"{where}: shocks") for v in text]
    else:
        parts = str(text).split(":")
        if len(parts) != 3:
            raise ContagionError(f'{where}: shocks = "{text}": expected START:STOP:STEP, e.g. -10%:-50%:5%')
        start, stop, step = (parse_relative(p, f"{where}: shocks") for p in parts)
        if step == 0:
            raise ContagionError(f'{where}: shocks = "{text}": the step must not be zero')
        count = np.floor(abs(stop - start) / abs(step) + 1e-9) + 1
        if not count <= MAX_SHOCK_SIZES:
            raise ContagionError(f'{where}: shocks = "{text}" is {count:,.0f} shock sizes; the limit is '
                                 f"{MAX_SHOCK_SIZES:,} (use a larger step)")
        count = int(count)
        step = abs(step) if stop >= start else -abs(step)
        values = [start + i * step for i in range(count)]
    values = [round(v, 12) for v in values]
    for v in values:
        if not -1.0 < v < 100.0:
            raise ContagionError(f"{where}: shocks: {v:+.2%} is out of range (a price cannot fall by 100% or more)")
    if not values:
        raise ContagionError(f"{where}: shocks: no shock sizes")
    return values


def spec_from_dict(raw: dict[str, Any], where: str = "sweep spec") -> SweepSpec:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ContagionError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KEYS))})")
    spec = SweepSpec(where=where)
    if "name" in raw:
        if not isinstance(raw["name"], str):
            raise ContagionError(f"{where}: name must be a string, got {raw['name']!r}")
        spec.name = raw["name"]
    if "assets" in raw:
        if not isinstance(raw["assets"], list) or not all(isinstance(a, str) for a in raw["assets"]):
            raise ContagionError(f"{where}: assets must be a list of symbols or addresses")
        spec.assets = list(raw["assets"])
    if "shocks" in raw:
        spec.shocks = parse_shock_range(raw["shocks"], where)
    for key in ("joint", "static"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ContagionError(f"{where}: {key} must be true or false")
            setattr(spec, key, raw[key])
    if "batch_size" in raw:
        if not isinstance(raw["batch_size"], int) or raw["batch_size"] < 1:
            raise ContagionError(f"{where}: batch_size must be a positive integer")
        spec.batch_size = raw["batch_size"]
    if not isinstance(raw.get("scenario", {}), dict):
        raise ContagionError(f"{where}: [scenario] must be a table")
    spec.base = dict(raw.get("scenario", {}))
    for key in ("price", "forced_sale"):
        if key in spec.base:
            raise ContagionError(f"{where}: [scenario] sets {key}, but each sweep scenario sets its own "
                                 "(use assets/shocks, [[joint_move]] or [systemic])")
    scenario_from_dict(spec.base, f"{where}: [scenario]")  # validate early, with the spec's name
    if not isinstance(raw.get("joint_move", []), list):
        raise ContagionError(f"{where}: joint_move must be an array of tables ([[joint_move]])")
    for entry in raw.get("joint_move", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("price"), dict):
            raise ContagionError(f"{where}: [[joint_move]] entries need a price table, e.g. price = {{WETH = \"-30%\"}}")
        moves = {k: parse_relative(v, f"{where}: joint_move.price.{k}") for k, v in entry["price"].items()}
        spec.joint_moves.append({"name": str(entry.get("name", f"joint-{len(spec.joint_moves)}")), "price": moves})
    for key in ("montecarlo", "systemic", "distance"):
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise ContagionError(f"{where}: [{key}] must be a table")
        setattr(spec, key, dict(value))
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    raw = read_toml(path, "sweep spec")
    raw.setdefault("name", path.stem)
    spec = spec_from_dict(raw, where=path.name)
    # a relative history file is relative to the spec
    history = spec.montecarlo.get("history")
    if isinstance(history, str) and history and not Path(history).is_absolute():
        spec.montecarlo["history"] = str(path.parent / history)
    return spec


def spec_from_cli(spec_file: str | Path | None = None, assets: str | None = None, shocks: str | None = None,
                  paths: int | None = None, seed: int | None = None) -> SweepSpec:
    """``--spec FILE`` overlaid by ``--assets WETH,WBTC``, ``--shocks -10%:-50%:5%``, ``--paths N``
    (Monte Carlo paths) and ``--seed N``."""
    spec = load_spec(spec_file) if spec_file else SweepSpec(where="command line")
    if assets:
        spec.assets = [a.strip() for a in assets.split(",") if a.strip()]
    if shocks:
        spec.shocks = parse_shock_range(shocks, "--shocks")
    if paths is not None:
        spec.montecarlo["paths"] = int(paths)
    if seed is not None:
        spec.montecarlo["seed"] = int(seed)
    if spec.montecarlo:
        from analyzer.sweep.montecarlo import check_config

        check_config(spec.montecarlo, f"{spec.where}: [montecarlo]")
    return spec


def scenario_count(spec: SweepSpec, assets: list[str]) -> int:
    """How many scenarios :func:`expand` makes, without making them (systemic rows excluded:
    they are bounded by the snapshot's assets, protocols and ``accounts``)."""
    per_asset = len(spec.shocks) * (2 if spec.static else 1)
    return (1 + len(assets) * per_asset + (len(spec.shocks) if spec.joint else 0) + len(spec.joint_moves)
            + (int(spec.montecarlo.get("paths", 1000)) if spec.montecarlo else 0))


def default_assets(snapshot) -> list[str]:
    """Symbols of every non-receipt asset some position holds as collateral, in snapshot order."""
    assets = snapshot.assets
    held = set(snapshot.positions.loc[snapshot.positions["side"] == "collateral", "asset"])
    plain = assets["receipt_of"].fillna("") == ""
    return [str(s) for s, a, ok in zip(assets["symbol"], assets["address"], plain, strict=True) if ok and a in held]


def _row(kind: str, label: str, price_shocks: dict[str, float], *, assets: str = "", shock: float = float("nan"),
         forced: list | None = None, failed_protocol: str = "", price_impact: bool = True) -> dict[str, Any]:
    return {"kind": kind, "label": label, "assets": assets, "shock": float(shock),
            "price_shocks": {k: float(v) for k, v in price_shocks.items()},
            "forced_sales": [list(f) for f in (forced or [])], "failed_protocol": failed_protocol,
            "price_impact": price_impact}


def expand(spec: SweepSpec, snapshot) -> list[dict[str, Any]]:
    """Every scenario of the sweep as a plain dict (picklable, JSON-able), ``scenario_id`` = position.

    Order: baseline (no shock: the reference for "losses caused"), grid, static grid, joint, named
    joint moves, Monte Carlo paths, systemic asset shocks, systemic protocol/account failures.
    """
    from analyzer.sweep import montecarlo, systemic

    assets = spec.assets or default_assets(snapshot)
    known = set(snapshot.assets["symbol"]) | set(snapshot.assets["address"])
    for a in assets:
        if a not in known:
            raise ContagionError(f'{spec.where}: asset "{a}" is not in the snapshot '
                                 f'(known: {", ".join(sorted(map(str, snapshot.assets["symbol"]))[:12])})')
    planned = scenario_count(spec, assets)
    if planned > MAX_SCENARIOS:
        raise ContagionError(f"{spec.where}: this sweep is {planned:,} scenarios; the limit is {MAX_SCENARIOS:,} "
                             "(fewer assets, shock sizes or paths, or several sweeps)")
    rows = [_row("baseline", "baseline", {})]
    for asset in assets:
        rows += [_row("grid", f"{asset} {s:+.2%}", {asset: s}, assets=asset, shock=s) for s in spec.shocks]
    if spec.static:
        for asset in assets:
            rows += [_row("static", f"{asset} {s:+.2%} static", {asset: s}, assets=asset, shock=s, price_impact=False)
                     for s in spec.shocks]
    if spec.joint:
        rows += [_row("joint", f"all {s:+.2%}", dict.fromkeys(assets, s), assets=",".join(assets), shock=s)
                 for s in spec.shocks]
    for move in spec.joint_moves:
        rows.append(_row("joint", move["name"], move["price"], assets=",".join(move["price"])))
    if spec.montecarlo:
        for i, moves in enumerate(montecarlo.draw_shocks(spec.montecarlo, f"{spec.where}: [montecarlo]")):
            rows.append(_row("montecarlo", f"path {i}", moves, assets=",".join(moves)))
    if spec.systemic:
        rows += systemic.systemic_rows(spec.systemic, snapshot, assets, f"{spec.where}: [systemic]", _row)
    for i, row in enumerate(rows):
        row["scenario_id"] = i
    return rows


def spec_fingerprint(spec: SweepSpec, rows: list[dict[str, Any]]) -> str:
    """Canonical JSON of what determines the results (expanded rows, base scenario, distance)."""
    return json.dumps({"rows": rows, "base": spec.base, "distance": spec.distance, "batch_size": spec.batch_size,
                       "assets": spec.assets}, sort_keys=True)
