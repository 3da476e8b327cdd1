"""Address books: where each protocol's markets live on a chain, in one shape for every chain.

A book is one chain's JSON object::

    {"chain_id": 1, "chain": "ethereum",
     "protocols": {"<plugin>": {"<market name>": {<addresses...>, "start_block": 12345,
                                                  "source": "where these addresses were checked"}}}}

A plugin may have several markets on one chain (Comet's six on Ethereum, Compound V2's core pool
and a fork's). A devnet writes exactly this shape (``contagion devnet up --book-out``, with the
devnet's tokens and feeds beside ``protocols``), and every plugin ships its built-in books in
the same shape (``Plugin.books``: a folder of ``<chain>.json``), so mainnet and the devnet take
one code path. :func:`parse_book` checks a book and names what is wrong in one line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_utils import is_address, is_checksum_address, to_checksum_address

from analyzer.errors import ContagionError
from protocols.base import Plugin


@dataclass(frozen=True)
class Market:
    """One market of one plugin in a book: ``deployment`` is what the plugin's reader and executor read."""

    plugin: Plugin
    name: str
    deployment: dict[str, Any]

    @property
    def main_address(self) -> str:
        """The contract that names this market in a snapshot (``Plugin.market_key``), or ``""``."""
        value = self.deployment.get(self.plugin.market_key, "") if self.plugin.market_key else ""
        return to_checksum_address(value) if isinstance(value, str) and is_address(value) else ""


