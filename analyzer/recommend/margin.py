"""Dynamic margin: per asset, a liquidation-threshold schedule that follows the concentration of
dealers' short gamma and of leverage near the price, set before the feedback loop starts.

Where the loop ignites (:mod:`analyzer.graph.feedback`): at the first fall ``x`` (1% grid) where
the selling a further 1% forces, liquidation sales (the liquidation curves: each protocol's own
rule, first keeper step) plus dealers' short-gamma hedges (the gamma map's dealer book and the
linear hedgers), reaches the depth that absorbs a 1% fall (the venues walked down). This is the
static one-step gain of the loss spiral (Brunnermeier & Pedersen 2009, "Market Liquidity and
Funding Liquidity", RFS 22(6)); margin that only rises once the spiral runs feeds it, so the
schedule is set from today's concentration, before the stress (the anti-procyclical reading of
Murphy, Vasios & Vause 2014, "An investigation into the procyclicality of risk-based initial
margin models", Bank of England Financial Stability Paper 29).

**Concentrations** of an asset within the target fall ``T`` (falls 0 … T of today's price, today's
parameters): ``gamma`` = max of short-gamma sales / depth, ``leverage`` = max of liquidation sales
/ depth, ``combined`` = max of their sum / depth (the loop ignites within T exactly when it is at
least 1).

**Schedule.** Rows are the dealer book scaled by ``k`` (0, ½, 1 = today, 1½, 2, 3, 4: the shape of
today's gamma by level held, its size varied). For each row, the smallest number ``n`` of
governance steps by which every liquidation-threshold parameter of the asset
(:attr:`~protocols.base.TunableParameter.margin`, each protocol's own step, e.g. Aave's 50 bps) is
cut such that, after the cut settles at today's prices (:mod:`analyzer.engine.settle`: the
accounts it makes liquidatable are liquidated now, into today's depth), the ignition fall measured
from today's price is beyond ``T`` (or the ratio never reaches 1 on the grid). The cut works by
deleveraging now the accounts whose liquidation would land in the band where short gamma already
eats the depth; a cut never moves an account's liquidation price away by itself. ``n`` is scanned
upwards one step at a time (the ignition fall need not be monotone in ``n``), to each parameter's
floor; a row no cut within the floors fixes is reported with ``threshold_steps`` None.

**What-if.** The row of today's book (``k`` = 1) applied: its ignition fall beside today's, and
the engine's settled-then-shocked cascade at the target fall with today's and the scheduled
thresholds (bad debt, final fall of the asset's price).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.scenarios import ShockScenario
from protocols.base import ParameterChange, TunableParameter

GAMMA_SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
STEP = 0.01


@dataclasses.dataclass
class Curve:
    """An asset's feedback curve, falls from *today's* price (``falls``: 0, 1%, …)."""

    falls: np.ndarray            # fractions of today's price
    liquidation_usd: np.ndarray  # liquidation sales of each 1% band (of the book it was computed on)
    hedging_usd: np.ndarray      # dealers' sales per 1% at each level, today's dealer book (k = 1)
    depth_usd: np.ndarray        # USD that moves the venues one band down

    def ignition(self, k: float) -> float | None:
        """The ignition fall with the dealer book scaled by ``k`` (None: not on the grid)."""
        from analyzer.graph.feedback import feedback_ratio

        return feedback_ratio(self.falls, self.liquidation_usd, k * self.hedging_usd, self.depth_usd)[1]

    def concentrations(self, k: float, target: float) -> dict[str, float]:
        """Peak gamma, leverage and combined flow per 1% over depth per 1%, falls 0 … ``target``."""
        near = self.falls[:-1] <= target + 1e-9
        depth = self.depth_usd[:-1][near]

        def peak(flow: np.ndarray) -> float:
            ratio = np.where(depth > 0, flow[:-1][near] / depth, np.nan)
            return float(np.nanmax(ratio)) if np.isfinite(ratio).any() else 0.0

        return {"gamma": peak(k * self.hedging_usd), "leverage": peak(self.liquidation_usd),
                "combined": peak(self.liquidation_usd + k * self.hedging_usd)}

    def with_liquidation(self, liquidation_usd: np.ndarray) -> Curve:
        return dataclasses.replace(self, liquidation_usd=liquidation_usd)


def falls_to(max_fall: float) -> np.ndarray:
    return np.round(np.arange(0.0, max_fall + STEP / 2, STEP), 10)


def liquidation_profile(prep, asset: int, today_price: float, falls: np.ndarray) -> np.ndarray:
    """Liquidation sales of each band of ``falls`` (from ``today_price``) on the engine state
    ``prep`` (a :class:`~analyzer.engine.prepare.Prepared`, settled or not): each book's oracle
    prices of the asset, of its receipts and of prices derived from it move together to the level,
    and the protocol's own rule says what the first keeper step seizes (as
    :mod:`analyzer.graph.curves` does on a snapshot)."""
    from analyzer.graph.curves import _liquidatable_totals
    from analyzer.graph.feedback import liquidation_bands

    factors = today_price * (1.0 - falls) / float(prep.price_pre[asset])
    seizable = np.zeros(len(falls))
    for slot in prep.slots:
        cols = np.asarray(slot.cols)
        hit = (cols == asset) | (prep.receipt_underlying[cols] == asset)
        if prep.oracle_base is not None:
            hit |= prep.oracle_base[cols] == asset
        if not hit.any():
            continue
        oracle = prep.price_pre[cols] * slot.oracle_scale
        for j, factor in enumerate(factors):
            seizable[j] += _liquidatable_totals(slot.rules, slot.book, np.where(hit, oracle * factor, oracle))[2]
    return liquidation_bands(np.diff(seizable, append=np.nan))


def curve_of(prep, asset: int, falls: np.ndarray) -> Curve:
    """The feedback curve of asset index ``asset`` on the unsettled state ``prep``: depth walked
    down its venues (path-independent for the engine's venue models, so it serves every settled
    state too), hedging from the snapshot's dealers, liquidation sales from its books."""
    from analyzer.graph.feedback import depth_profile, hedging_profile

    today = float(prep.price_pre[asset])
    hedging = hedging_profile(prep.snapshot, str(prep.assets[asset]), -falls)
    venues = prep.venues.get(asset)
    depth = depth_profile(venues, falls) if venues is not None else np.full(len(falls), np.nan)
    return Curve(falls, liquidation_profile(prep, asset, today, falls), hedging, depth)


