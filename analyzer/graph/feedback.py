"""Where the loop ignites: forced flow per 1% move against the depth that absorbs it.

For each asset with a venue, on a grid of falls ``x`` = 0%, 1%, …, ``max_fall`` of its price:

- **liquidation sales** ``liquidation_usd``: the collateral that the protocols' own rules make
  seizable between ``x`` and ``x + 1%`` (first keeper step, USD at the shocked price), from the
  static liquidation curves of the asset (:mod:`analyzer.graph.curves`), all protocols summed;
- **dealer hedging** ``hedging_usd``: USD of the asset dealers sell per 1% move at that level, the
  negative of their gamma exposure there (:mod:`analyzer.options.gammamap`; long-gamma dealers buy,
  giving a negative sale); a hedger known only by its gamma (a ``hedgers`` row whose market has no
  option rows, which the engine hedges linearly, ``sold = net_gamma × ΔS``) sells
  ``−net_gamma × S² / 100`` at the level ``S``;
- **depth** ``depth_usd``: USD of the asset whose sale moves the asset's venues (all of them, as the
  engine routes a flow) from ``x`` to ``x + 1%`` below today's price, by walking copies of the
  venue models down the grid.

``ratio = (liquidation_usd + hedging_usd) / depth_usd`` (``max_ratio`` its largest). Where it is at least 1, the selling a 1%
move forces is larger than what moves the price by 1%: the loop accelerates by itself (the
static, one-step reading of the cascade's gain; cf. Brunnermeier & Pedersen 2009, "Market
Liquidity and Funding Liquidity", RFS 22(6), for the loss spiral, and the engine's
``gamma_feedback`` for the dealer-only gain). ``ignition_fall`` is the smallest fall on the grid
where the ratio reaches 1 (None when it never does).
"""

from __future__ import annotations

import numpy as np

from analyzer.engine.impact import AssetVenues
from analyzer.engine.prepare import redeemed_assets, venues_of
from analyzer.engine.roots import bracket_root
from analyzer.errors import ContagionError
from analyzer.graph.curves import liquidation_curves
from analyzer.model import Snapshot
from protocols.base import Rules

STEP = 0.01


def _units_to_fall(venues: AssetVenues, target: float, guess: float = 1.0) -> float:
    """Asset units whose sale takes ``venues``' mid price to ``target`` (each trial a routed sale on
    a copy; ``guess`` starts the bracket): the smallest found, to 1e-12, whose mid is at ``target``
    or below."""
    def above_target(units: float) -> float:
        trial = venues.copy()
        trial.trade(units)
        return trial.mid_price() - target

    gap = venues.mid_price() - target
    if gap <= 0:
        return 0.0
    lo, hi = 0.0, max(guess, 1e-12)
    while (gap_hi := above_target(hi)) > 0 and hi <= 1e30:
        lo, gap, hi = hi, gap_hi, hi * 2.0
    if gap_hi >= 0:         # beyond every venue's liquidity, or exactly at the target
        return hi
    _, hi = bracket_root(above_target, lo, hi, gap, gap_hi, 1e-12)
    return hi


def depth_profile(venues: AssetVenues, falls: np.ndarray) -> np.ndarray:
    """USD that moves ``venues`` from each fall to the next one down the grid (last: NaN)."""
    start = venues.mid_price()
    walking = venues.copy()
    out = np.full(len(falls), np.nan)
    guess = 1.0
    for k in range(len(falls) - 1):
        target = start * (1.0 - falls[k + 1])
        units = _units_to_fall(walking, target, guess)
        out[k] = float(walking.trade(units).amount_out) if units > 0 else 0.0   # USD proceeds of the sale
        guess = units or guess      # the next step of the grid takes about as much as this one
    return out


def linear_hedger_gamma(snapshot: Snapshot) -> dict[str, float]:
    """``net_gamma`` (base units per USD, signed) summed by asset over the hedgers the engine hedges
    linearly: those whose (protocol, market) has no rows in ``options`` (the others are repriced
    from their rows, in the dealer book)."""
    hedgers = snapshot.hedgers
    if len(hedgers) == 0:
        return {}
    priced = set(zip(snapshot.options["protocol"], snapshot.options["market"], strict=True))
    out: dict[str, float] = {}
    for protocol, market, asset, gamma in zip(hedgers["protocol"], hedgers["market"], hedgers["asset"],
                                              hedgers["net_gamma"], strict=True):
        if (protocol, market) not in priced and np.isfinite(gamma) and gamma != 0:
            out[str(asset)] = out.get(str(asset), 0.0) + float(gamma)
    return out


