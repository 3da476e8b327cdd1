"""``contagion replay`` as a library function: replay a scenario on a fork, compare with the engine."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from analyzer.atomic import atomic_write_text, check_output_dir, final_path, staged_folder
from analyzer.books import load_book
from analyzer.errors import ContagionError
from analyzer.fidelity import write_fidelity
from analyzer.scenarios import load_scenario
from protocols import parse_protocols

log = logging.getLogger(__name__)


def run_replay(fork_url: str, scenario_path: Path, *, book: Path | None, protocols: str | None, out: Path) -> Path:
    """Replay ``scenario_path`` on an anvil fork of ``fork_url``; write replay.json and fidelity.json into ``out``."""
    from analyzer.replay import replay_and_compare
    from analyzer.rpcurl import check_rpc_url

    check_rpc_url(fork_url, "--fork-url")
    check_output_dir(out)
    shock = load_scenario(scenario_path)
    plugins = parse_protocols(protocols)
    address_book = load_book(book) or {}
    if not address_book.get("protocols"):
        raise ContagionError("replay needs the chain's address book (--book book.json from `contagion devnet up`)")
    compared = replay_and_compare(fork_url, address_book, shock, plugins, progress=log.info)
    out = Path(out)
    with staged_folder(out) as stage:
        atomic_write_text(stage / "replay.json", json.dumps(compared.replay.to_json(), indent=2, sort_keys=True) + "\n")
        written = write_fidelity(compared.fidelity, stage / "fidelity.json")
    return final_path(written, stage, out)
