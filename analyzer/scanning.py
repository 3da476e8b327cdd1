"""``contagion scan`` as a library function: pick the chain (node or fork), scan, write."""

from __future__ import annotations

import logging
from pathlib import Path

from analyzer.atomic import check_output_dir
from analyzer.books import load_book
from analyzer.chain import Anvil, redact_url
from analyzer.console import progress_bars
from analyzer.errors import ContagionError
from analyzer.rpcurl import check_rpc_url
from analyzer.scan import DEFAULT_CACHE, MARKET_WORKERS, read_accounts_file, scan
from protocols import parse_protocols, with_venues

LARGE_BOOK_ACCOUNTS = 5_000  # beyond this, a scan through a fork is told that --rpc is the scan path
log = logging.getLogger(__name__)


def run_scan(*, rpc: str | None, fork_url: str | None, block: int | None, protocols: str | None,
             book: Path | None, accounts: Path | None, from_block: int | None, out: Path, use_cache: bool = True,
             venues: bool = True, since_block: int | None = None,
             markets: list[str] | None = None) -> Path:
    """Scan ``rpc`` (or an anvil fork of ``fork_url``) and write the snapshot to ``out``.

    ``venues``: also read every venue plugin (the pools of the assets found), whatever ``protocols``
    names. Assets no venue trades get the centralised-depth default either way
    (:func:`analyzer.engine.centralised.with_default_depth`), named in the snapshot's meta.
    ``markets``: read only the lending markets of these names (venues are read whatever it names)."""
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
    with progress_bars() as bars:
        noted: set[str] = set()

        def progress(label: str, done: int, total: int) -> None:
            if label not in noted:
                noted.add(label)
                if fork_url and label.endswith("accounts") and total > LARGE_BOOK_ACCOUNTS:
                    log.info(f"note: {total:,} accounts through --fork-url: the fork fetches every storage slot "
                             "from upstream one at a time; --rpc URL is the scan path (it only reads), "
                             "--fork-url is for replay")
            bars.update(f"scan {label}", done, total)

        def run(url: str, at_block: int | None):
            return scan(url, plugins, block=at_block, book=address_book, markets=markets, accounts=account_list,
                        from_block=from_block, cache_dir=DEFAULT_CACHE if use_cache else None, progress=progress,
                        since_block=since_block, market_workers=MARKET_WORKERS)

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
