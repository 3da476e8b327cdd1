"""The cascade engine: ``simulate(snapshot, scenario) -> CascadeResult`` (see cascade.py)."""

from __future__ import annotations

from pathlib import Path

from analyzer.engine.cascade import simulate
from analyzer.engine.result import CascadeResult

__all__ = ["CascadeResult", "simulate", "simulate_to_dir"]


def simulate_to_dir(snapshot_dir: str | Path, scenario, out_dir: str | Path, *, report: bool = False) -> Path:
    """Read the snapshot at ``snapshot_dir``, run ``scenario`` (a ShockScenario), write
    ``cascade.json`` + Parquet tables (and with ``report``, the report) into ``out_dir``, all at
    once (analyzer.atomic.staged_folder); a previous report of the folder, now stale, goes.
    Returns the path of cascade.json (report.html with ``report``)."""
    from analyzer.atomic import check_output_dir, final_path, staged_folder
    from analyzer.model import Snapshot
    from analyzer.report import REPORT_OUTPUTS, write_report

    check_output_dir(out_dir)
    result = simulate(Snapshot.read(snapshot_dir), scenario)
    result.snapshot_meta["path"] = str(Path(snapshot_dir).resolve())   # so `contagion report` finds it
    with staged_folder(out_dir, discard=REPORT_OUTPUTS) as stage:
        written = result.write(stage)
        if report:
            written = write_report(stage, snapshot_dir=Path(snapshot_dir).resolve(), staged=False)
    return final_path(written, stage, Path(out_dir))
