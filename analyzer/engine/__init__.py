"""The cascade engine: ``simulate(snapshot, scenario) -> CascadeResult`` (see cascade.py)."""

from __future__ import annotations

from pathlib import Path

from analyzer.engine.cascade import simulate
from analyzer.engine.result import CascadeResult

__all__ = ["CascadeResult", "simulate", "simulate_to_dir"]


def simulate_to_dir(snapshot_dir: str | Path, scenario, out_dir: str | Path) -> Path:
    """Read the snapshot at ``snapshot_dir``, run ``scenario`` (a ShockScenario), write
    ``cascade.json`` + Parquet tables into ``out_dir``; returns the path of cascade.json."""
    from analyzer.model import Snapshot

    result = simulate(Snapshot.read(snapshot_dir), scenario)
    return result.write(out_dir)
