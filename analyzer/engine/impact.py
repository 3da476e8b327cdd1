"""Where flows hit prices: each asset's venues, built from the snapshot, and how a net flow is routed.

The generic models (constant product, square-root law, linear depth) live in
:mod:`analyzer.engine.venues` and are re-exported here; venue plugins add exact pool models
(``Plugin.venue_models``, e.g. Uniswap V3 in ``protocols/uniswap_v3/venue.py``), found through the
registry by :func:`venue_model_classes`. The engine calls, once per asset and
round, ``venues[asset].trade(net_asset_amount)`` (> 0 sells, < 0 buys, whole tokens) and reads
the new mid price from the result.

``venues`` rows and their ``params`` JSON (numbers; big integers as decimal strings)
------------------------------------------------------------------------------------
model="constant_product"  reserve_asset, reserve_quote (whole tokens), fee (fraction, default 0.003)
model="sqrt_law"          sigma (daily vol, fraction), daily_volume (asset units/day), y (default 1.0),
                          price_usd (optional: p0, default the snapshot's asset price)
model="linear"            depth_1pct (asset units that move the price 1%), price_usd (optional, as above)
model="order_book"        bids, asks: [[price_usd, size], ...] levels of a centralised book (see
                          :mod:`analyzer.engine.order_book` for the snapshot format)
(a plugin's model documents its own params beside its class). Every model also accepts quote_price_usd (default: the snapshot's price of quote_asset, or 1.0
when the quote is not an asset of the snapshot, i.e. USD itself).

Routing (the split rule)
------------------------
An asset with several venues splits a flow as an aggregator does: fee-adjusted marginal prices
equalised across the venues used, a venue used only when its share pays its swap's gas
(``AssetVenues.swap_gas_usd``), never worse than the best single venue
(:func:`analyzer.engine.routing.route`). No routing through intermediate pools; arbitrage between
venues after the trade is not modelled here. ``weights`` (each venue's depth within ±2% of its
mid) weighs the venues' mids into the asset's one price.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzer.engine.order_book import OrderBookDepth
from analyzer.engine.routing import route
from analyzer.engine.venues import (
    ConstantProduct,
    LinearDepth,
    SqrtLaw,
    TradeResult,
    VenueModel,
    number_param,
)
from analyzer.errors import ContagionError

__all__ = ["AssetVenues", "ConstantProduct", "LinearDepth", "SqrtLaw", "TradeResult", "VenueModel",
           "ROUTING_DEPTH_FRACTION", "assets_needing_venue", "build_venues", "make_venue", "venue_model_classes",
           "venue_row"]

ROUTING_DEPTH_FRACTION = 0.02   # the ±2% band whose depth sets each venue's share of a flow
GENERIC_MODELS = (ConstantProduct, SqrtLaw, LinearDepth, OrderBookDepth)


class AssetVenues:
    """All venues of one asset. ``trade`` routes a net flow across them (see the module's split rule)
    and returns the aggregate: asset units on the asset side, **USD** on the quote side (venues may
    quote in different tokens, e.g. USDC and WETH)."""

    def __init__(self, asset: str, venues: list[VenueModel], swap_gas_usd: float = 0.0):
        if not venues:
            raise ContagionError(f"asset {asset}: AssetVenues needs at least one venue")
        self.asset = asset
        self.venues = venues
        self.swap_gas_usd = float(swap_gas_usd)   # gas of one swap, USD: a venue's share must pay it

    def split(self, asset_amount: float) -> np.ndarray:
        """Signed asset units per venue for a net flow: :func:`analyzer.engine.routing.route`."""
        return route(self.venues, asset_amount, self.swap_gas_usd)

    def weights(self, sell: bool = True) -> np.ndarray:
        """Each venue's share of a flow: depth within ROUTING_DEPTH_FRACTION on that side, normalised."""
        depth = np.array([v.depth(ROUTING_DEPTH_FRACTION, sell) for v in self.venues], dtype=np.float64)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        total = depth.sum()
        if total <= 0:
            return np.full(len(self.venues), 1.0 / len(self.venues))
        return depth / total

    def mid_price(self) -> float:
        """USD per asset: the venues' mids weighted by their two-sided depth within ±2%."""
        if len(self.venues) == 1:
            return self.venues[0].mid_price()
        mids = np.array([v.mid_price() for v in self.venues])
        return float(mids @ ((self.weights(True) + self.weights(False)) / 2.0))

    def trade(self, asset_amount: float) -> TradeResult:
        if not math.isfinite(asset_amount):
            raise ContagionError(f"asset {self.asset}: flow must be finite, got {asset_amount!r}")
        if len(self.venues) == 1:
            venue = self.venues[0]
            result = venue.trade(asset_amount)
            if asset_amount >= 0:
                return TradeResult(result.amount_in, result.amount_out * venue.quote_price_usd,
                                   result.price_before, result.price_after)
            return TradeResult(result.amount_in * venue.quote_price_usd, result.amount_out,
                               result.price_before, result.price_after)
        sell = asset_amount >= 0
        amounts = self.split(asset_amount)
        weights = amounts / asset_amount if asset_amount != 0 else self.weights(sell)
        before = np.array([v.mid_price() for v in self.venues])
        asset_side = quote_usd = 0.0
        for venue, amount in zip(self.venues, amounts, strict=True):   # a handful of venues per asset
            if amount == 0:
                continue
            result = venue.trade(float(amount))
            if sell:
                asset_side += result.amount_in
                quote_usd += result.amount_out * venue.quote_price_usd
            else:
                asset_side += result.amount_out
                quote_usd += result.amount_in * venue.quote_price_usd
        after = np.array([v.mid_price() for v in self.venues])
        price_before, price_after = float(before @ weights), float(after @ weights)
        if sell:
            return TradeResult(asset_side, quote_usd, price_before, price_after)
        return TradeResult(quote_usd, asset_side, price_before, price_after)

    def set_quote_prices(self, prices_usd: Mapping[str, float]) -> None:
        """Update the USD price of each venue's quote token (e.g. WETH moved during a cascade)."""
        for venue in self.venues:
            if venue.quote in prices_usd:
                venue.quote_price_usd = float(prices_usd[venue.quote])

    def copy(self) -> AssetVenues:
        return AssetVenues(self.asset, [v.copy() for v in self.venues], self.swap_gas_usd)

    def __repr__(self) -> str:
        return f"AssetVenues({self.asset}, {self.venues!r})"


def venue_row(protocol: str, venue: str, asset: str, quote_asset: str, model: str,
              params: Mapping[str, Any]) -> dict[str, str]:
    """One ``venues`` table row; ``params`` is stored as JSON (ints beyond 2**53 should be strings)."""
    known = venue_model_classes()
    if model not in known:
        raise ContagionError(f"venue {venue}: model {model!r} is not one of {', '.join(sorted(known))}")
    return {"protocol": protocol, "venue": venue, "asset": asset, "quote_asset": quote_asset, "model": model,
            "params": json.dumps(dict(params), sort_keys=True)}


def venue_model_classes() -> dict[str, type[VenueModel]]:
    """Every venue model by its ``model`` name: the generic ones of :mod:`analyzer.engine.venues`
    and those the plugins declare (``Plugin.venue_models``), found through the registry."""
    from protocols import plugins

    found: dict[str, type[VenueModel]] = {cls.model: cls for cls in GENERIC_MODELS}
    for plugin in plugins().values():
        for cls in plugin.venue_models:
            if found.get(cls.model, cls) is not cls:
                raise ContagionError(f"venue model {cls.model!r} of plugin {plugin.name} is already defined by "
                                     f"{found[cls.model].__module__}")
            found[cls.model] = cls
    return found


def make_venue(model: str, asset: str, quote: str, params: Mapping[str, Any], *, asset_price_usd: float | None,
               quote_price_usd: float = 1.0, venue: str = "", where: str = "") -> VenueModel:
    """A venue model from its name and params (the ``venues.params`` format of the model's class)."""
    where = where or f"venue {venue or asset}"
    classes = venue_model_classes()
    if model not in classes:
        raise ContagionError(f"{where}: model {model!r} is not one of {', '.join(sorted(classes))}")
    return classes[model].from_params(asset, quote, params, asset_price_usd=asset_price_usd,
                                      quote_price_usd=number_param(params, "quote_price_usd", where, quote_price_usd),
                                      venue=venue, where=where)


def _params_json(text: str, where: str) -> dict:
    try:
        params = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ContagionError(f"{where}: params is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ContagionError(f"{where}: params must be a JSON object")
    return params


def reprice(venues: Mapping[int, AssetVenues], price: np.ndarray, price_pre: np.ndarray,
            mid_pre: Mapping[int, float], assets: np.ndarray, max_passes: int = 8) -> None:
    """Set ``price[a]`` (USD) of every venue asset ``a`` from its venues, in place.

    ``price_pre[a] * mid / mid_pre[a]``: the snapshot's price moved as the venues' mid moved. Each
    venue's quote token is valued at its *current* price, so quotes are priced first (WETH from
    WETH/USDC) and then what trades against them (wstETH/WETH): a later pass reprices only the
    assets one of whose quotes moved in the pass before, until none did.
    """
    todo = list(venues)
    for _ in range(max_passes):
        quotes = dict(zip(assets, price, strict=True))
        moved = set()
        for a in todo:
            asset_venues = venues[a]
            asset_venues.set_quote_prices(quotes)
            new = price_pre[a] * (asset_venues.mid_price() / mid_pre[a])
            if new != price[a]:
                moved.add(assets[a])
            price[a] = new
        todo = [a for a, asset_venues in venues.items() if any(v.quote in moved for v in asset_venues.venues)]
        if not todo:
            return


def assets_needing_venue(snapshot, exclude: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Assets a cascade may sell, so that must have a venue: those held as collateral, hedged by an
    option pool, or posted as option collateral, except the quote assets of venues (the numeraire
    the flows settle in) and ``exclude`` (receipts, which are redeemed and their underlying sold)."""
    needed = _collateral_assets(snapshot.positions)
    needed |= set(snapshot.hedgers["asset"]) | set(snapshot.options["collateral_asset"])
    return needed - set(snapshot.venues["quote_asset"]) - {""} - set(exclude)


def _collateral_assets(positions) -> set[str]:
    """The assets of the collateral positions: by Arrow over the two columns where they are Arrow
    text (a scan's: 2·10^5 positions in 4 ms, where a mask of the frame took every column's rows)."""
    import pandas as pd
    import pyarrow.compute as pc

    side, asset = positions["side"].array, positions["asset"].array
    if not (isinstance(side, pd.arrays.ArrowStringArray) and isinstance(asset, pd.arrays.ArrowStringArray)):
        return set(positions.loc[positions["side"] == "collateral", "asset"].unique())
    held = pc.filter(asset.__arrow_array__(), pc.equal(side.__arrow_array__(), "collateral"))
    return set(pc.unique(held).to_pylist())


def build_venues(snapshot, models_from_scenario: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> dict[str, AssetVenues]:
    """Every asset's venues by asset address, from ``snapshot.venues`` plus scenario models.

    ``models_from_scenario``: by asset symbol or address, ``{"model": "sqrt_law", "sigma": ..., ...}``
    (optionally ``"quote"``: a quote asset symbol/address, default USD); it supplies a venue for an
    asset that has none in the snapshot (snapshot venues win when both exist).

    Assets that must have a venue: :func:`assets_needing_venue`. One of them with no venue and no
    scenario model is an error naming it: there is no silent zero impact.
    """
    prices = snapshot.price_of()
    symbols = snapshot.symbol_of()
    by_asset: dict[str, list[VenueModel]] = {}
    for row in snapshot.venues.itertuples(index=False):
        where = f"venues: {row.protocol} {row.venue} ({symbols.get(row.asset, row.asset)})"
        params = _params_json(row.params, where)
        venue = make_venue(row.model, row.asset, row.quote_asset, params, asset_price_usd=prices.get(row.asset),
                           quote_price_usd=prices.get(row.quote_asset, 1.0), venue=row.venue, where=where)
        by_asset.setdefault(row.asset, []).append(venue)
    for key, spec in (models_from_scenario or {}).items():
        asset = snapshot.address_of(key)
        if asset in by_asset:
            continue
        where = f"scenario venue model for {symbols.get(asset, key)}"
        if not isinstance(spec, Mapping) or "model" not in spec:
            raise ContagionError(f"{where}: expected a table with a 'model' key (one of {', '.join(sorted(venue_model_classes()))})")
        params = {k: v for k, v in spec.items() if k not in ("model", "quote")}
        quote = snapshot.address_of(spec["quote"]) if spec.get("quote") else ""
        by_asset[asset] = [make_venue(str(spec["model"]), asset, quote, params, asset_price_usd=prices.get(asset),
                                      quote_price_usd=prices.get(quote, 1.0), venue=f"scenario:{spec['model']}",
                                      where=where)]
    missing = sorted(symbols.get(a, a) for a in assets_needing_venue(snapshot) - set(by_asset))
    if missing:
        raise ContagionError(f"no price-impact venue for {', '.join(missing)}: the snapshot has no venues row for "
                             f"it and the scenario gives no model (a snapshot `contagion scan` writes has one for "
                             f"every asset; or add e.g. {{model = \"sqrt_law\", sigma = 0.04, daily_volume = ...}})")
    return {asset: AssetVenues(asset, venues) for asset, venues in by_asset.items()}
