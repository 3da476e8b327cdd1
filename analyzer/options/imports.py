"""Options open interest into a snapshot: from saved venue responses, or fetched from the venue.

``import_options(files, out)`` recognises each file as one of a venue's public API responses (the
venue plugins' :class:`protocols.base.OptionsSource`), normalises every listed option, sets dealer
positions (:mod:`analyzer.options.positioning`), and writes the rows into the snapshot at ``out``
(table ``option_instruments``): into a copy of the snapshot already there, or a new off-chain
snapshot holding only the underlyings. ``fetch_options`` asks the venue (or any server that speaks
its format) for the same responses and goes the same way, so both give the same snapshot.

The underlying of a currency ("ETH") is the snapshot's asset of that symbol or of its wrapped
symbol ("WETH"); ``underlying={"ETH": "0x…"}`` names it explicitly. A currency the snapshot lacks
becomes an asset of its own at the venue's median forward of the nearest expiry.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from eth_utils import keccak, to_checksum_address

from analyzer.chain import redact_url
from analyzer.errors import ContagionError
from analyzer.model import Snapshot, to_table
from analyzer.options.positioning import dealer_positions, read_positioning
from protocols import plugins
from protocols.base import OptionsSource

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ATM_MIN_DAYS = 7.0


def sources() -> dict[str, OptionsSource]:
    """Every options venue plugin's source, by venue name."""
    return {p.options_source.venue: p.options_source() for p in plugins().values() if p.options_source is not None}


