"""Scan: run protocol readers against a chain at one block into one Snapshot.

Shaped like cryo: work is cut into chunks (log ranges for account discovery, account batches
for positions), each finished chunk is cached on disk under a key of (chain id, block, protocol,
deployment, inputs), so a rerun or a resumed scan reads nothing twice. Requests go through
:class:`analyzer.rpc.RpcClient` (retries, backoff, adaptive log ranges); account chunks run with
bounded concurrency; a progress bar per protocol goes to stderr. The snapshot is written
atomically. RPC URLs appear only redacted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3

from analyzer import __version__
from analyzer.atomic import atomic_write_text
from analyzer.books import Market, deployments_for
from analyzer.chain import redact_url
from analyzer.discovery import (
    CHUNK_BLOCKS,
    ChunkFiles,
    DiscoveryStats,
    discover,
    load_log_span,
    save_log_span,
)
from analyzer.engine.centralised import with_default_depth
from analyzer.errors import ContagionError
from analyzer.lens import lens_caller
from analyzer.model import Snapshot, to_table
from analyzer.multicall import Call, CallResult, multicall
from analyzer.paths import cache_dir, plugin_packages, source_digest
from analyzer.rpc import RetryingProvider, RpcClient
from protocols.base import Plugin, ReadContext, Rows

DEFAULT_CACHE = cache_dir("scan")
EXCLUDED = "excluded"   # the rows a reader adds for markets it read but left out (see protocols.base.Rows)
log = logging.getLogger(__name__)


@dataclass
class ScanStats:
    """What a scan did: chunks read vs taken from the cache, and requests by method."""

    chunks_read: int = 0
    chunks_cached: int = 0
    accounts: dict[str, int] = field(default_factory=dict)
    discovery: DiscoveryStats = field(default_factory=DiscoveryStats)
    accounts_refreshed: dict[str, int] = field(default_factory=dict)   # computed from an earlier scan's state
    requests: dict[str, int] = field(default_factory=dict)


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
    return source_digest(plugin_packages([plugin]))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ChunkCache:
    """Finished chunks as JSON files; each written atomically once complete."""

    def __init__(self, root: Path | None):
        self.root = root

    def get(self, name: str) -> Any | None:
        if self.root is None:
            return None
        path = self.root / f"{name}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a damaged chunk is simply read again

    def names(self, prefix: str) -> list[str]:
        """The chunks whose name starts with ``prefix``."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob(f"{prefix}*.json"))

    def put(self, name: str, value: Any) -> None:
        if self.root is not None:
            atomic_write_text(self.root / f"{name}.json", json.dumps(value, sort_keys=True, default=str))


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
        Concurrent requests to the node.
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
    chain_id = client.chain_id()
    block = client.head_block() if block is None else int(block)
    if from_block is not None and not 0 <= from_block <= block:
        raise ContagionError(f"--from-block {from_block} must be within 0..{block}")
    header = client.block(block)
    found = deployments_for(plugins, chain_id, book, markets)
    if not found:
        names = ", ".join(p.name for p in plugins)
        raise ContagionError(f"none of the protocols ({names}) has an address book for chain {chain_id}; "
                             "pass the devnet's address book with --book")
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
    chunk_accounts = chunk_accounts or (2000 if lens else 200)
    ctx = ReadContext(w3=w3, chain_id=chain_id, block=block, multicall=batched, get_logs=get_logs, lens=lens)
    snapshot = Snapshot(meta={"chain_id": chain_id, "block_number": block,
                              "block_timestamp": int(header["timestamp"], 16)})
    chain_cache = None if cache_dir is None else Path(cache_dir) / str(chain_id)
    span_file = None if chain_cache is None else chain_cache / f"log-span-{_digest(redact_url(url))}.json"
    client.log_span = client.log_span or load_log_span(span_file)
    report = progress or (lambda label, done, total: None)
    read_markets: dict[str, dict[str, dict]] = {}
    excluded_markets: list[dict] = []
    for market in found:
        plugin, deployment = market.plugin, market.deployment
        if plugin.reader is None:
            continue
        # event enumeration starts at the deployment's first block unless the user says otherwise
        start = from_block if from_block is not None else min(int(deployment.get("start_block", 0) or 0), block)
        # a venue reader reads the pools of the assets found so far: they are part of its cache key
        known = tuple(snapshot.assets["address"]) if plugin.venue_executor is not None else ()
        cache = ChunkCache(None if chain_cache is None else
                           chain_cache / str(block) / plugin.name
                           / _digest([deployment, *known, reader_digest(plugin)]))
        reader = plugin.reader(dataclasses.replace(ctx, assets=known), deployment)
        # a plugin with one market keeps its plain name in progress and stats
        label = plugin.name if len([m for m in found if m.plugin is plugin]) == 1 else f"{plugin.name} {market.name}"

        def discovered(reader=reader, plugin=plugin, start=start, label=label) -> dict[str, Any]:
            """The accounts, and their holdings where the events show them all (from the deployment's
            first block: a later --from-block misses what came before)."""
            events = reader.account_events()
            if events is None:
                return {"accounts": reader.discover_accounts(start, block), "holdings": None}
            # keyed by what is asked and by the chain's history (its first block's hash), not the scan block
            key = _digest([sorted(events.addresses), sorted(events.topics), client.block(start)["hash"]])
            files = ChunkFiles(None if chain_cache is None else chain_cache / "logs" / f"{plugin.name}-{key}",
                               events)
            held: dict[str, set[str]] | None = {} if events.holdings is not None and from_block is None else None
            found = discover(client, events, start, block, files, chunk_blocks=chunk_blocks, max_range=log_range,
                             progress=lambda done, total: report(f"{label} discovery", done, total),
                             stats=stats.discovery, holdings=held)
            save_log_span(span_file, client.log_span)
            return {"accounts": sorted(found),
                    "holdings": None if held is None else {a: sorted(h) for a, h in held.items()}}

        refreshed: Rows = {}
        targets = accounts
        if since_block is not None and chain_cache is not None:
            earlier = ChunkCache(chain_cache / str(since_block) / plugin.name
                                 / _digest([deployment, *known, reader_digest(plugin)]))   # the key of `cache`
            plan = _incremental(client, reader, earlier, cache, chain_cache, plugin.name, since_block, block,
                                chunk_blocks, log_range, report, stats, accounts)
            if plan is not None:
                refreshed, targets = plan
        part = _scan_protocol(label, reader, cache, targets, discovered, start, block,
                              chunk_accounts, workers, progress, stats, refreshed)
        for row in part.meta.get(EXCLUDED, []):
            log.warning("scan: %s market %s left out: %s", row["protocol"], row["asset"], row["reason"])
            excluded_markets.append(row)
        part.meta = {"chain_id": chain_id, "block_number": block}
        snapshot = snapshot.merge(part)
        read_markets.setdefault(plugin.name, {})[market.name] = deployment
    snapshot.meta["protocols"] = read_markets
    if excluded_markets:   # read, left out of every table, named here (never priced at 0)
        snapshot.meta["excluded_markets"] = excluded_markets
    snapshot.meta.update(tool_version=__version__, rpc=redact_url(url), from_block=from_block or 0,
                         block_timestamp=int(header["timestamp"], 16))
    if oracle_paths:
        # cached per block like every other read: a rerun of a finished scan asks the node nothing
        prices_cache = ChunkCache(None if chain_cache is None else chain_cache / str(block))
        name = f"derived-prices-{_digest([sorted(p.name for p in plugins), [m.deployment for m in found]])}"
        derived = prices_cache.get(name)
        if derived is None:
            derived = read_derived_prices(w3, found, block)
            prices_cache.put(name, derived)
        snapshot.meta["derived_prices"] = derived
    stats.requests = dict(client.calls)
    # every asset a cascade may sell gets a venue: the centralised-depth default where no pool trades it
    return with_default_depth(snapshot).validate()