def margin_parameters(snapshot: Snapshot, asset: str) -> list[tuple[str, TunableParameter]]:
    """(protocol, parameter) of every liquidation-threshold parameter of ``asset``."""
    from analyzer.recommend.evaluate import tunings

    return [(protocol, p) for protocol, tuning in sorted(tunings(snapshot).items())
            for p in tuning.parameters(snapshot) if p.asset == asset and p.margin]


def cut(params: Sequence[tuple[str, TunableParameter]], steps: int) -> list[ParameterChange]:
    """Every parameter ``steps`` governance steps safer, clamped at its floor."""
    out = []
    for protocol, p in params:
        value = round(min(max(p.value + p.tighten * steps * p.step, p.minimum), p.maximum), 6)
        if value != round(p.value, 6):
            out.append(ParameterChange(protocol, p.market, p.asset, p.parameter, value))
    return out


def _max_steps(params: Sequence[tuple[str, TunableParameter]]) -> int:
    return max((int(np.floor(abs(p.value - (p.minimum if p.tighten < 0 else p.maximum)) / p.step + 1e-9))
                for _, p in params), default=0)


def settled_liquidation(snapshot: Snapshot, changes: Sequence[ParameterChange], behaviour: ShockScenario,
                        asset: str, today: Curve, venues: dict | None = None) -> tuple[Curve, int]:
    """``today``'s curve with the liquidation sales of the book after ``changes`` settle at today's
    prices (:mod:`analyzer.engine.settle`), and the number of accounts the settle phase liquidated."""
    from analyzer.engine.prepare import prepare
    from analyzer.engine.settle import settle, settled
    from analyzer.recommend.evaluate import tuned

    prep = prepare(tuned(snapshot, changes), venues=venues, venue_models=behaviour.venue_models or None)
    i = prep.asset(asset, "dynamic margin")
    today_price = float(prep.price_pre[i])
    state, summary = settle(prep, behaviour)
    start = settled(prep, state) if summary.total_accounts else prep
    return today.with_liquidation(liquidation_profile(start, i, today_price, today.falls)), summary.total_accounts


