"""Centralised-exchange depth: the venue of an asset that no on-chain venue of a scan trades.

A liquidator who cannot sell on a pool sells on a centralised exchange. Its depth follows the
square-root law of market impact (Almgren et al. 2005; Tóth et al. 2011, "Anomalous price impact
and the critical nature of liquidity", PRX 1, 021006): a sale of Q moves the price by
``Y σ sqrt(Q / V)`` for daily volatility σ and daily volume V (:class:`analyzer.engine.venues.SqrtLaw`).
σ, V and Y per asset symbol come from the shipped parameter file ``centralised_depth.toml``
(beside this module, each entry with its source), with a generic default for unlisted assets.

:func:`with_default_depth` is what ``scan`` applies: every asset a cascade may sell that has no
venue row gets a ``sqrt_law`` row of protocol :data:`PROTOCOL`, and the snapshot's
``meta["assumed_depth"]`` names each such asset with the parameters and source used, so that
``simulate``, ``sweep``, ``graph`` and the report can say which depth was assumed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import ContagionError

PARAMETER_FILE = Path(__file__).with_name("centralised_depth.toml")
PROTOCOL = "centralised-depth"


@dataclass(frozen=True)
class DepthParameters:
    """Square-root-law parameters of one asset: ``sigma`` (daily volatility, fraction),
    ``daily_volume_usd`` (USD per day), ``y`` (prefactor), ``source`` (where they come from); or
    an order-book snapshot ``order_book`` (``bids``, ``asks``, ``source``: the format of
    :mod:`analyzer.engine.order_book`), which then gives the asset's depth instead."""

    sigma: float
    daily_volume_usd: float
    y: float
    source: str
    order_book: dict | None = None


def _order_book(table: Any, where: str) -> DepthParameters:
    from analyzer.engine.order_book import book_side

    if not isinstance(table, dict):
        raise ContagionError(f"{where}: expected a table with bids, asks and source")
    bids = book_side(table.get("bids"), f"{where}.bids", descending=True)
    asks = book_side(table.get("asks"), f"{where}.asks", descending=False)
    if bids[0][0] >= asks[0][0]:
        raise ContagionError(f"{where}: the best bid must be below the best ask")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ContagionError(f"{where}: every order book names its source")
    volume = float(bids[0] @ bids[1] + asks[0] @ asks[1])     # the book's USD size, for the console
    return DepthParameters(0.0, volume, 1.0, source, {"bids": table["bids"], "asks": table["asks"]})


def _entry(table: Any, where: str) -> DepthParameters:
    if isinstance(table, dict) and "order_book" in table:
        return _order_book(table["order_book"], f"{where}.order_book")
    if not isinstance(table, dict):
        raise ContagionError(f"{where}: expected a table with sigma, daily_volume_usd, y, source")
    values = {}
    for key in ("sigma", "daily_volume_usd", "y"):
        value = table.get(key, 1.0 if key == "y" else None)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
            raise ContagionError(f"{where}: {key} must be a positive number, got {value!r}")
        values[key] = float(value)
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ContagionError(f"{where}: every entry names its source")
    return DepthParameters(values["sigma"], values["daily_volume_usd"], values["y"], source)


