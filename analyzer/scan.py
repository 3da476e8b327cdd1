"""Scan: run protocol readers against a chain at one block into one Snapshot.

Shaped like cryo: work is cut into chunks (log ranges for account discovery, account batches
for positions), each finished chunk is cached on disk under a key of (chain id, block, protocol,
deployment, inputs), so a rerun or a resumed scan reads nothing twice. Requests go through
:class:`analyzer.rpc.RpcClient` (retries, backoff, adaptive log ranges); account chunks run with
bounded concurrency; a progress bar per protocol goes to stderr. The snapshot is written
atomically. RPC URLs appear only redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from analyzer import __version__, carry
from analyzer.books import Market, deployments_for
from analyzer.chain import redact_url
from analyzer.discovery import CHUNK_BLOCKS, ChunkFiles, discover, load_log_span, save_log_span
from analyzer.engine.centralised import with_default_depth
from analyzer.errors import ContagionError
from analyzer.lens import lens_caller
from analyzer.model import Snapshot, empty_table
from analyzer.multicall import Call, CallResult, multicall
from analyzer.paths import cache_dir, plugin_packages, source_digest
from analyzer.rpc import RetryingProvider, RpcClient
from analyzer.scan_chunks import (
    EXCLUDED,
    MAX_REFERENCES,
    ChunkCache,
    Plan,
    ScanStats,
    digest,
    incremental_plan,
    kept_state_and_refers,
    read_state,
    scan_protocol,
)
from protocols.base import Plugin, ReadContext

__all__ = ["ScanStats", "read_accounts_file", "reader_digest", "scan"]

DEFAULT_CACHE = cache_dir("scan")
MARKET_WORKERS = 4      # markets `contagion scan` reads at once (scan()'s market_workers)
ACCOUNT_TABLES = ("positions", "accounts")   # rows of one market's accounts: no other market has their keys
log = logging.getLogger(__name__)


def _normalise_log(log: dict) -> dict:
    """A raw JSON-RPC log in the shape web3's ``get_logs`` returns (bytes, ints)."""
    return {
        "address": to_checksum_address(log["address"]),
        "topics": [HexBytes(t) for t in log.get("topics", [])],
        "data": HexBytes(log.get("data", "0x")),
        "blockNumber": int(log["blockNumber"], 16),
        "transactionHash": HexBytes(log.get("transactionHash") or "0x"),
        "logIndex": int(log.get("logIndex") or "0x0", 16),
    }


def reader_digest(plugin) -> str:
    """What a cached chunk of ``plugin`` depends on besides the chain: the tool version and the
    source of the plugin's package (its reader and the helpers it imports)."""
    return _packages_digest(tuple(plugin_packages([plugin])))


@functools.cache
def _packages_digest(packages: tuple[str, ...]) -> str:
    """:func:`analyzer.paths.source_digest` of ``packages``, once per process: the code a process
    runs is the code it imported (hashing a plugin's sources took 10 ms, four times a scan)."""
    return source_digest(packages)


