"""The dealer gamma map: dealer gamma, vanna and charm by strike and expiry, and the flip level.

Dealers' books come from every option source of a snapshot:

- off-chain venues (table ``option_instruments``): ``dealer_position`` per instrument, at the
  instrument's own mark IV and forward, timed from the data's ``as_of``;
- on-chain option markets (tables ``options`` + ``hedgers``): the market maker (Lyra's pool) is the
  counterparty of every user position, so its position is the opposite of the users'; valued at the
  underlying's oracle price and IV (``assets``), timed from the snapshot's block.

Units are those of :mod:`analyzer.options.greeks`: ``gex_usd_per_pct`` is the USD of underlying
that dealers' delta hedges trade per 1% move (negative = dealers short gamma: their hedges sell
into a fall and buy into a rise, the feedback that amplifies a cascade).

The zero-gamma ("flip") level of an underlying is the spot at which the dealers' total gamma
changes sign, found by repricing the whole book (IV and time held) on a grid of spot moves and
interpolating linearly between the two grid points that bracket the sign change nearest today's
spot (SqueezeMetrics, "Gamma Exposure (GEX)", 2017, for the measure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.model import Snapshot
from analyzer.options.greeks import SECONDS_PER_YEAR, bs_greeks, dollar_exposures

DEFAULT_GRID = np.round(np.arange(-0.5, 0.5001, 0.01), 10)
"""Spot moves (fractions) the flip level is searched over: −50% … +50% in 1% steps."""


@dataclass
class DealerBook:
    """Every dealer option position of a snapshot as rows (see the module docstring)."""

    frame: pd.DataFrame   # source, instrument, asset, symbol, kind, strike, expiry, years, forward, iv, position

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> DealerBook:
        symbol = snapshot.symbol_of()
        parts = []
        inst = snapshot.option_instruments
        if len(inst):
            parts.append(pd.DataFrame({
                "source": inst["venue"].astype(str), "instrument": inst["instrument"].astype(str),
                "asset": inst["asset"].astype(str), "kind": inst["kind"].astype(str),
                "strike": inst["strike"].to_numpy(float), "expiry": inst["expiry"].to_numpy(np.int64),
                "years": (inst["expiry"] - inst["as_of"]).to_numpy(float) / SECONDS_PER_YEAR,
                "forward": inst["underlying_price"].to_numpy(float), "iv": inst["mark_iv"].to_numpy(float),
                "position": inst["dealer_position"].to_numpy(float)}))
        opts = snapshot.options
        if len(opts):
            market_asset = dict(zip(zip(snapshot.hedgers["protocol"], snapshot.hedgers["market"], strict=True),
                                    snapshot.hedgers["asset"], strict=True))
            market_asset.update({(p, m): a for p, m, a in zip(snapshot.markets["protocol"], snapshot.markets["market"],
                                                                snapshot.markets["asset"], strict=True)
                                 if (p, m) not in market_asset})
            asset = [market_asset.get((p, m), "") for p, m in zip(opts["protocol"], opts["market"], strict=True)]
            price, iv = snapshot.price_of(), dict(zip(snapshot.assets["address"], snapshot.assets["iv"], strict=True))
            now = int(snapshot.meta.get("block_timestamp", 0) or 0)
            user = np.where(opts["side"] == "long", 1.0, -1.0) * opts["size"].to_numpy(float)
            parts.append(pd.DataFrame({
                "source": opts["protocol"].astype(str), "instrument": opts["position_id"].astype(str),
                "asset": asset, "kind": opts["kind"].astype(str), "strike": opts["strike"].to_numpy(float),
                "expiry": opts["expiry"].to_numpy(np.int64),
                "years": (opts["expiry"].to_numpy(np.int64) - now) / SECONDS_PER_YEAR,
                "forward": [price.get(a, np.nan) for a in asset], "iv": [iv.get(a, np.nan) for a in asset],
                "position": -user}))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["source", "instrument", "asset", "kind", "strike", "expiry", "years", "forward", "iv", "position"])
        frame = frame[np.isfinite(frame["forward"].astype(float)) & np.isfinite(frame["iv"].astype(float))
                      & (frame["years"].astype(float) > 0)].reset_index(drop=True)
        frame["symbol"] = [symbol.get(a, a) for a in frame["asset"]]
        return cls(frame)

    def exposures(self, spot_move: float = 0.0) -> pd.DataFrame:
        """Per-row dollar exposures with every forward moved by ``spot_move`` (a fraction)."""
        f = self.frame
        forward = f["forward"].to_numpy(float) * (1.0 + spot_move)
        greeks = bs_greeks((f["kind"] == "call").to_numpy(bool), forward, f["strike"].to_numpy(float),
                           f["years"].to_numpy(float), f["iv"].to_numpy(float))
        return f.assign(**dollar_exposures(f["position"].to_numpy(float), forward, greeks))


@dataclass
class GammaMap:
    """The gamma map of a snapshot's dealers (tables in USD, see the module docstring)."""

    by_strike: pd.DataFrame    # symbol, asset, strike, gex_usd_per_pct, vanna_usd_per_vol_pt, charm_usd_per_day
    by_expiry: pd.DataFrame    # symbol, asset, expiry, the same three measures
    by_source: pd.DataFrame    # symbol, asset, source, the same three measures, instruments
    profile: pd.DataFrame      # symbol, asset, spot_move, spot_usd, gex_usd_per_pct (total over the grid)
    summary: pd.DataFrame      # symbol, asset, spot_usd, totals, flip_usd (NaN: no sign change on the grid)

    def to_json(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
                    for row in frame.to_dict(orient="records")]
        return {name: records(getattr(self, name)) for name in ("summary", "by_source", "by_expiry", "by_strike")}