def load_parameters(path: str | Path = PARAMETER_FILE) -> tuple[dict[str, DepthParameters], DepthParameters]:
    """(parameters by asset symbol, the generic default) from a parameter file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ContagionError(f"centralised depth parameters {path} do not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"{path}: not valid TOML ({exc})") from None
    default = _entry(data.get("default"), f"{path}: [default]")
    assets = data.get("assets", {})
    if not isinstance(assets, dict):
        raise ContagionError(f"{path}: [assets] must be a table of asset symbols")
    return {symbol: _entry(table, f"{path}: [assets.{symbol}]") for symbol, table in assets.items()}, default


def assumed_depth(snapshot) -> dict[str, dict]:
    """What the snapshot says it assumed: ``{symbol: {model, sigma, daily_volume_usd, y, source}}``."""
    return dict(snapshot.meta.get("assumed_depth") or {})


def describe(assumed: dict[str, dict]) -> str:
    """One line naming the assumed depth per asset, for the console and reports ("" when none)."""
    if not assumed:
        return ""
    parts = [f"{symbol} (order book: ${entry['daily_volume_usd']:,.0f} on its levels)"
             if entry.get("model") == "order_book" else
             f"{symbol} (σ {entry['sigma']:g}/day, ${entry['daily_volume_usd']:,.0f}/day"
             f"{', generic default' if entry.get('generic') else ''})" for symbol, entry in sorted(assumed.items())]
    return "centralised depth assumed (square-root law or order book, no on-chain venue): " + ", ".join(parts)


def with_default_depth(snapshot, path: str | Path = PARAMETER_FILE):
    """``snapshot`` with a square-root-law venue row for every asset that needs a venue and has
    none (:func:`analyzer.engine.impact.assets_needing_venue`), recorded in ``meta["assumed_depth"]``.
    An asset without a positive price cannot be given a depth in asset units and is left out (the
    engine then names it)."""
    from analyzer.engine.impact import assets_needing_venue, venue_row
    from analyzer.model import concat_tables, receipt_claim

    addresses = snapshot.assets["address"].tolist()     # lists: not each value through pandas
    listed = set(addresses)
    # a receipt is redeemed and its underlying sold; the native coin is sold as its wrapped token
    redeemed = {a for a, text in zip(addresses, snapshot.assets["receipt_of"].fillna("").tolist(), strict=True)
                if (claim := receipt_claim(text)) and claim.underlying in listed}
    redeemed |= set(snapshot.wrapped_native_of())
    missing = assets_needing_venue(snapshot, redeemed) - set(snapshot.venues["asset"].tolist())
    if not missing:
        return snapshot
    by_symbol, default = load_parameters(path)
    symbols, prices = snapshot.symbol_of(), snapshot.price_of()
    rows, assumed = [], dict(snapshot.meta.get("assumed_depth") or {})
    for asset in sorted(missing):
        price = prices.get(asset, 0.0)
        if not (price > 0 and math.isfinite(price)):
            continue
        symbol = symbols.get(asset, asset)
        entry = by_symbol.get(symbol, default)
        if entry.order_book is not None:
            rows.append(venue_row(PROTOCOL, f"centralised:{symbol}", asset, "", "order_book",
                                  {**entry.order_book, "source": entry.source}))
        else:
            rows.append(venue_row(PROTOCOL, f"centralised:{symbol}", asset, "", "sqrt_law",
                                  {"sigma": entry.sigma, "daily_volume": entry.daily_volume_usd / price, "y": entry.y,
                                   "daily_volume_usd": entry.daily_volume_usd, "source": entry.source}))
        described = {k: v for k, v in asdict(entry).items() if k != "order_book"}
        assumed[symbol] = {"model": "sqrt_law" if entry.order_book is None else "order_book", **described,
                           "generic": symbol not in by_symbol,
                           "parameters": PARAMETER_FILE.name if Path(path) == PARAMETER_FILE else str(path)}
    snapshot.venues = concat_tables("venues", [snapshot.venues, rows])    # the table as it is, the rows after it
    snapshot.meta["assumed_depth"] = assumed
    return snapshot


def centralised_venue(asset: str, symbol: str, mid_usd: float, path: str | Path = PARAMETER_FILE):
    """The CEX venue of an asset that has pools, for per-round arbitrage (``cex_arbitrage``,
    :mod:`analyzer.engine.arbitrage`): the asset's parameter-file entry (its symbol's, else the
    default) placed at ``mid_usd``, the price its pools show after the shock. A square-root law
    starts there with no flow; an order book keeps its shape, its levels scaled so that its mid
    (halfway between the best bid and ask) is ``mid_usd``. Returns (venue, what was assumed)."""
    from analyzer.engine.order_book import OrderBookDepth
    from analyzer.engine.venues import SqrtLaw

    by_symbol, default = load_parameters(path)
    entry = by_symbol.get(symbol, default)
    venue_name = f"centralised:{symbol}"
    venue: OrderBookDepth | SqrtLaw
    if entry.order_book is not None:
        bids, asks = entry.order_book["bids"], entry.order_book["asks"]
        scale = mid_usd / (0.5 * (float(bids[0][0]) + float(asks[0][0])))
        venue = OrderBookDepth(asset, "", [[p * scale, s] for p, s in bids], [[p * scale, s] for p, s in asks],
                               venue=venue_name)
    else:
        venue = SqrtLaw(asset, "", mid_usd, entry.sigma, entry.daily_volume_usd / mid_usd, entry.y, venue=venue_name)
    described = {k: v for k, v in asdict(entry).items() if k != "order_book"}
    return venue, {"model": venue.model, **described, "generic": symbol not in by_symbol}