def read_accounts_file(path: str | Path) -> list[str]:
    """An account list: one address a line (or a JSON array); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise ContagionError(f"accounts file {path} does not exist")
    text = path.read_text(errors="replace").strip()
    try:
        entries = json.loads(text) if text.startswith("[") else [ln.strip() for ln in text.splitlines()]
    except json.JSONDecodeError as exc:
        raise ContagionError(f"{path}: not a JSON array ({exc})") from None
    accounts = []
    for number, entry in enumerate(entries, start=1):
        if not entry or (isinstance(entry, str) and entry.startswith("#")):
            continue
        if not isinstance(entry, str) or not is_address(entry):
            raise ContagionError(f"{path}: line {number}: {str(entry)[:60]!r} is not an address")
        accounts.append(to_checksum_address(entry))
    if not accounts:
        raise ContagionError(f"{path}: no accounts")
    return sorted(set(accounts))


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off while a scan runs (on again after, if it was on). A
    scan allocates millions of containers (rows, chunks, kept words) and makes next to no cycles:
    the collector's passes walked them all (a tenth of a full scan's CPU on mainnet-scale; its
    peak memory the same without them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@collector_paused()
def scan(
    url: str,
    plugins: Sequence[Plugin],
    *,
    block: int | None = None,
    book: dict | None = None,
    markets: Sequence[str] | None = None,
    accounts: Sequence[str] | None = None,
    from_block: int | None = None,
    cache_dir: Path | None = DEFAULT_CACHE,
    chunk_accounts: int | None = None,
    log_range: int = CHUNK_BLOCKS,
    chunk_blocks: int = CHUNK_BLOCKS,
    workers: int = 4,
    market_workers: int = 1,
    use_lens: bool = True,
    since_block: int | None = None,
    client: RpcClient | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    stats: ScanStats | None = None,
    oracle_paths: bool = True,
) -> Snapshot:
    """Read ``plugins`` at ``block`` (default: the latest at start) into one Snapshot.

    Parameters
    ----------
    url
        The node (an anvil devnet or fork, or any node: scanning only reads).
    plugins
        The protocols (and venues) to read.
    block
        The block to read (default: the head at the start of the scan).
    book
        An address book (:mod:`analyzer.books`: a devnet's, or the user's); otherwise the
        plugins' built-in books for the chain. One reader per market of the book.
    markets
        Read only the markets of these names (``--markets``).
    accounts
        Skip event enumeration and read these accounts.
    from_block
        First block of event enumeration (default: each protocol's deployment block).
    cache_dir
        Where discovered accounts and position chunks are cached (None: no cache).
    chunk_accounts
        Accounts per cached chunk of positions (default 2,000 with the lens, else 200).
    log_range
        The widest ``eth_getLogs`` range asked (narrowed, and remembered, where the node refuses).
    chunk_blocks
        The block chunks in which discovered accounts are cached.
    workers
        Concurrent requests to the node (of one market's account chunks).
    market_workers
        Markets read at once (those whose reads need no other market's: every lending market;
        venue readers come after them): one market's Python work overlaps another's wait on the
        node. The first error or interrupt stops the others at their next chunk.
    use_lens
        Read accounts through our lens contract in an ``eth_call`` state override where the
        node takes overrides (False: Multicall3 only).
    since_block
        An earlier block scanned with this cache: protocols that declare their change events
        read only the accounts those events named since, and compute the others from the state
        that scan kept (the same snapshot as a full scan).
    client
        The RPC client to use (default: one for ``url``).
    progress
        ``progress(label, done, total)`` after each chunk: discovery in block chunks
        (``"<protocol> discovery"``), positions in accounts (``"<protocol> accounts"``).
    stats
        Filled with request and cache counts.
    oracle_paths
        Follow each protocol's price sources to their root feeds and record the prices derived
        from another asset's (``meta["derived_prices"]``, :func:`analyzer.oracles.derived_prices`).

    Returns
    -------
    Snapshot
        Assets, markets, positions, accounts, venues and options at ``block``, with the scan's
        metadata (chain, block, excluded markets, assumed depth).

    Raises
    ------
    ContagionError
        The node is unreachable or prunes ``block``, none of ``plugins`` has a book for the chain,
        or the book does not match the chain.
    """
    client = client or RpcClient(url)
    stats = stats if stats is not None else ScanStats()
    run = _start(url, client, plugins, block, book, markets, from_block, cache_dir, use_lens, log_range)
    run = dataclasses.replace(run, accounts=accounts, since_block=since_block, chunk_blocks=chunk_blocks,
                              chunk_accounts=chunk_accounts or (2000 if run.ctx.lens else 200), workers=workers,
                              market_workers=market_workers,
                              progress=progress, stats=stats)
    # the oracle paths are followed while the markets are read: the node answers one while the
    # other computes
    with ThreadPoolExecutor(max_workers=1) as beside:
        derived = beside.submit(_derived_prices, run, plugins) if oracle_paths else None
        snapshot = _read_markets(run)
        snapshot.meta.update(tool_version=__version__, rpc=redact_url(url), from_block=from_block or 0,
                             block_timestamp=run.block_timestamp)
        if derived is not None:
            snapshot.meta["derived_prices"] = derived.result()
    stats.requests = dict(client.calls)
    # every asset a cascade may sell gets a venue: the centralised-depth default where no pool trades it
    return with_default_depth(snapshot).validate()


def _read_markets(run: _Run) -> Snapshot:
    """Every market of ``run`` read and merged into one snapshot, with the markets read
    (``meta["protocols"]``) and those read but left out (``meta["excluded_markets"]``)."""
    snapshot = Snapshot(meta={"chain_id": run.chain_id, "block_number": run.block,
                              "block_timestamp": run.block_timestamp})
    read_markets: dict[str, dict[str, dict]] = {}
    excluded_markets: list[dict] = []
    # each market's accounts are its own (keyed by protocol and market): joined once at the end, not
    # merged into the whole snapshot market after market (each merge re-checked every row so far)
    own: dict[str, list[pd.DataFrame]] = {name: [] for name in ACCOUNT_TABLES}
    early = _read_at_once(run, snapshot)
    # merged at once, at the end or before a venue reader (which reads the pools of the assets found
    # before it: the one market that reads the snapshot so far); each merge costs ~8 ms at any size
    parts: list[Snapshot] = []
    for market in run.markets:
        if market.plugin.reader is None:
            continue
        part = early.pop(id(market), None)
        if part is None:
            if parts and market.plugin.venue_executor is not None:
                snapshot, parts = snapshot.merge(*parts), []
            part = _scan_market(run, market, snapshot)
        for row in part.meta.get(EXCLUDED, []):
            log.warning("scan: %s market %s left out: %s", row["protocol"], row["asset"], row["reason"])
            excluded_markets.append(row)
        part.meta = {"chain_id": run.chain_id, "block_number": run.block}
        for name in ACCOUNT_TABLES:
            own[name].append(part.table(name))
            setattr(part, name, empty_table(name))
        parts.append(part)
        read_markets.setdefault(market.plugin.name, {})[market.name] = market.deployment
    if parts:
        snapshot = snapshot.merge(*parts)
    for name, frames in own.items():
        setattr(snapshot, name, pd.concat([snapshot.table(name), *frames], ignore_index=True))
    snapshot.meta["protocols"] = read_markets
    if excluded_markets:   # read, left out of every table, named here (never priced at 0)
        snapshot.meta["excluded_markets"] = excluded_markets
    return snapshot


class ScanStopped(Exception):
    """A market's read stopped because another market's, read at the same time, failed."""


def _read_at_once(run: _Run, snapshot: Snapshot) -> dict[int, Snapshot]:
    """By ``id(market)``: the markets whose reads need no other market's (all but venue readers,
    which read the pools of the assets found before them), read ``run.market_workers`` at a time;
    empty with one worker (the caller reads every market in turn). The first error (or interrupt)
    is raised once the others have stopped, each at its next chunk (its finished chunks cached)."""
    alone = [m for m in run.markets if m.plugin.reader is not None and m.plugin.venue_executor is None]
    if run.market_workers <= 1 or len(alone) <= 1:
        return {}
    stop = threading.Event()
    guarded = dataclasses.replace(run, stop=stop)
    with ThreadPoolExecutor(max_workers=min(len(alone), run.market_workers)) as pool:
        futures = {id(m): pool.submit(_scan_market, guarded, m, snapshot) for m in alone}
        try:
            wait(futures.values(), return_when=FIRST_EXCEPTION)
            failed = [f.exception() for f in futures.values() if f.done() and f.exception() is not None]
            if failed:
                raise failed[0]     # type: ignore[misc]  # not None: filtered above
        except BaseException:
            stop.set()              # the others stop at their next chunk; the pool waits for them
            raise
    return {key: future.result() for key, future in futures.items()}


class _Headers:
    """Block headers asked once per scan: every market's rescan keys its change logs by the same
    earlier block's hash (one ``eth_getBlockByNumber`` per market before), and the scan's own
    block is asked by :func:`_start`. Asked under a lock: markets read at once wait for one answer."""

    def __init__(self, client: RpcClient):
        self.client = client
        self.lock = threading.Lock()
        self.seen: dict[int, dict] = {}

    def __call__(self, number: int) -> dict:
        with self.lock:
            header = self.seen.get(number)
            if header is None:
                header = self.seen[number] = self.client.block(number)
            return header


@dataclass(frozen=True)
class _Run:
    """What every market's read in one scan shares: the node, the block, the cache, the options."""

    url: str
    client: RpcClient
    chain_id: int
    block: int
    block_timestamp: int
    markets: list[Market]
    ctx: ReadContext
    chain_cache: Path | None            # the cache of this chain (None: no cache)
    span_file: Path | None              # where the node's accepted eth_getLogs width is remembered
    from_block: int | None
    log_range: int
    header: Callable[[int], dict]       # a block's header, asked once per scan (_Headers)
    accounts: Sequence[str] | None = None
    since_block: int | None = None
    chunk_blocks: int = CHUNK_BLOCKS
    chunk_accounts: int = 2000
    workers: int = 4
    market_workers: int = 1
    progress: Callable[[str, int, int], None] | None = None
    stats: ScanStats = field(default_factory=ScanStats)
    stop: threading.Event | None = None     # set: another market's read failed, stop at the next chunk

    def report(self, label: str, done: int, total: int) -> None:
        if self.stop is not None and self.stop.is_set():
            raise ScanStopped(f"{label}: stopped, another market's read failed")
        if self.progress is not None:
            self.progress(label, done, total)


def _start(url: str, client: RpcClient, plugins: Sequence[Plugin], block: int | None, book: dict | None,
           markets: Sequence[str] | None, from_block: int | None, cache_dir: Path | None, use_lens: bool,
           log_range: int) -> _Run:
    """The chain, the block and the markets to read, checked; the readers' context; the cache."""
    chain_id = client.chain_id()
    block = client.head_block() if block is None else int(block)
    if from_block is not None and not 0 <= from_block <= block:
        raise ContagionError(f"--from-block {from_block} must be within 0..{block}")
    headers = _Headers(client)
    header = headers(block)
    found = deployments_for(plugins, chain_id, book, markets)
    if not found:
        names = ", ".join(p.name for p in plugins)
        raise ContagionError(f"none of the protocols ({names}) has an address book for chain {chain_id}; "
                             "pass the devnet's address book with --book")
    chain_cache = None if cache_dir is None else Path(cache_dir) / str(chain_id)
    span_file = None if chain_cache is None else chain_cache / f"log-span-{digest(redact_url(url))}.json"
    client.log_span = client.log_span or load_log_span(span_file)
    return _Run(url=url, client=client, chain_id=chain_id, block=block, block_timestamp=int(header["timestamp"], 16),
                markets=found, ctx=_read_context(url, client, chain_id, block, use_lens, log_range),
                chain_cache=chain_cache, span_file=span_file, from_block=from_block, log_range=log_range,
                header=headers)


def _read_context(url: str, client: RpcClient, chain_id: int, block: int, use_lens: bool,
                  log_range: int) -> ReadContext:
    """The readers' context: every read at ``block`` through ``client`` (its retries included)."""
    w3 = Web3(RetryingProvider(client))   # readers' direct calls get the scan's retries too

    def send(tx: dict, blk: int) -> bytes:
        return client.eth_call(tx, blk)

    def batched(calls: Sequence[Call]) -> list[CallResult]:
        return multicall(w3, calls, block=block, send=send)

    def get_logs(address, topics, start: int, end: int) -> list[dict]:
        return [_normalise_log(log) for log in client.get_logs(address, topics, start, end, max_range=log_range)]

    def refused() -> None:
        log.warning("%s does not run eth_call with a state override: reading accounts through Multicall3 "
                    "(many times slower)", redact_url(url))

    lens = lens_caller(client, block, on_refusal=refused) if use_lens else None
    return ReadContext(w3=w3, chain_id=chain_id, block=block, multicall=batched, get_logs=get_logs, lens=lens)


def _scan_market(run: _Run, market: Market, snapshot: Snapshot) -> Snapshot:
    """One market of a protocol: its markets and accounts, read or from the cache (``snapshot``:
    what the scan read before it, whose assets a venue reader looks up)."""
    plugin, deployment = market.plugin, market.deployment
    # event enumeration starts at the deployment's first block unless the user says otherwise
    start = run.from_block if run.from_block is not None else min(int(deployment.get("start_block", 0) or 0),
                                                                  run.block)
    # a venue reader reads the pools of the assets found so far: they are part of its cache key
    known = tuple(snapshot.assets["address"]) if plugin.venue_executor is not None else ()
    key = digest([deployment, *known, reader_digest(plugin)])
    cache = ChunkCache(None if run.chain_cache is None else run.chain_cache / str(run.block) / plugin.name / key)
    assert plugin.reader is not None        # the scan's markets are those of plugins with a reader
    reader = plugin.reader(dataclasses.replace(run.ctx, assets=known), deployment)
    # a plugin with one market keeps its plain name in progress and stats
    label = plugin.name if sum(m.plugin is plugin for m in run.markets) == 1 else f"{plugin.name} {market.name}"
    plan = None
    if run.since_block is not None and run.chain_cache is not None:
        earlier = ChunkCache(run.chain_cache / str(run.since_block) / plugin.name / key)   # the key of `cache`
        plan = incremental_plan(run.client, reader, earlier, cache, run.chain_cache, plugin.name, reader_digest(plugin),
                                label,
                                run.since_block, run.block, run.chunk_blocks, run.log_range, run.report, run.stats,
                                run.accounts, header=run.header)
    discovered = functools.partial(_discover_accounts, run, reader, plugin, start, label)
    part = scan_protocol(label, reader, cache, run.accounts if plan is None else plan.targets, discovered, start,
                         run.block, run.chunk_accounts, run.workers, run.report, run.stats,
                         None if plan is None else plan.tables)
    if run.accounts is None and not carry.stored(cache):
        _store_carried(run, cache, part, plan)
    return part


def _store_carried(run: _Run, cache: ChunkCache, part: Snapshot, plan: Plan | None) -> None:
    """A market's tables kept with its state at this block, for a later rescan to carry
    (:mod:`analyzer.carry`): from the rescan's carried rows and the accounts it read, else from
    the state the scan's chunks kept (none where they kept none: a reader without rescans)."""
    tables = {name: part.table(name) for name in ACCOUNT_TABLES}
    if plan is not None and plan.carried is not None:
        fresh = read_state(cache, plan.targets, run.chunk_accounts)
        if fresh is not None:
            refers = plan.carried.earlier.refers + 1 if plan.carried.earlier.refers < MAX_REFERENCES else 0
            carry.store_rescan(cache, plan.carried, tables, fresh, refers)
        return
    found = kept_state_and_refers(cache)
    if found is not None:
        carry.store_scan(cache, tables, *found)


def account_picking(events, plugin: Plugin) -> list[str] | str:
    """What decides which accounts (and holdings) a log names: the reader's declared fields, which
    discovery decodes (:class:`protocols.base.EventField`), or else the source of its functions
    (the plugin's): cached logs picked by another version are not reused."""
    if not events.account_fields:
        return reader_digest(plugin)
    return [repr(f) for f in (*events.account_fields, *events.holding_fields)]


def _discover_accounts(run: _Run, reader, plugin: Plugin, start: int, label: str) -> dict[str, Any]:
    """The accounts, and their holdings where the events show them all (from the deployment's
    first block: a later --from-block misses what came before)."""
    events = reader.account_events()
    if events is None:
        return {"accounts": reader.discover_accounts(start, run.block), "holdings": None}
    if run.from_block is None:      # from the deployment: events another names before are not asked
        events = events.from_deployment()
    # keyed by what is asked, how accounts are picked out of its logs, and the chain's history (its
    # first block's hash), not the scan block
    key = digest([sorted(events.addresses), sorted(events.topics), account_picking(events, plugin),
                  run.header(start)["hash"]])
    name = plugin.name
    files = ChunkFiles(None if run.chain_cache is None else run.chain_cache / "logs" / f"{name}-{key}", events)
    held: dict[str, set[str]] | None = {} if events.holdings is not None and run.from_block is None else None
    found = discover(run.client, events, start, run.block, files, chunk_blocks=run.chunk_blocks,
                     max_range=run.log_range, progress=lambda done, total: run.report(f"{label} discovery", done, total),
                     stats=run.stats.discovery, holdings=held)
    save_log_span(run.span_file, run.client.log_span)
    return {"accounts": sorted(found), "holdings": None if held is None else {a: sorted(h) for a, h in held.items()}}


def _derived_prices(run: _Run, plugins: Sequence[Plugin]) -> dict:
    """:func:`read_derived_prices`, cached per block like every other read: a rerun of a finished
    scan asks the node nothing."""
    prices_cache = ChunkCache(None if run.chain_cache is None else run.chain_cache / str(run.block))
    name = f"derived-prices-{digest([sorted(p.name for p in plugins), [m.deployment for m in run.markets]])}"
    derived = prices_cache.get(name)
    if derived is None:
        derived = read_derived_prices(run.ctx.w3, run.markets, run.block)
        prices_cache.put(name, derived)
    return derived


def read_derived_prices(w3, markets: Sequence[Market], block: int) -> dict:
    """``derived_prices`` over every market whose protocol declares its price sources; a stack that
    cannot be followed is logged and left out (the scan's positions do not depend on it). Every
    market's sources are followed together (one batch of reads per hop for all of them, a feed
    several protocols read asked once: a third of a rescan's requests were these hops); where one
    of them cannot be followed, each market's are followed alone, as the one to leave out."""
    from analyzer.oracles import derived_prices, protocol_sources, resolve_many

    declared = []
    for market in markets:
        plugin = market.plugin
        if plugin.price_sources is None:
            continue
        try:
            sources = plugin.price_sources(w3, market.deployment, block).price_sources()
        except ContagionError as exc:
            log.warning("scan: %s %s's price sources not followed: %s", plugin.name, market.name, exc)
            continue
        declared.append((market, protocol_sources(plugin.name, sources)[0]))
    try:
        return derived_prices(resolve_many(w3, [source for _, todo in declared for source in todo], block))
    except ContagionError:
        pass    # one market's stack: found below, market by market
    paths = []
    for market, todo in declared:
        try:
            paths += resolve_many(w3, todo, block)
        except ContagionError as exc:
            log.warning("scan: %s %s's price sources not followed: %s", market.plugin.name, market.name, exc)
    return derived_prices(paths)
