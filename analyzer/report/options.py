"""The report's options parts: the dealer gamma map and the feedback curve (where the loop ignites).

Both come from the run's snapshot (:mod:`analyzer.options.gammamap`) and, for the feedback curve,
from ``exposure.json`` when the run has one (``contagion graph`` writes it), else computed here
with the protocols' own rules (:mod:`analyzer.graph.feedback`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer.errors import ContagionError


def gamma_map_view(snapshot, top_strikes: int = 12) -> dict[str, Any] | None:
    """Summary, by expiry and the strikes with the largest dealer gamma, per underlying; None
    without options."""
    if snapshot is None:
        return None
    from analyzer.options.gammamap import gamma_map

    result = gamma_map(snapshot)
    if result.summary.empty:
        return None
    inst = snapshot.option_instruments
    positioning = sorted(set(inst["positioning"])) if len(inst) else []
    on_chain = sorted(set(snapshot.options["protocol"]))
    out = []
    for row in result.summary.to_dict(orient="records"):
        asset = row["asset"]
        strikes = result.by_strike[result.by_strike["asset"] == asset]
        biggest = strikes.reindex(strikes["gex_usd_per_pct"].abs().sort_values(ascending=False).index)[:top_strikes]
        profile = result.profile[result.profile["asset"] == asset]
        out.append({**{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()},
                    "sources": result.by_source[result.by_source["asset"] == asset].to_dict(orient="records"),
                    "expiries": result.by_expiry[result.by_expiry["asset"] == asset].to_dict(orient="records"),
                    "strikes": biggest.sort_values("strike").to_dict(orient="records"),
                    "all_strikes": strikes["strike"].tolist(), "all_gex": strikes["gex_usd_per_pct"].tolist(),
                    "profile_spot": profile["spot_usd"].tolist(), "profile_gex": profile["gex_usd_per_pct"].tolist()})
    return {"underlyings": out, "positioning": positioning + [f"on-chain:{p} (pool = −users)" for p in on_chain]}


def feedback_view(snapshot, metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The feedback curves from ``exposure.json`` (validated), or computed from the snapshot."""
    found = (metrics or {}).get("feedback")
    if found is not None:
        if not isinstance(found, dict) or not isinstance(found.get("falls"), list) \
                or not isinstance(found.get("curves"), list):
            raise ContagionError("exposure.json: feedback needs lists falls and curves")
        for i, curve in enumerate(found["curves"]):
            if not isinstance(curve, dict) or not isinstance(curve.get("ratio"), list) \
                    or len(curve["ratio"]) != len(found["falls"]):
                raise ContagionError(f"exposure.json: feedback.curves[{i}].ratio must be a list as long as falls")
        return found if found["curves"] else None
    if snapshot is None:
        return None
    from analyzer.graph.curves import protocol_rules
    from analyzer.graph.feedback import feedback_curves

    protocols = sorted(set(snapshot.positions["protocol"]) | set(snapshot.options["protocol"]))
    rules, _ = protocol_rules(protocols)
    result = feedback_curves(snapshot, rules)
    return result if result["curves"] else None