MEASURES = ["gex_usd_per_pct", "vanna_usd_per_vol_pt", "charm_usd_per_day"]


def flip_level(moves: np.ndarray, gex: np.ndarray, spot: float) -> float:
    """Spot where ``gex`` (on the grid of ``moves``) changes sign nearest today's; NaN when none.

    >>> round(flip_level(np.array([-0.1, 0.0, 0.1]), np.array([-2.0, -1.0, 1.0]), 100.0), 6)
    105.0
    """
    sign = np.sign(gex)
    crossings = np.flatnonzero((sign[:-1] * sign[1:] < 0) | ((sign[:-1] != 0) & (sign[1:] == 0)))
    if len(crossings) == 0:
        return float("nan")
    i = crossings[np.argmin(np.abs(moves[crossings] + moves[crossings + 1]))]
    x0, x1, g0, g1 = moves[i], moves[i + 1], gex[i], gex[i + 1]
    move = x0 - g0 * (x1 - x0) / (g1 - g0)
    return float(spot * (1.0 + move))


def gamma_map(snapshot: Snapshot, grid: np.ndarray = DEFAULT_GRID) -> GammaMap:
    """The dealer gamma map of ``snapshot`` (empty tables when it holds no options)."""
    book = DealerBook.from_snapshot(snapshot)
    now = book.exposures()
    keys = ["symbol", "asset"]
    by_strike = now.groupby(keys + ["strike"], as_index=False)[MEASURES].sum()
    by_expiry = now.groupby(keys + ["expiry"], as_index=False)[MEASURES].sum()
    by_source = now.groupby(keys + ["source"], as_index=False).agg(
        **{m: (m, "sum") for m in MEASURES}, instruments=("instrument", "count"))
    price = snapshot.price_of()
    profiles, rows = [], []
    for (symbol, asset), _ in now.groupby(keys):
        mine = DealerBook(book.frame[book.frame["asset"] == asset].reset_index(drop=True))
        gex = np.array([mine.exposures(float(x))["gex_usd_per_pct"].sum() for x in grid])
        spot = float(price.get(asset, np.nan))
        profiles.append(pd.DataFrame({"symbol": symbol, "asset": asset, "spot_move": grid,
                                      "spot_usd": spot * (1.0 + grid), "gex_usd_per_pct": gex}))
        totals = now[now["asset"] == asset][MEASURES].sum()
        rows.append({"symbol": symbol, "asset": asset, "spot_usd": spot, **totals.to_dict(),
                     "flip_usd": flip_level(grid, gex, spot)})
    profile = pd.concat(profiles, ignore_index=True) if profiles else pd.DataFrame(
        columns=keys + ["spot_move", "spot_usd", "gex_usd_per_pct"])
    summary = pd.DataFrame(rows, columns=keys + ["spot_usd", *MEASURES, "flip_usd"])
    return GammaMap(by_strike, by_expiry, by_source, profile, summary)
