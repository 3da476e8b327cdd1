"""Risk-parameter recommendations (``contagion recommend``): the smallest governance changes that
keep every stress scenario's bad debt under a budget, each evaluated settled then shocked.
:mod:`.evaluate` (a set of changes through the engine), :mod:`.search` (greedy, then pruning),
:mod:`.run` (descriptions and outputs), :mod:`.section` (the report section), :mod:`.margin`
(the dynamic-margin schedule: thresholds by short-gamma concentration, ignition beyond a target fall)."""

from analyzer.recommend.run import load_scenarios, recommend, recommend_to_dir

__all__ = ["load_scenarios", "recommend", "recommend_to_dir"]