def schedule(snapshot: Snapshot, asset: str, target: float, behaviour: ShockScenario, *,
             scales: Sequence[float] = GAMMA_SCALES, venues: dict | None = None) -> dict[str, Any]:
    """The dynamic-margin schedule of ``asset`` (module docstring) for a target fall ``target``
    (0.3 = 30%), settling with ``behaviour``'s market behaviour; ``venues``: the snapshot's base
    venues for that behaviour (:func:`analyzer.recommend.evaluate.base_venues`), when built."""
    from analyzer.engine.settle import settle_scenario

    if not 0 < target < 0.95:
        raise ContagionError(f"dynamic margin: the target fall must be within (0, 95%), got {target:g}")
    address = snapshot.address_of(asset)
    params = margin_parameters(snapshot, address)
    if not params:
        raise ContagionError(f"dynamic margin: {asset} has no liquidation-threshold parameter a protocol tunes")
    from analyzer.engine.prepare import prepare

    calm = settle_scenario(behaviour)
    prep = prepare(snapshot, venues=venues, venue_models=behaviour.venue_models or None)
    today = curve_of(prep, prep.asset(address, "dynamic margin"), falls_to(min(max(0.5, target + 0.1), 0.95)))
    curves: dict[int, tuple[Curve, int]] = {}

    def at(n: int) -> tuple[Curve, int]:
        if n not in curves:
            curves[n] = settled_liquidation(snapshot, cut(params, n), calm, address, today, venues)
        return curves[n]

    rows = []
    for k in scales:
        needed = next((n for n in range(_max_steps(params) + 1) if _beyond(at(n)[0].ignition(k), target)), None)
        changes = cut(params, needed) if needed is not None else []
        rows.append({"gamma_scale": k, "concentration": today.concentrations(k, target),
                     "ignition_fall_today": today.ignition(k), "threshold_steps": needed,
                     "thresholds": [_threshold(protocol, p, changes) for protocol, p in params],
                     "ignition_fall_scheduled": at(needed)[0].ignition(k) if needed is not None else None,
                     "accounts_settled": at(needed)[1] if needed is not None else None})
    return {"asset": address, "symbol": snapshot.symbol_of().get(address, asset), "target_fall": target,
            "rows": rows, "what_if": what_if(snapshot, address, target, behaviour, rows, scales, venues)}


def _beyond(ignition: float | None, target: float) -> bool:
    return ignition is None or ignition > target + 1e-9


def _threshold(protocol: str, p: TunableParameter, changes: Sequence[ParameterChange]) -> dict[str, Any]:
    new = next((c.value for c in changes if (c.protocol, c.market, c.parameter) == (protocol, p.market, p.parameter)),
               p.value)
    return {"protocol": protocol, "market": p.market, "parameter": p.parameter, "today": p.value, "scheduled": new}


def what_if(snapshot: Snapshot, asset: str, target: float, behaviour: ShockScenario, rows: list[dict],
            scales: Sequence[float], venues: dict | None) -> dict[str, Any] | None:
    """Today's row (k = 1) applied: the engine's cascade at the target fall, settled then shocked,
    with today's and the scheduled thresholds."""
    from analyzer.engine.prepare import prepare
    from analyzer.engine.settle import settle_then_shock
    from analyzer.recommend.evaluate import tuned

    row = next((r for r in rows if r["gamma_scale"] == 1.0), None)
    if row is None or row["threshold_steps"] is None:
        return None
    changes = cut(margin_parameters(snapshot, asset), row["threshold_steps"])
    shock = dataclasses.replace(behaviour, name="dynamic-margin", price_shocks={asset: -target}, venue_shocks={},
                                iv_shocks={}, forced_sales=[])
    out: dict[str, Any] = {"changes": [vars(c) for c in changes], "ignition_fall_today": row["ignition_fall_today"],
                           "ignition_fall_scheduled": row["ignition_fall_scheduled"]}
    for label, snap in (("today", snapshot), ("scheduled", tuned(snapshot, changes))):
        prep = prepare(snap, venues=venues, venue_models=behaviour.venue_models or None)
        result = settle_then_shock(prep, shock)
        i = prep.asset(asset, "dynamic margin")
        out[f"bad_debt_usd_{label}"] = result.total_bad_debt_usd
        out[f"final_fall_{label}"] = float(1.0 - result.stress.price_final[i] / snapshot.price_of()[asset])
    return out


__all__ = ["Curve", "curve_of", "cut", "liquidation_profile", "margin_parameters", "schedule",
           "settled_liquidation", "what_if"]
