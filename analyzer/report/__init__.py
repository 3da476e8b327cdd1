"""The contagion report: ``report.html`` (self-contained, offline), ``figures/*.png`` and ``summary.md``.

``write_report(run_dir)`` reads what a run directory holds (layout in analyzer/report/inputs.py)
and writes the three outputs into it, each atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from analyzer.atomic import atomic_directory, atomic_write_text, final_path, staged_folder
from analyzer.errors import ContagionError
from analyzer.report.data import report_data
from analyzer.report.figures import all_figures
from analyzer.report.graphview import cytoscape_elements
from analyzer.report.html import render_html
from analyzer.report.inputs import read_run
from analyzer.report.summary import render_summary

__all__ = ["REPORT_OUTPUTS", "write_report", "write_run_index"]
REPORT_OUTPUTS = ("report.html", "summary.md", "figures")


def write_run_index(run_dir: str | Path, *, headline: str, scenarios: list[str], title: str | None = None) -> Path:
    """Write ``run.json`` (the headline scenario and the order of ``scenarios/<name>/``) atomically."""
    if headline not in scenarios:
        raise ContagionError(f"run.json: headline {headline} is not among the scenarios ({', '.join(scenarios)})")
    index = {"headline": headline, "scenarios": list(scenarios), **({"title": title} if title else {})}
    return atomic_write_text(Path(run_dir) / "run.json", json.dumps(index, indent=2) + "\n")


def write_report(run_dir: str | Path, *, snapshot_dir: str | Path | None = None, sweep_dir: str | Path | None = None,
                 title: str | None = None, staged: bool = True) -> Path:
    """Write ``report.html``, ``figures/*.png`` and ``summary.md`` into ``run_dir``, all at once
    (``staged=False``: straight in, for a caller that stages ``run_dir`` itself); return the
    path of ``report.html``. ``sweep_dir``: a ``contagion sweep`` output folder to show (default:
    ``run_dir/sweep`` when it holds a summary.json). Raises ContagionError naming the file and
    field of a malformed input."""
    run_dir = Path(run_dir)
    inputs = read_run(run_dir, snapshot_dir=Path(snapshot_dir) if snapshot_dir is not None else None,
                      sweep_dir=Path(sweep_dir) if sweep_dir is not None else None, title=title)
    data = report_data(inputs)
    graph = cytoscape_elements(inputs)
    figures = all_figures(data, graph)
    html = render_html(data, graph, figures)
    if not staged:   # the caller stages run_dir itself
        return _write_outputs(run_dir, figures, render_summary(data, sorted(figures)), html)
    with staged_folder(run_dir) as stage:
        written = _write_outputs(stage, figures, render_summary(data, sorted(figures)), html)
    return final_path(written, stage, run_dir)


def _write_outputs(folder: Path, figures: dict[str, bytes], summary: str, html: str) -> Path:
    with atomic_directory(folder / "figures") as tmp:
        for name, png in figures.items():
            (tmp / name).write_bytes(png)
    atomic_write_text(folder / "summary.md", summary)
    return atomic_write_text(folder / "report.html", html)