def read_derived_prices(w3, markets: Sequence[Market], block: int) -> dict:
    """``derived_prices`` over every market whose protocol declares its price sources; a stack that
    cannot be followed is logged and left out (the scan's positions do not depend on it)."""
    from analyzer.oracles import derived_prices, protocol_paths

    paths = []
    for market in markets:
        plugin = market.plugin
        if plugin.price_sources is None:
            continue
        try:
            sources = plugin.price_sources(w3, market.deployment, block).price_sources()
            paths += protocol_paths(w3, plugin.name, sources, block=block)[0]
        except ContagionError as exc:
            log.warning("scan: %s %s's price sources not followed: %s", plugin.name, market.name, exc)
    return derived_prices(paths)


def _incremental(client, reader, earlier: ChunkCache, cache: ChunkCache, chain_cache: Path, name: str,
                 since_block: int, block: int, chunk_blocks: int, log_range: int, report, stats: ScanStats,
                 accounts: Sequence[str] | None = None):
    """(rows computed without reading, accounts to read) for a rescan from ``since_block``; None
    when the protocol declares no change events or the cache kept no state at that block. With an
    account list, only those accounts are considered."""
    events = reader.change_events()
    if events is None or not 0 <= since_block <= block:
        return None
    previous: dict[str, Any] = {}
    kept = [earlier.get(chunk) or {} for chunk in earlier.names("positions-")]
    if not any("_state" in rows for rows in kept):
        return None     # no earlier scan here, or one that kept no state (read without the lens)
    for rows in kept:
        previous.update(rows.get("_state", {}))
    key = _digest([sorted(events.addresses), sorted(events.topics), client.block(since_block)["hash"]])
    files = ChunkFiles(chain_cache / "changes" / f"{name}-{key}")
    touched = set(discover(client, events, since_block + 1, block, files, chunk_blocks=chunk_blocks,
                           max_range=log_range, stats=stats.discovery,
                           progress=lambda done, total: report(f"{name} changes", done, total)))
    if accounts is not None:
        wanted = set(accounts)      # as the readers name them: checksummed (discovery, account files)
        touched &= wanted
        previous = {a: s for a, s in previous.items() if a in wanted}
    refreshed, again = reader.refresh_accounts({a: s for a, s in previous.items() if a not in touched})
    # a later rescan from this block reads only the kept state (the rows are this scan's output)
    cache.put(f"positions-refreshed-{since_block}", {"_state": refreshed.get("_state", {})})
    stats.accounts_refreshed[name] = len(previous) - len(again) - len(touched & set(previous))
    return refreshed, sorted(touched | set(again))


