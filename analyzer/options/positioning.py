"""Who holds the other side: dealer positions per listed option.

Venues publish open interest, not who is long. Two sources, and every row records which it used
(the ``positioning`` column of ``option_instruments``):

- **The convention** ``calls-long-puts-short`` (the default of public gamma-exposure dashboards,
  e.g. SqueezeMetrics, "The Implied Order Book", 2020): customers sell calls (overwriting) and buy
  puts (protection), so dealers are long every call's open interest and short every put's.
- **A positioning file**: the net customer position per instrument from the user's own
  trade-flow classification, a CSV with a header ``venue,instrument,customer_net`` (underlying
  units, + = customers net long); dealers hold the opposite. Rows of the file override the
  convention; instruments it does not name keep the convention.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from analyzer.errors import ContagionError

CONVENTION = "calls-long-puts-short"


def convention_position(kind: str, open_interest: float) -> float:
    """Dealer position under the convention: long calls, short puts."""
    return open_interest if kind == "call" else -open_interest


def read_positioning(path: str | Path) -> dict[tuple[str, str], float]:
    """``{(venue, instrument): customer_net}`` from a positioning CSV (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContagionError(f"{path}: cannot read the positioning file ({exc.__class__.__name__})") from None
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or not {"venue", "instrument", "customer_net"} <= set(reader.fieldnames):
        raise ContagionError(f"{path}: a positioning file needs the header venue,instrument,customer_net")
    out: dict[tuple[str, str], float] = {}
    for number, row in enumerate(reader, start=2):
        try:
            value = float(row["customer_net"])
        except (TypeError, ValueError):
            raise ContagionError(f"{path}: line {number}: customer_net {row['customer_net']!r} is not a number") from None
        if not math.isfinite(value):
            raise ContagionError(f"{path}: line {number}: customer_net must be finite")
        key = (str(row["venue"]).strip().lower(), str(row["instrument"]).strip())
        if key in out:
            raise ContagionError(f"{path}: line {number}: {key[0]} {key[1]} is listed twice")
        out[key] = value
    return out


def dealer_positions(rows: list[dict], customer_net: dict[tuple[str, str], float] | None,
                     file_name: str = "") -> None:
    """Set ``dealer_position`` and ``positioning`` on every normalised row, in place."""
    for row in rows:
        key = (row["venue"], row["instrument"])
        if customer_net is not None and key in customer_net:
            row["dealer_position"] = -customer_net[key]
            row["positioning"] = f"file:{file_name}"
        else:
            row["dealer_position"] = convention_position(row["kind"], row["open_interest"])
            row["positioning"] = f"convention:{CONVENTION}"
