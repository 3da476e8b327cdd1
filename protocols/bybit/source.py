"""Bybit's public v5 responses -> normalised option rows.

Fields used (bybit-exchange.github.io/docs/v5):
- ``/v5/market/instruments-info?category=option&baseCoin=ETH``: ``result.list[]`` with ``symbol``
  ("ETH-27DEC26-3000-C", newer listings end in "-USDT"), ``optionsType`` ("Call" | "Put"),
  ``baseCoin``, ``deliveryTime`` (ms, a string);
- ``/v5/market/tickers?category=option&baseCoin=ETH``: ``result.list[]`` with ``symbol``,
  ``openInterest`` (contracts of one base coin), ``markIv`` (fraction), ``underlyingPrice``.
Numbers are strings; the envelope is ``{"retCode": 0, "result": {"category": "option", "list":
[...]}, "time": ms}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from analyzer.errors import ContagionError
from protocols.base import OptionsSource


def _number(row: dict, key: str, where: str) -> float:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise ContagionError(f"bybit {where}: {row.get('symbol', '?')}: {key} must be a number, "
                             f"got {row.get(key)!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ContagionError(f"bybit {where}: {row.get('symbol', '?')}: {key} must be finite")
    return value


def _strike(symbol: str) -> float:
    parts = symbol.split("-")
    try:
        return float(parts[2])
    except (IndexError, ValueError):
        raise ContagionError(f"bybit: {symbol!r} is not an option symbol (BASE-DDMMMYY-STRIKE-C|P)") from None


class BybitSource(OptionsSource):
    venue: ClassVar[str] = "bybit"
    default_url: ClassVar[str] = "https://api.bybit.com"

    def requests(self, currency: str) -> list[tuple[str, dict[str, str]]]:
        return [("v5/market/instruments-info", {"category": "option", "baseCoin": currency, "limit": "1000"}),
                ("v5/market/tickers", {"category": "option", "baseCoin": currency})]

    def response_kind(self, payload: Any) -> str | None:
        if not (isinstance(payload, dict) and "retCode" in payload and isinstance(payload.get("result"), dict)):
            return None
        result = payload["result"]
        rows = result.get("list")
        if result.get("category") != "option" or not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            return None
        if "optionsType" in rows[0]:
            return "instruments"
        if "openInterest" in rows[0] and "markIv" in rows[0]:
            return "summary"
        return None

    def instruments(self, responses: dict[str, list[Any]]) -> list[dict]:
        for kind, path in (("instruments", "instruments-info"), ("summary", "tickers")):
            if not responses.get(kind):
                raise ContagionError(f"bybit: no {kind} response (/v5/market/{path})")
        listed = {str(r.get("symbol")): r for p in responses["instruments"] for r in p["result"]["list"]
                  if isinstance(r, dict)}
        out = []
        for payload in responses["summary"]:
            as_of = int(_number(payload, "time", "tickers") // 1000) if "time" in payload else 0
            for row in payload["result"]["list"]:
                if not isinstance(row, dict):
                    raise ContagionError(f"bybit tickers: every row of result.list must be an object, got {str(row)[:40]!r}")
                symbol = str(row.get("symbol"))
                spec = listed.get(symbol)
                if spec is None:
                    continue
                kind = {"Call": "call", "Put": "put"}.get(str(spec.get("optionsType")))
                if kind is None:
                    raise ContagionError(f"bybit instruments: {symbol}: optionsType must be Call|Put")
                out.append({"instrument": symbol, "currency": str(spec.get("baseCoin", symbol.split("-")[0])),
                            "kind": kind, "strike": _strike(symbol),
                            "expiry": int(_number(spec, "deliveryTime", "instruments") // 1000), "as_of": as_of,
                            "open_interest": _number(row, "openInterest", "tickers"),
                            "mark_iv": _number(row, "markIv", "tickers"),
                            "underlying_price": _number(row, "underlyingPrice", "tickers")})
        return out
