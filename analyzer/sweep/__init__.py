"""Stress sweeps: grids, joint moves, Monte Carlo, systemic importance and distance to cascade, run
in-process or on a Dask cluster (``sweep_to_dir``). See grid.py for the spec format, results.py for
the output schema, run.py for execution."""

from analyzer.sweep.grid import SweepSpec, load_spec, parse_shock_range, spec_from_cli, spec_from_dict
from analyzer.sweep.run import sweep, sweep_to_dir

__all__ = ["SweepSpec", "load_spec", "parse_shock_range", "spec_from_cli", "spec_from_dict", "sweep", "sweep_to_dir"]
