"""``contagion replay`` as a library function: replay a scenario on a fork, compare with the engine."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from analyzer.atomic import atomic_write_text, check_output_dir, final_path, staged_folder
from analyzer.errors import ContagionError
from analyzer.fidelity import compare, write_fidelity
from analyzer.scanning import load_book
from analyzer.scenarios import load_scenario
from protocols import parse_protocols


def run_replay(rpc: str, scenario_path: Path, *, book: Path | None, protocols: str | None, out: Path,
               console: Console | None = None) -> Path:
    """Replay ``scenario_path`` on a fork of ``rpc``; write replay.json and fidelity.json into ``out``."""
    from analyzer.engine import simulate
    from analyzer.replay import replay
    from analyzer.rpcurl import check_rpc_url

    check_rpc_url(rpc, "--rpc")
    check_output_dir(out)
    console = console or Console(stderr=True)
    shock = load_scenario(scenario_path)
    plugins = parse_protocols(protocols)
    address_book = load_book(book) or {}
    if not address_book.get("protocols"):
        raise ContagionError("replay needs the chain's address book (--book book.json from `contagion devnet up`)")
    result = replay(rpc, address_book, shock, plugins,
                    progress=lambda message: console.print(f"[dim]{escape(message)}[/dim]"))
    before = result.snapshot_before
    engine = simulate(before, shock)
    liquidated = engine.accounts[engine.accounts["liquidated_usd"] > 0]
    by_protocol = {p: set(g["account"]) for p, g in liquidated.groupby("protocol")}
    fidelity = compare(engine.to_json(), by_protocol, result.to_json())
    fidelity["scenario"] = shock.name
    out = Path(out)
    with staged_folder(out) as stage:
        atomic_write_text(stage / "replay.json", json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        written = write_fidelity(fidelity, stage / "fidelity.json")
    return final_path(written, stage, out)
