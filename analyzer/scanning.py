"""``contagion scan`` as a library function: pick the chain (node or fork), scan, write."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from analyzer.atomic import check_output_dir
from analyzer.chain import Anvil, redact_url
from analyzer.errors import ContagionError
from analyzer.rpcurl import check_rpc_url
from analyzer.scan import DEFAULT_CACHE, read_accounts_file, scan
from protocols import parse_protocols, with_venues

LARGE_BOOK_ACCOUNTS = 5_000  # beyond this, a scan through a fork is told that --rpc is the scan path


class RateColumn(ProgressColumn):
    """Items per second (discovery chunks, accounts) as rich measures them."""

    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:,.0f}/s", style="progress.data.speed")


def load_book(path: Path | None) -> dict | None:
    if path is None:
        return None
    try:
        book = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ContagionError(f"address book {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"address book {path}: not valid JSON ({exc})") from None
    if not isinstance(book, dict) or not isinstance(book.get("protocols", {}), dict):
        raise ContagionError(f"address book {path}: expected an object with a 'protocols' object")
    for name, entry in book.get("protocols", {}).items():
        if not isinstance(entry, dict):
            raise ContagionError(f"address book {path}: protocols.{name} must be an object")
        _check_book_values(entry, f"address book {path}: protocols.{name}")
    return book


def _check_book_values(value, where: str) -> None:
    """Addresses and ids are 0x-hex (20 or 32 bytes), start blocks non-negative integers, numbers finite."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "start_block" and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
                raise ContagionError(f"{where}.start_block must be a non-negative integer, got {item!r}")
            _check_book_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_book_values(item, f"{where}[{i}]")
    elif isinstance(value, str) and value.lower().startswith("0x"):
        if len(value) not in (42, 66) or not all(c in "0123456789abcdefABCDEF" for c in value[2:]):
            raise ContagionError(f"{where}: {value[:48]!r} is not an address (0x and 40 hex digits)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ContagionError(f"{where}: {value!r} is not a finite number")


def run_scan(*, rpc: str | None, fork_url: str | None, block: int | None, protocols: str | None,
             book: Path | None, accounts: Path | None, from_block: int | None, out: Path, use_cache: bool = True,
             venues: bool = True, console: Console | None = None, since_block: int | None = None) -> Path:
    """Scan ``rpc`` (or an anvil fork of ``fork_url``) and write the snapshot to ``out``.

    ``venues``: also read every venue plugin (the pools of the assets found), whatever ``protocols``
    names. Assets no venue trades get the centralised-depth default either way
    (:func:`analyzer.engine.centralised.with_default_depth`), named in the snapshot's meta."""
    if (rpc is None) == (fork_url is None):
        raise ContagionError("give exactly one of --rpc URL or --fork-url URL")
    if block is not None and block < 0:
        raise ContagionError(f"--block must be non-negative, got {block}")
    if since_block is not None and (since_block < 0 or block is not None and since_block > block):
        raise ContagionError(f"--since-block must be within 0..--block, got {since_block}")
    check_rpc_url(rpc, "--rpc") if rpc is not None else check_rpc_url(str(fork_url), "--fork-url")
    check_output_dir(out)
    plugins = parse_protocols(protocols)
    if venues:
        plugins = with_venues(plugins)
    address_book = load_book(book)
    account_list = read_accounts_file(accounts) if accounts is not None else None
    console = console or Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                  TimeElapsedColumn(), console=console, transient=False, disable=not console.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(f"scan {label}", total=total)
                if fork_url and label.endswith("accounts") and total > LARGE_BOOK_ACCOUNTS:
                    console.print(f"note: {total:,} accounts through --fork-url: the fork fetches every storage slot "
                                  "from upstream one at a time; --rpc URL is the scan path (it only reads), "
                                  "--fork-url is for replay")
            bar.update(tasks[label], completed=done, total=total)

        def run(url: str, at_block: int | None):
            return scan(url, plugins, block=at_block, book=address_book, accounts=account_list,
                        from_block=from_block, cache_dir=DEFAULT_CACHE if use_cache else None, progress=progress,
                        since_block=since_block)

        try:
            if fork_url:
                with Anvil(fork_url=fork_url, fork_block=block) as fork:
                    snapshot = run(fork.url, None)
                # the node the user named, redacted; not the throwaway loopback fork
                snapshot.meta.update(rpc=redact_url(fork_url), fork_block=snapshot.meta["block_number"])
            else:
                assert rpc is not None      # one of --rpc / --fork-url, checked above
                snapshot = run(rpc, block)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            if address_book is None:
                raise
            # a book entry of the right shape but the wrong content for its protocol's reader
            raise ContagionError(f"address book {book}: an entry is not what its protocol's reader needs "
                                 f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    return snapshot.write(out)
