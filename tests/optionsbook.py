"""A small lending book whose asset 1 is WETH at $3,000, for the options tests (the samples' ETH
options sit on it)."""

from __future__ import annotations

import json
from pathlib import Path

from analyzer.model import Snapshot
from benchmarks.synthetic import synthetic_snapshot


def write_weth_book(path: Path, n_positions: int, seed: int) -> Path:
    """A synthetic Aave-like book with asset 1 renamed WETH and priced $3,000 (oracle and pool)."""
    base = synthetic_snapshot(n_positions, n_markets=1, n_assets=3, seed=seed)
    assets = base.assets.copy()
    assets.loc[1, "symbol"], assets.loc[1, "price_usd"] = "WETH", 3000.0
    markets = base.markets.copy()
    markets.loc[markets["asset"] == assets.loc[1, "address"], "oracle_price_usd"] = 3000.0
    venues = base.venues.copy()
    row = venues.index[venues["asset"] == assets.loc[1, "address"]][0]
    params = json.loads(venues.loc[row, "params"])
    params["reserve_quote"] = params["reserve_asset"] * 3000.0
    venues.loc[row, "params"] = json.dumps(params)
    Snapshot(meta=base.meta, assets=assets, markets=markets, accounts=base.accounts, positions=base.positions,
             venues=venues).write(path)
    return path
