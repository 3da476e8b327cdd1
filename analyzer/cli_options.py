"""``contagion options ...``: options open interest from the venues, and the dealer gamma map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from analyzer.errors import ContagionError

options_app = typer.Typer(no_args_is_help=True, help="Options open interest from the venues; the dealer gamma map.")


def _underlying(values: list[str] | None) -> dict[str, str]:
    out = {}
    for value in values or []:
        currency, sep, address = value.partition("=")
        if not sep or not currency.strip() or not address.strip():
            raise ContagionError(f"--underlying {value!r}: expected CURRENCY=ADDRESS, e.g. ETH=0xC02a…")
        out[currency.strip().upper()] = address.strip()
    return out


def _summary_line(snapshot) -> str:
    inst = snapshot.option_instruments
    parts = [f"{v} {c}: {n}" for (v, c), n in inst.groupby(["venue", "currency"]).size().items()]
    return f"{len(inst)} option instruments ({', '.join(parts)}); positioning: " + \
        ", ".join(sorted(set(inst["positioning"])))


@options_app.command("import")
def options_import(
    files: Annotated[list[Path], typer.Argument(help="Saved venue API responses (JSON), e.g. Deribit "
                                                     "public/get_instruments + public/get_book_summary_by_currency.")],
    out: Annotated[Path, typer.Option(help="Snapshot folder: the options join it (or a new one is made).")],
    positioning: Annotated[Path | None, typer.Option(help="CSV venue,instrument,customer_net overriding the "
                                                          "dealer-positioning convention.")] = None,
    underlying: Annotated[list[str] | None, typer.Option(help="CURRENCY=ADDRESS: the snapshot asset an "
                                                              "option currency is on (repeatable).")] = None,
) -> None:
    """Read options open interest from saved venue responses into a snapshot."""
    from analyzer.options.imports import import_options

    snapshot = import_options(list(files), out, positioning=positioning, underlying=_underlying(underlying))
    typer.echo(f"{out}: {_summary_line(snapshot)}")


@options_app.command("fetch")
def options_fetch(
    venue: Annotated[str, typer.Option(help="Options venue: deribit or bybit.")],
    currency: Annotated[str, typer.Option(help="Underlying ticker, e.g. ETH.")],
    out: Annotated[Path, typer.Option(help="Snapshot folder: the options join it (or a new one is made).")],
    url: Annotated[str | None, typer.Option(help="API root (default: the venue's public API).")] = None,
    positioning: Annotated[Path | None, typer.Option(help="CSV venue,instrument,customer_net.")] = None,
    underlying: Annotated[list[str] | None, typer.Option(help="CURRENCY=ADDRESS (repeatable).")] = None,
    save_responses: Annotated[Path | None, typer.Option(help="Also keep the raw responses in this folder.")] = None,
) -> None:
    """Fetch a venue's options open interest (needs network access to the venue) into a snapshot."""
    from analyzer.options.imports import fetch_options

    snapshot = fetch_options(venue, currency, out, url=url, positioning=positioning,
                             underlying=_underlying(underlying), save_to=save_responses)
    typer.echo(f"{out}: {_summary_line(snapshot)}")


@options_app.command("gamma")
def options_gamma(
    snapshot_dir: Annotated[Path, typer.Argument(metavar="SNAPSHOT", help="A snapshot folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole gamma map as JSON.")] = False,
) -> None:
    """Dealer gamma by underlying (USD per 1% move), vanna, charm and the zero-gamma flip level."""
    from analyzer.model import Snapshot
    from analyzer.options.gammamap import gamma_map

    result = gamma_map(Snapshot.read(snapshot_dir))
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
        return
    if result.summary.empty:
        typer.echo("no option positions in the snapshot")
    for row in result.summary.itertuples():
        flip = "none on ±50%" if row.flip_usd != row.flip_usd else f"${row.flip_usd:,.2f}"
        typer.echo(f"{row.symbol}: spot ${row.spot_usd:,.2f}, dealer gamma ${row.gex_usd_per_pct:,.0f} per 1%, "
                   f"vanna ${row.vanna_usd_per_vol_pt:,.0f} per vol pt, charm ${row.charm_usd_per_day:,.0f} per day, "
                   f"flip {flip}")