def _load_json(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_RESPONSE_BYTES:
            raise ContagionError(f"{path}: larger than {MAX_RESPONSE_BYTES >> 20} MiB")
        return json.loads(path.read_text())
    except OSError as exc:
        raise ContagionError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ContagionError(f"{path}: not a JSON venue response") from None


def classify(payloads: list[tuple[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """``{venue: {response kind: [payload, ...]}}``; a payload no venue recognises is an error."""
    known = sources()
    grouped: dict[str, dict[str, list[Any]]] = {}
    for name, payload in payloads:
        for venue, source in known.items():
            kind = source.response_kind(payload)
            if kind is not None:
                grouped.setdefault(venue, {}).setdefault(kind, []).append(payload)
                break
        else:
            raise ContagionError(f"{name}: not a response of a known options venue ({', '.join(sorted(known))})")
    return grouped


def normalise(grouped: dict[str, dict[str, list[Any]]]) -> list[dict]:
    rows = []
    known = sources()
    for venue, responses in sorted(grouped.items()):
        for row in known[venue].instruments(responses):
            rows.append({"venue": venue, **row})
    keys = [(r["venue"], r["instrument"]) for r in rows]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ContagionError(f"{dup[0]} {dup[1]} appears in two responses of the same kind")
    for row in rows:
        if row["expiry"] <= row["as_of"]:
            raise ContagionError(f"{row['venue']} {row['instrument']}: expired at the data's time")
    if not rows:
        raise ContagionError("the responses list no option with open interest data")
    return rows


def _offchain_address(currency: str) -> str:
    return to_checksum_address(keccak(text=f"defi-contagion:offchain:{currency}")[-20:])


def _atm_iv(rows: pd.DataFrame) -> float:
    """Mark IV of the option nearest the money at the nearest expiry at least a week out."""
    days = (rows["expiry"] - rows["as_of"]) / 86400.0
    later = rows[days >= ATM_MIN_DAYS] if (days >= ATM_MIN_DAYS).any() else rows
    first = later[later["expiry"] == later["expiry"].min()]
    nearest = (np.log(first["strike"] / first["underlying_price"])).abs().idxmin()
    return float(first.loc[nearest, "mark_iv"])


def attach(snapshot: Snapshot, rows: list[dict], underlying: dict[str, str] | None = None) -> Snapshot:
    """A copy of ``snapshot`` with ``rows`` as its option instruments of those venues and currencies."""
    frame = pd.DataFrame(rows)
    assets = snapshot.assets.copy()
    by_symbol = {str(s).upper(): a for s, a in zip(assets["symbol"], assets["address"], strict=True)}
    chosen = {k.upper(): v for k, v in (underlying or {}).items()}
    asset_of: dict[str, str] = {}
    for currency, group in frame.groupby("currency"):
        cur = str(currency).upper()
        address = chosen.get(cur) or by_symbol.get(cur) or by_symbol.get("W" + cur)
        if address is not None and address not in set(assets["address"]):
            raise ContagionError(f"--underlying {cur}={address}: not an asset of the snapshot")
        if address is None:
            address = _offchain_address(cur)
            near = group[group["expiry"] == group["expiry"].min()]
            assets = pd.concat([assets, to_table("assets", [{
                "address": address, "symbol": cur, "decimals": 18, "price_usd": float(near["underlying_price"].median()),
                "receipt_of": "", "iv": math.nan}])], ignore_index=True)
        row = assets.index[assets["address"] == address][0]
        if not np.isfinite(assets.at[row, "iv"]):
            assets.at[row, "iv"] = _atm_iv(group)
        asset_of[str(currency)] = address
    frame["asset"] = frame["currency"].map(asset_of)
    kept = snapshot.option_instruments
    replaced = kept["venue"].isin(set(frame["venue"])) & kept["currency"].isin(set(frame["currency"]))
    table = pd.concat([kept.loc[~replaced], to_table("option_instruments", frame)], ignore_index=True)
    meta = dict(snapshot.meta)
    meta.setdefault("chain_id", 0)
    meta.setdefault("block_number", 0)
    meta.setdefault("block_timestamp", int(frame["as_of"].max()))
    positioning = sorted(set(frame["positioning"]))
    meta["options_sources"] = sorted({*meta.get("options_sources", []),
                                      *(f"{v}:{c}" for v, c in zip(frame["venue"], frame["currency"], strict=True))})
    meta["options_positioning"] = sorted({*meta.get("options_positioning", []), *positioning})
    return Snapshot(meta=meta, assets=assets, markets=snapshot.markets, accounts=snapshot.accounts,
                    positions=snapshot.positions, options=snapshot.options, hedgers=snapshot.hedgers,
                    venues=snapshot.venues, option_instruments=table).validate()


def _base_snapshot(out: Path) -> Snapshot:
    if out.exists() and not out.is_dir():
        raise ContagionError(f"--out {out}: is a file, not a snapshot folder")
    if out.is_dir() and (out / "meta.json").is_file():
        return Snapshot.read(out)
    if out.is_dir() and any(out.iterdir()):
        raise ContagionError(f"--out {out}: a folder that is not a snapshot")
    return Snapshot()


def _rows(payloads: list[tuple[str, Any]], positioning: str | Path | None) -> list[dict]:
    rows = normalise(classify(payloads))
    customer_net = read_positioning(positioning) if positioning is not None else None
    dealer_positions(rows, customer_net, Path(positioning).name if positioning is not None else "")
    return rows


def import_options(files: list[str | Path], out: str | Path, *, positioning: str | Path | None = None,
                   underlying: dict[str, str] | None = None) -> Snapshot:
    """Read saved venue responses into the snapshot at ``out`` (see the module docstring)."""
    if not files:
        raise ContagionError("options import: name at least one response file")
    out = Path(out)
    base = _base_snapshot(out)
    rows = _rows([(str(f), _load_json(Path(f))) for f in files], positioning)
    snapshot = attach(base, rows, underlying)
    snapshot.write(out)
    return snapshot


def fetch_responses(venue: str, currency: str, url: str | None = None, timeout: float = 30.0) -> list[tuple[str, Any]]:
    """GET the venue's responses for ``currency`` (``url``: the API root, default the venue's)."""
    known = sources()
    if venue not in known:
        raise ContagionError(f'unknown options venue "{venue}" (known: {", ".join(sorted(known))})')
    if not currency.isalnum() or len(currency) > 12:
        raise ContagionError(f"--currency {currency!r}: expected a ticker such as ETH or BTC")
    source = known[venue]
    root = (url or source.default_url).rstrip("/")
    if urllib.parse.urlsplit(root).scheme not in ("http", "https"):
        raise ContagionError(f"--url {redact_url(root)}: expected an http(s) URL")
    payloads = []
    for path, query in source.requests(currency.upper()):
        address = f"{root}/{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(address, timeout=timeout) as response:  # noqa: S310 (http(s) checked)
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ContagionError(f"{venue}: {redact_url(root)}/{path}: {getattr(exc, 'reason', exc)}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise ContagionError(f"{venue}: {path}: response larger than {MAX_RESPONSE_BYTES >> 20} MiB")
        try:
            payloads.append((f"{venue} {path}", json.loads(body)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ContagionError(f"{venue}: {path}: the response is not JSON") from None
    return payloads


def fetch_options(venue: str, currency: str, out: str | Path, *, url: str | None = None,
                  positioning: str | Path | None = None, underlying: dict[str, str] | None = None,
                  save_to: str | Path | None = None) -> Snapshot:
    """Fetch the venue's responses and import them as :func:`import_options` does.

    ``save_to`` gets the raw responses only once they make a valid snapshot: a refused fetch
    writes nothing."""
    from analyzer.atomic import atomic_write_text, check_output_dir

    out = Path(out)
    base = _base_snapshot(out)
    folder = None if save_to is None else check_output_dir(save_to, "--save-responses")
    payloads = fetch_responses(venue, currency, url)
    snapshot = attach(base, _rows(payloads, positioning), underlying)
    if folder is not None:
        for name, payload in payloads:
            atomic_write_text(folder / (name.replace(" ", "_").replace("/", "_") + ".json"), json.dumps(payload))
    snapshot.write(out)
    return snapshot