def _rows_to_snapshot(rows: list[Rows]) -> Snapshot:
    """Readers' rows as a Snapshot; their ``excluded`` rows (markets read but left out) go to the meta."""
    tables: dict[str, list[dict]] = {}
    for part in rows:
        for name, table_rows in part.items():
            if name.startswith("_"):
                continue    # a reader's own state for later rescans, not a snapshot table
            tables.setdefault(name, []).extend(table_rows)
    excluded = tables.pop(EXCLUDED, [])
    return Snapshot(meta={EXCLUDED: excluded} if excluded else {},
                    **{name: to_table(name, r) for name, r in tables.items()})


def _scan_protocol(label: str, reader, cache: ChunkCache, accounts, discovered, from_block, block, chunk_accounts,
                   workers, progress, stats: ScanStats, refreshed: Rows | None = None) -> Snapshot:
    """The protocol's markets and ``accounts`` (None: discovered) read in cached chunks, with
    ``refreshed`` (rows an incremental rescan computed) as one Snapshot."""
    report = progress or (lambda label, done, total: None)
    markets = cache.get("markets")
    if markets is None:
        markets = reader.read_markets()
        cache.put("markets", markets)
        stats.chunks_read += 1
    else:
        stats.chunks_cached += 1
    if accounts is None:
        found = cache.get(f"accounts-{from_block}-{block}")
        if not isinstance(found, dict):
            found = discovered()
            cache.put(f"accounts-{from_block}-{block}", found)
            stats.chunks_read += 1
        else:
            stats.chunks_cached += 1
        targets = sorted(set(found["accounts"]))
        reader.holdings = found["holdings"]     # the discovered accounts' holdings: read only those
    else:
        targets = sorted(set(accounts))
    stats.accounts[label] = len(targets)
    chunks = [targets[i:i + chunk_accounts] for i in range(0, len(targets), chunk_accounts)]
    results: list[Rows | None] = [None] * len(chunks)
    todo = []
    for index, chunk in enumerate(chunks):
        cached = cache.get(f"positions-{_digest(chunk)}")
        if cached is None:
            todo.append(index)
        else:
            results[index] = cached
            stats.chunks_cached += 1
    done = sum(len(chunks[i]) for i in range(len(chunks)) if results[i] is not None)
    report(f"{label} accounts", done, len(targets))

    def read(index: int) -> tuple[int, Rows]:
        return index, reader.read_accounts(chunks[index])

    def keep(index: int, rows: Rows) -> None:
        nonlocal done
        cache.put(f"positions-{_digest(chunks[index])}", rows)
        results[index] = rows
        stats.chunks_read += 1
        done += len(chunks[index])
        report(f"{label} accounts", done, len(targets))

    # the first chunk alone: the reader learns its markets once, not once per worker
    for index, rows in map(read, todo[:1]):
        keep(index, rows)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, rows in pool.map(read, todo[1:]):
            keep(index, rows)
    return _rows_to_snapshot([markets, *[r for r in results if r is not None], *([refreshed] if refreshed else [])])
