"""Address books of every Aave V3 market, generated from ``@aave-dao/aave-address-book``
(:mod:`.generate`): one JSON per chain beside this file."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

BOOKS_DIR = Path(__file__).parent


@cache
def load_books() -> dict[int, dict]:
    """chain id -> ``{"chain_id", "chain", "source", "protocols": {"aave-v3": {market: entry}}}``."""
    out = {}
    for path in sorted(BOOKS_DIR.glob("*.json")):
        book = json.loads(path.read_text())
        out[int(book["chain_id"])] = book
    return out


def markets(chain_id: int) -> dict[str, dict]:
    """Every Aave V3 market of ``chain_id`` by name (empty when the chain has none)."""
    book = load_books().get(chain_id)
    return dict(book["protocols"]["aave-v3"]) if book else {}


def primary_markets() -> dict[int, dict]:
    """chain id -> the chain's main market (the one named after the chain, e.g. AaveV3Ethereum)."""
    out = {}
    for chain_id, book in load_books().items():
        entries = book["protocols"]["aave-v3"]
        out[chain_id] = entries[min(entries, key=len)]
    return out