def _check_addresses(value: Any, where: str) -> None:
    """Every string that looks like an address (0x + 40 hex digits) must be one."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_addresses(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_addresses(item, f"{where}[{index}]")
    elif isinstance(value, str) and value.lower().startswith("0x") and len(value) == 42 and not (
            is_address(value) and (value in (value.lower(), "0x" + value[2:].upper()) or is_checksum_address(value))):
        raise ContagionError(f"{where}: {value!r} is not an address (bad hex or checksum)")


def parse_book(data: Any, origin: str, plugins: dict[str, Plugin] | None = None, *,
               require_source: bool = False) -> dict[str, Any]:
    """Check ``data`` (a parsed book) and return it; ``origin`` names it in errors.

    Checks: the top-level shape, a known plugin per ``protocols`` key (when ``plugins`` is given),
    each market an object with the keys the plugin's reader reads (``Reader.book_keys``), every
    address-looking string a valid address, ``start_block`` a non-negative integer, and (for
    built-in books, ``require_source``) a ``source`` naming where the addresses come from.
    """
    if not isinstance(data, dict):
        raise ContagionError(f"{origin}: an address book is a JSON object, got {type(data).__name__}")
    chain_id = data.get("chain_id")
    if not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0:
        raise ContagionError(f"{origin}: \"chain_id\" must be a positive integer, got {chain_id!r}")
    if not isinstance(data.get("chain"), str) or not data["chain"]:
        raise ContagionError(f"{origin}: \"chain\" must name the chain (e.g. \"ethereum\")")
    protocols = data.get("protocols")
    if not isinstance(protocols, dict):
        raise ContagionError(f"{origin}: \"protocols\" must be an object of plugin -> market -> deployment")
    for name, markets in protocols.items():
        if plugins is not None and name not in plugins:
            raise ContagionError(f"{origin}: unknown protocol \"{name}\" (known: {', '.join(plugins)})")
        if not isinstance(markets, dict) or not markets:
            raise ContagionError(f"{origin}: protocols.{name} must be a non-empty object of market name -> deployment")
        reader = plugins[name].reader if plugins is not None else None
        for market, deployment in markets.items():
            where = f"{origin}: {name} market \"{market}\""
            if not isinstance(deployment, dict):
                raise ContagionError(f"{where} must be an object of addresses (is the market level missing?)")
            for key in getattr(reader, "book_keys", ()):
                if key not in deployment:
                    raise ContagionError(f"{where}: missing \"{key}\"")
            start = deployment.get("start_block", 0)
            if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                raise ContagionError(f"{where}: \"start_block\" must be a non-negative integer, got {start!r}")
            if require_source and not (isinstance(deployment.get("source"), str) and deployment["source"]):
                raise ContagionError(f"{where}: missing \"source\" (where the addresses were checked)")
            _check_addresses(deployment, f"{origin}: {name}.{market}")
    return data


def load_book(path: str | Path | None) -> dict[str, Any] | None:
    """Read and check a book file (``--book``); None passes through."""
    if path is None:
        return None
    from protocols import plugins

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContagionError(f"address book {path} does not exist") from None
    except IsADirectoryError:
        raise ContagionError(f"address book {path} is a directory, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"address book {path}: not valid JSON ({exc})") from None
    return parse_book(data, f"address book {path}", plugins())


@lru_cache(maxsize=1)
def builtin_books() -> tuple[dict[str, Any], ...]:
    """Every plugin's built-in books (``Plugin.books``/*.json), checked, one per file."""
    from protocols import plugins

    known = plugins()
    found = []
    for plugin in known.values():
        if plugin.books is None:
            continue
        for path in sorted(Path(plugin.books).glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ContagionError(f"built-in book {path}: not valid JSON ({exc})") from None
            book = parse_book(data, f"built-in book {path}", known, require_source=True)
            others = set(book["protocols"]) - {plugin.name}
            if others:
                raise ContagionError(f"built-in book {path}: {plugin.name} may only name itself, names {sorted(others)}")
            found.append(book)
    return tuple(found)


def markets_in(book: dict[str, Any], plugins: Sequence[Plugin]) -> list[Market]:
    """The markets of ``plugins`` in ``book``, in plugin order, then the book's order."""
    return [Market(plugin, name, deployment)
            for plugin in plugins
            for name, deployment in book.get("protocols", {}).get(plugin.name, {}).items()]


def builtin_markets(plugins: Sequence[Plugin], chain_id: int | None = None) -> list[Market]:
    """The built-in markets of ``plugins`` (on ``chain_id`` only, when given)."""
    return [market for book in builtin_books() if chain_id is None or book["chain_id"] == chain_id
            for market in markets_in(book, plugins)]


def deployments_for(plugins: Sequence[Plugin], chain_id: int, book: dict[str, Any] | None = None,
                    markets: Sequence[str] | None = None) -> list[Market]:
    """Every market of ``plugins`` to read on ``chain_id``: from ``book`` when given (a devnet's or
    the user's; a plugin it does not name is not read), else the plugins' built-in books;
    narrowed to the market names in ``markets`` (``scan --markets``; a venue plugin's markets, the
    pools that price the assets, stay)."""
    if book is not None:
        if book.get("chain_id") != chain_id:
            raise ContagionError(f"the address book is for chain {book.get('chain_id')}, the node is chain {chain_id}")
        found = markets_in(book, plugins)
    else:
        found = builtin_markets(plugins, chain_id)
    if markets:
        wanted = [m.strip() for m in markets if m.strip()]
        known = sorted({m.name for m in found if m.plugin.venue_executor is None})
        unknown = [m for m in wanted if m not in known]
        if unknown:
            raise ContagionError(f"--markets: no market named {', '.join(unknown)} on chain {chain_id} "
                                 f"(known: {', '.join(known) or 'none'})")
        found = [m for m in found if m.name in wanted or m.plugin.venue_executor is not None]
    return found


def market_of(book: dict[str, Any], plugin_name: str, market: str | None = None) -> dict[str, Any] | None:
    """One market's deployment of ``plugin_name`` in ``book``: the one named ``market``, or the
    first (a devnet's plugins read each other's deployments through this)."""
    markets = book.get("protocols", {}).get(plugin_name) or {}
    if market is not None:
        return markets.get(market)
    return next(iter(markets.values()), None)


def market_rows(plugins: Sequence[Plugin]) -> list[dict[str, Any]]:
    """``contagion markets``: one row per built-in market (protocol, chain, name, main address, source)."""
    rows = []
    for book in builtin_books():
        for market in markets_in(book, plugins):
            rows.append({"protocol": market.plugin.name, "chain_id": book["chain_id"], "chain": book["chain"],
                         "market": market.name, "address": market.main_address,
                         "start_block": int(market.deployment.get("start_block", 0)),
                         "source": market.deployment.get("source", "")})
    return sorted(rows, key=lambda r: (r["protocol"], r["chain_id"], r["market"]))