def feedback_curves(snapshot: Snapshot, rules: dict[str, Rules], max_fall: float = 0.5) -> dict:
    """The feedback curve of every asset that has both a venue and forced flow (see the module
    docstring), as JSON-ready records: ``{"falls": [...], "curves": [{"asset", "symbol",
    "liquidation_usd", "hedging_usd", "depth_usd", "ratio", "ignition_fall"}]}``."""
    if not 0 < max_fall < 1:
        raise ContagionError(f"feedback curve: max_fall must be in (0, 1), got {max_fall}")
    falls = np.round(np.arange(0.0, max_fall + STEP / 2, STEP), 10)
    try:
        venues = venues_of(snapshot, redeemed_assets(snapshot))
    except ContagionError as exc:     # a hand-made snapshot without venues: no curve, and why
        return {"falls": falls.tolist(), "curves": [], "skipped": str(exc)}
    curves_by_asset: dict[str, np.ndarray] = {}
    static = liquidation_curves(snapshot, tuple(float(f) for f in falls), rules)
    for curve in static["curves"]:
        seizable = np.asarray(curve["seizable_usd"], dtype=float)
        curves_by_asset[curve["asset"]] = curves_by_asset.get(curve["asset"], 0) + np.diff(seizable, append=np.nan)
    from analyzer.options.gammamap import DealerBook

    dealers = DealerBook.from_snapshot(snapshot)
    linear = linear_hedger_gamma(snapshot)
    symbols = snapshot.symbol_of()
    out = []
    for asset in sorted(set(curves_by_asset) | set(dealers.frame["asset"]) | set(linear)):
        if asset not in venues:
            continue
        hedging = hedging_profile(snapshot, asset, -falls, dealers, linear)
        liquidation = liquidation_bands(curves_by_asset.get(asset, np.zeros(len(falls))))
        depth = depth_profile(venues[asset], falls)
        ratio, ignition = feedback_ratio(falls, liquidation, hedging, depth)
        out.append({"asset": asset, "symbol": symbols.get(asset, asset), "liquidation_usd": liquidation.tolist(),
                    "hedging_usd": hedging.tolist(), "depth_usd": depth.tolist(), "ratio": ratio.tolist(),
                    "ignition_fall": ignition,
                    "max_ratio": float(np.nanmax(ratio)) if np.isfinite(ratio).any() else None})
    return {"falls": falls.tolist(), "curves": out}


def hedging_profile(snapshot: Snapshot, asset: str, spot_moves: np.ndarray, dealers=None,
                    linear: dict[str, float] | None = None) -> np.ndarray:
    """USD of ``asset`` dealers sell per 1% move at each of ``spot_moves`` (fractions of the
    snapshot's price: -0.1 = 10% below), from the gamma map's dealer book and the linear hedgers
    (module docstring). ``dealers`` / ``linear``: the snapshot's, when already built."""
    from analyzer.options.gammamap import DealerBook

    dealers = DealerBook.from_snapshot(snapshot) if dealers is None else dealers
    linear = linear_hedger_gamma(snapshot) if linear is None else linear
    mine = DealerBook(dealers.frame[dealers.frame["asset"] == asset].reset_index(drop=True))
    moves = np.asarray(spot_moves, dtype=float)
    hedging = np.array([-mine.exposures(float(m))["gex_usd_per_pct"].sum() for m in moves]) \
        if len(mine.frame) else np.zeros(len(moves))
    level = snapshot.price_of().get(asset, np.nan) * (1.0 + moves)
    return hedging - linear.get(asset, 0.0) * level * level / 100.0


def liquidation_bands(seizable_band_usd: np.ndarray) -> np.ndarray:
    """The liquidation sales of each band, negative differences of the static curve clipped to 0."""
    liquidation = np.asarray(seizable_band_usd, dtype=float)
    return np.where(np.isfinite(liquidation), np.maximum(liquidation, 0.0), np.nan)


def feedback_ratio(falls: np.ndarray, liquidation: np.ndarray, hedging: np.ndarray, depth: np.ndarray
                   ) -> tuple[np.ndarray, float | None]:
    """``(liquidation + hedging) / depth`` on the grid and the smallest fall where it reaches 1."""
    ratio = np.where(depth > 0, (liquidation + hedging) / depth, np.nan)
    hits = np.flatnonzero(np.nan_to_num(ratio, nan=-1.0) >= 1.0)
    return ratio, (float(falls[hits[0]]) if len(hits) else None)

