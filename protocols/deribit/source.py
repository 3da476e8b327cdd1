"""Deribit's public JSON-RPC-over-HTTP responses -> normalised option rows.

Fields used (docs.deribit.com, API v2):
- ``public/get_instruments?currency=ETH&kind=option``: ``instrument_name``, ``kind`` ("option"),
  ``option_type`` ("call" | "put"), ``strike``, ``expiration_timestamp`` (ms), ``base_currency``;
- ``public/get_book_summary_by_currency?currency=ETH&kind=option``: ``instrument_name``,
  ``open_interest`` (options: in the base currency), ``mark_iv`` (percent), ``underlying_price``
  (the forward the mark IV is quoted against), ``creation_timestamp`` (ms).
Every response is a JSON-RPC envelope ``{"jsonrpc": "2.0", "result": [...], "usOut": µs, ...}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from analyzer.errors import ContagionError
from protocols.base import OptionsSource


def _number(row: dict, key: str, where: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContagionError(f"deribit {where}: {row.get('instrument_name', '?')}: {key} must be a number, got {value!r}")
    return float(value)


class DeribitSource(OptionsSource):
    venue: ClassVar[str] = "deribit"
    default_url: ClassVar[str] = "https://www.deribit.com/api/v2"

    def requests(self, currency: str) -> list[tuple[str, dict[str, str]]]:
        return [("public/get_instruments", {"currency": currency, "kind": "option", "expired": "false"}),
                ("public/get_book_summary_by_currency", {"currency": currency, "kind": "option"})]

    def response_kind(self, payload: Any) -> str | None:
        if not (isinstance(payload, dict) and payload.get("jsonrpc") == "2.0" and isinstance(payload.get("result"), list)):
            return None
        rows = [r for r in payload["result"] if isinstance(r, dict)]
        if not rows:
            return None
        if "option_type" in rows[0] or "expiration_timestamp" in rows[0]:
            return "instruments"
        if "open_interest" in rows[0] and "instrument_name" in rows[0]:
            return "summary"
        return None

    def instruments(self, responses: dict[str, list[Any]]) -> list[dict]:
        for kind in ("instruments", "summary"):
            if not responses.get(kind):
                raise ContagionError(f"deribit: no {kind} response (public/get_"
                                     f"{'instruments' if kind == 'instruments' else 'book_summary_by_currency'})")
        listed: dict[str, dict] = {}
        for payload in responses["instruments"]:
            for row in payload["result"]:
                if isinstance(row, dict) and row.get("kind", "option") == "option":
                    listed[str(row.get("instrument_name"))] = row
        out = []
        for payload in responses["summary"]:
            envelope_ms = _number(payload, "usOut", "summary") / 1000.0 if payload.get("usOut") else 0.0
            for row in payload["result"]:
                if not isinstance(row, dict):
                    raise ContagionError(f"deribit summary: every result row must be an object, got {str(row)[:40]!r}")
                name = str(row.get("instrument_name"))
                spec = listed.get(name)
                if spec is None:
                    continue        # a future, or an instrument the instruments file does not list
                kind = spec.get("option_type")
                if kind not in ("call", "put"):
                    raise ContagionError(f"deribit instruments: {name}: option_type must be call|put, got {kind!r}")
                as_of_ms = _number(row, "creation_timestamp", "summary") if "creation_timestamp" in row else envelope_ms
                out.append({"instrument": name, "currency": str(spec.get("base_currency", name.split("-")[0])),
                            "kind": kind, "strike": _number(spec, "strike", "instruments"),
                            "expiry": int(_number(spec, "expiration_timestamp", "instruments") // 1000),
                            "as_of": int(as_of_ms // 1000),
                            "open_interest": _number(row, "open_interest", "summary"),
                            "mark_iv": _number(row, "mark_iv", "summary") / 100.0,
                            "underlying_price": _number(row, "underlying_price", "summary")})
        return out
