"""A protocol's reads in cached chunks: its markets, its accounts (discovered or given), their
positions in account chunks read with bounded concurrency, and the plan of an incremental rescan.
Every finished chunk is a file written atomically once complete (see :mod:`analyzer.scan`)."""

from __future__ import annotations

import hashlib
import json
import marshal
import operator
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analyzer import carry
from analyzer.atomic import atomic_write_bytes
from analyzer.discovery import ChunkFiles, DiscoveryStats, discover
from analyzer.kept import KeptState, Refreshed, last_of_each
from analyzer.model import Snapshot, Table, concat_tables
from protocols.base import Rows

EXCLUDED = "excluded"   # the rows a reader adds for markets it read but left out (see protocols.base.Rows)
STATE = "state-"        # the kept words of a chunk of positions (analyzer.kept), beside it
KEPT = "kept-from-"     # the kept words of the accounts a rescan computed, by the block it started from
MAX_REFERENCES = 8      # rescans in a row that keep their unchanged accounts by reference to the one before


@dataclass
class ScanStats:
    """What a scan did: chunks read vs taken from the cache, and requests by method."""

    chunks_read: int = 0
    chunks_cached: int = 0
    accounts: dict[str, int] = field(default_factory=dict)
    discovery: DiscoveryStats = field(default_factory=DiscoveryStats)
    accounts_refreshed: dict[str, int] = field(default_factory=dict)   # computed from an earlier scan's state
    accounts_carried: dict[str, int] = field(default_factory=dict)     # of those, their rows carried (analyzer.carry)
    requests: dict[str, int] = field(default_factory=dict)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def accounts_digest(accounts: Sequence[str]) -> str:
    """The name of a chunk of accounts: a digest of the addresses one a line (what :func:`digest`
    names, without JSON: encoding 10^5 addresses was a fortieth of a scan's Python time)."""
    return hashlib.sha256("\n".join(["accounts", *accounts]).encode()).hexdigest()[:16]


class ChunkCache:
    """Finished chunks as files, each written atomically once complete.

    A chunk is kept in :mod:`marshal`'s format: its rows are only dicts, lists, strings and numbers,
    which it writes and reads back exactly, ten times faster than JSON (encoding 10^5 accounts'
    rows as JSON was a tenth of a scan). It loads data, never code; a file it cannot read (damaged,
    another Python's format) is read from the node again."""

    SUFFIX = ".chunk"

    def __init__(self, root: Path | None):
        self.root = root

    def get(self, name: str) -> Any | None:
        if self.root is None:
            return None
        path = self.root / f"{name}{self.SUFFIX}"
        if not path.is_file():
            return None
        try:
            return marshal.loads(path.read_bytes())
        except (EOFError, ValueError, TypeError, OSError):
            return None  # a damaged chunk is simply read again

    def block(self) -> int | None:
        """The block of a scan's cache (``<chain cache>/<block>/<plugin>/<key>``); None otherwise."""
        if self.root is None or not self.root.parent.parent.name.isdigit():
            return None
        return int(self.root.parent.parent.name)

    def at_block(self, block: int) -> ChunkCache:
        """The cache of the same plugin and market at another block of the chain."""
        assert self.root is not None
        return ChunkCache(self.root.parents[2] / str(block) / self.root.parent.name / self.root.name)

    def names(self, prefix: str) -> list[str]:
        """The chunks whose name starts with ``prefix``."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob(f"{prefix}*{self.SUFFIX}"))

    def put(self, name: str, value: Any) -> None:
        if self.root is None:
            return
        try:
            data = marshal.dumps(value)
        except ValueError:      # a value marshal does not write (bytes-like, numpy): as JSON would keep it
            data = marshal.dumps(json.loads(json.dumps(value, default=str)))
        # no fsync: a chunk a crash of the machine damaged is read from the node again (get)
        atomic_write_bytes(self.root / f"{name}{self.SUFFIX}", data, durable=False)


def kept_state(cache: ChunkCache) -> KeptState | None:
    """The accounts' kept words of a finished scan in ``cache``: each chunk of positions has its
    state beside it (written first), and a rescan's computed accounts theirs (``kept-from-*``);
    None when a chunk kept none (read without the lens, or by an older version)."""
    found = kept_state_and_refers(cache)
    return None if found is None else found[0]


def kept_state_and_refers(cache: ChunkCache) -> tuple[KeptState, int] | None:
    """:func:`kept_state` and how many earlier blocks it refers to (a rescan's ``kept-from-*``
    chunk may keep its untouched accounts by reference: :func:`incremental_plan`): the one stored
    with the block's carried tables (:mod:`analyzer.carry`), else the stored states of every
    block referred to made one KeptState at once, then the accounts each reference drops left
    out in one pass (not each earlier block's state built, then less its dropped accounts,
    block by block)."""
    carried = carry.load(cache)
    return (carried.kept, carried.refers) if carried is not None else _kept_pieces_state(cache)


def _kept_pieces_state(cache: ChunkCache) -> tuple[KeptState, int] | None:
    """:func:`kept_state_and_refers` of the stored states (chunks and references), not carried tables."""
    found = _kept_pieces(cache, 0, frozenset())
    if found is None:
        return None
    pieces, refers = found
    kept = KeptState.from_chunks(chunk for chunk, _, _ in pieces)
    if kept is None or not any(gone or region is not None for _, gone, region in pieces):
        return None if kept is None else (kept, refers)
    listed = kept.accounts.tolist()
    rows = np.ones(len(listed), dtype=bool)
    ends = np.cumsum([len(chunk["accounts"]) for chunk, _, _ in pieces])
    regions: dict[int, list[int]] = {}      # the rows of each earlier state referred to: [first, end)
    start = 0
    for (_, gone, region), end in zip(pieces, ends.tolist(), strict=True):
        if gone:
            rows[start:end] = ~np.fromiter(map(gone.__contains__, listed[start:end]), dtype=bool, count=end - start)
        if region is not None:
            regions.setdefault(region, [start, end])[1] = end
        start = end
    for first, end in regions.values():    # each earlier state once per account, the last kept (KeptState.without)
        within = np.flatnonzero(rows[first:end]) + first
        once = last_of_each(kept.accounts[within].tolist())
        if once is not None:
            rows[within[~once]] = False
    return (kept if rows.all() else kept.take(rows)), refers


Pieces = list[tuple[Any, frozenset[str], int | None]]    # stored states, each with the accounts left out of it


def _kept_pieces(cache: ChunkCache, depth: int, gone: frozenset[str]) -> tuple[Pieces, int] | None:
    """The stored states :func:`kept_state_and_refers` joins, in turn, each with the accounts left out of it
    (``gone``: those dropped by the references that lead to it) and the reference at the top it
    comes through (None: this block's own); and how many blocks the deepest reference goes back."""
    pieces: Pieces = []
    refers = 0
    for name in cache.names("positions-"):
        pieces.append((cache.get(STATE + name.removeprefix("positions-")), gone, None))
    for name in cache.names(KEPT):
        chunk = cache.get(name)
        if not isinstance(chunk, dict):
            return None
        if "base" in chunk:     # the earlier state less ``dropped``, then the accounts whose words changed
            base, dropped = chunk["base"], chunk.get("dropped", [])
            own = cache.block()
            if not isinstance(base, int) or own is None or not 0 <= base < own or depth >= MAX_REFERENCES or \
                    not isinstance(dropped, list):
                return None
            earlier = _kept_pieces(cache.at_block(base), depth + 1, gone | frozenset(dropped))
            if earlier is None:
                return None     # the earlier scan's cache is gone: read in full
            pieces += [(piece, left_out, len(pieces) if depth == 0 else region) for piece, left_out, region in earlier[0]]
            refers = max(refers, earlier[1] + 1)
            chunk = chunk.get("changed", {})
        pieces.append((chunk, gone, None))
    return (pieces, refers) if pieces else None


class Plan(NamedTuple):
    """A market's rescan (:func:`incremental_plan`): the frames of the accounts computed without
    reading (``positions``, ``accounts``), the accounts to read, and the carried tables it
    started from (None: computed by ``refresh_accounts``)."""

    tables: dict[str, pd.DataFrame]
    targets: list[str]
    carried: carry.Carry | None


def incremental_plan(client, reader, earlier: ChunkCache, cache: ChunkCache, chain_cache: Path, name: str,
                     picking: str, label: str, since_block: int, block: int, chunk_blocks: int, log_range: int,
                     report, stats: ScanStats, accounts: Sequence[str] | None = None,
                     header: Callable[[int], dict] | None = None) -> Plan | None:
    """A rescan from ``since_block`` (:class:`Plan`): the earlier block's carried tables
    (:mod:`analyzer.carry`) where they are stored and the plugin carries, else its kept state
    refreshed (:meth:`protocols.base.Reader.refresh_accounts`); None when the protocol declares
    no change events or the cache kept no state at that block. With an account list, only those
    accounts are considered (never carried). ``name``: the plugin (its cache of change logs,
    keyed by ``picking``: the version of the reader that picks the accounts out of them);
    ``label``: the market (stats and progress); ``header``: a block's header (default
    ``client.block``; a scan's asks each block once for all its markets)."""
    events = reader.change_events()
    if events is None or not 0 <= since_block <= block:
        return None
    carried = carry.load(earlier)
    found = (carried.kept, carried.refers) if carried is not None else _kept_pieces_state(earlier)
    if found is None:
        return None     # no earlier scan here, or one that kept no state (read without the lens)
    previous, refers = found
    key = digest([sorted(events.addresses), sorted(events.topics), picking, (header or client.block)(since_block)["hash"]])
    # no fsync: a rescan's few change logs are read again where a crash of the machine damaged them
    files = ChunkFiles(chain_cache / "changes" / f"{name}-{key}", durable=False)
    held: dict[str, set[str]] | None = {} if events.holdings is not None else None
    touched = set(discover(client, events, since_block + 1, block, files, chunk_blocks=chunk_blocks,
                           max_range=log_range, stats=stats.discovery,
                           progress=lambda done, total: report(f"{label} changes", done, total), holdings=held))
    plan = None if carried is None or accounts is not None else carry.plan(reader, carried, touched)
    if plan is not None and carried is not None:
        if held is not None:
            reader.holdings = _holdings(reader, carried.kept, plan.read, held, carried.places(plan.read))
        cache.put(f"{KEPT}{since_block}", _referring_chunk(plan, since_block, block))
        stats.accounts_refreshed[label] = stats.accounts_carried[label] = int(plan.carried.sum())
        return Plan(plan.tables(), plan.read, plan)
    if accounts is not None:
        wanted = set(accounts)      # as the readers name them: checksummed (discovery, account files)
        touched &= wanted
        previous = previous.take(pd.Index(previous.accounts).isin(list(wanted)))
    untouched = previous.without(touched)
    refreshed = reader.refresh_accounts(untouched)
    if held is not None:
        read = sorted(touched | set(refreshed.again))
        reader.holdings = _holdings(reader, previous, read, held)
    # a later rescan from this block starts from these (the accounts read have theirs beside their rows)
    cache.put(f"{KEPT}{since_block}", _kept_chunk(refreshed, untouched, touched, since_block, block,
                                                   by_reference=accounts is None and refers < MAX_REFERENCES))
    stats.accounts_refreshed[label] = len(untouched) - len(refreshed.again)
    return Plan(refreshed.tables, sorted(touched | set(refreshed.again)), None)


def _referring_chunk(plan: carry.Carry, since_block: int, block: int) -> dict:
    """The ``kept-from-*`` chunk of a carrying rescan (what a rescan that does not carry reads,
    :func:`kept_state_and_refers`): the earlier state less the accounts read or changed, then the
    changed words, by reference while the earlier one refers back fewer than ``MAX_REFERENCES``
    blocks; else the carried accounts' words in full."""
    if plan.earlier.refers < MAX_REFERENCES and since_block < block:
        dropped = sorted(set(plan.read) | set(carry.decoded(plan.state.names[plan.changed])))
        return {"base": since_block, "dropped": dropped, "changed": plan.renewed.to_chunk()}
    return plan.kept_now[0].to_chunk()


def _holdings(reader, previous: KeptState, read: list[str], since: dict[str, set[str]],
              places: np.ndarray | None = None) -> dict[str, list[str]] | None:
    """The holdings of the accounts a rescan reads in full: those each had at the earlier block
    (:meth:`protocols.base.Reader.kept_holdings`) and those the change events show since (a
    holding becomes non-zero only through one); None where the reader cannot say (read in full).
    ``places``: each read account's place in ``previous`` (-1: none), where known."""
    if places is None:
        wanted = set(read)
        mask = np.fromiter(map(wanted.__contains__, previous.accounts.tolist()), dtype=bool, count=len(previous))
    else:
        mask = np.zeros(len(previous), dtype=bool)
        mask[places[places >= 0]] = True
    kept = reader.kept_holdings(previous.take(mask))
    if kept is None:
        return None
    out = {account: set(kept.get(account, ())) | since.get(account, set()) for account in read}
    return {account: sorted(holdings) for account, holdings in out.items()}


def _kept_chunk(refreshed: Refreshed, untouched: KeptState, touched: set[str], since_block: int, block: int,
                by_reference: bool) -> dict:
    """The kept words of the accounts a rescan computed, as stored. Where the reader says which
    accounts' words are unchanged (``refreshed.carried``), those are kept by reference: the
    earlier block's state less the accounts whose words are not carried (``dropped``), then the
    words that changed, a few thousand words for a 1% change instead of every account's (writing
    them all was a tenth of a mainnet-scale rescan). Written in full without a reference, after
    ``MAX_REFERENCES`` rescans in a row (a rescan's load stays bounded), or with an account list."""
    carried = refreshed.carried
    if carried is None:
        return refreshed.state.to_chunk()
    if not by_reference or since_block >= block:
        return KeptState.concat([untouched.take(carried), refreshed.state]).to_chunk()
    dropped = sorted(touched | set(untouched.accounts[~carried].tolist()))
    return {"base": since_block, "dropped": dropped, "changed": refreshed.state.to_chunk()}


def _rows_to_snapshot(rows: list[Rows], frames: dict[str, pd.DataFrame] | None = None) -> Snapshot:
    """Readers' rows (and ``frames``: tables computed at once, after them) as a Snapshot; their
    ``excluded`` rows (markets read but left out) go to the meta. Each table's parts (row dicts or
    :data:`analyzer.model.Columns`, one per chunk, and its frame) are put together once
    (:func:`concat_tables`)."""
    tables: dict[str, list[Table | pd.DataFrame]] = {}
    for part in rows:
        for name, table_rows in part.items():
            if name.startswith("_"):
                continue    # a reader's own state for later rescans, not a snapshot table
            tables.setdefault(name, []).append(table_rows)
    excluded = [row for part in tables.pop(EXCLUDED, []) for row in part]
    for name, frame in (frames or {}).items():
        tables.setdefault(name, []).append(frame)
    built = {name: concat_tables(name, parts) for name, parts in tables.items()}
    return Snapshot.of_tables({EXCLUDED: excluded} if excluded else {}, built)     # typed: as they are


def scan_protocol(label: str, reader, cache: ChunkCache, accounts, discovered, from_block, block, chunk_accounts,
                  workers, progress, stats: ScanStats, refreshed: dict[str, pd.DataFrame] | None = None) -> Snapshot:
    """The protocol's markets and ``accounts`` (None: discovered) read in cached chunks, with
    ``refreshed`` (tables an incremental rescan computed) as one Snapshot."""
    markets = _cached(cache, "markets", reader.read_markets, stats)
    if accounts is None:
        found = _cached(cache, f"accounts-{from_block}-{block}", discovered, stats)
        targets = _ascending(found["accounts"])
        reader.holdings = found["holdings"]     # the discovered accounts' holdings: read only those
    else:
        targets = sorted(set(accounts))
    stats.accounts[label] = len(targets)
    report = progress or (lambda label, done, total: None)
    positions = _read_positions(reader, cache, targets, chunk_accounts, workers,
                                lambda done: report(f"{label} accounts", done, len(targets)), stats)
    return _rows_to_snapshot([markets, *positions], refreshed)


def _ascending(accounts: Sequence[str]) -> list[str]:
    """``sorted(set(accounts))``, the list as it is where it is so already (discovery's is): sorting
    10^5 addresses again was a hundredth of a scan's Python time."""
    listed = list(accounts)
    return listed if all(map(operator.lt, listed, islice(listed, 1, None))) else sorted(set(listed))


def _cached(cache: ChunkCache, name: str, read, stats: ScanStats) -> Any:
    """The chunk ``name`` from the cache, else ``read()`` kept there."""
    value = cache.get(name)
    if isinstance(value, dict):
        stats.chunks_cached += 1
        return value
    value = read()
    cache.put(name, value)
    stats.chunks_read += 1
    return value


def _chunks(targets: list[str], chunk_accounts: int) -> tuple[list[list[str]], list[str]]:
    """``targets`` in chunks of ``chunk_accounts``, and each chunk's name in the cache."""
    chunks = [targets[i:i + chunk_accounts] for i in range(0, len(targets), chunk_accounts)]
    return chunks, [accounts_digest(chunk) for chunk in chunks]


def read_state(cache: ChunkCache, targets: list[str], chunk_accounts: int) -> KeptState | None:
    """The kept words of ``targets`` as :func:`_read_positions` read them in ``cache``; None
    where a chunk kept none."""
    return KeptState.from_chunks(cache.get(STATE + name) for name in _chunks(targets, chunk_accounts)[1])


def _read_positions(reader, cache: ChunkCache, targets: list[str], chunk_accounts: int, workers: int,
                    report, stats: ScanStats) -> list[Rows]:
    """The rows of ``targets`` in chunks of ``chunk_accounts``: each from the cache or read (with
    ``workers`` concurrent reads) and kept; ``report(accounts done)`` after each."""
    chunks, names = _chunks(targets, chunk_accounts)
    results: list[Rows | None] = [cache.get(f"positions-{name}") for name in names]
    todo = [index for index, rows in enumerate(results) if rows is None]
    stats.chunks_cached += len(chunks) - len(todo)
    done = sum(len(chunk) for chunk, rows in zip(chunks, results, strict=True) if rows is not None)
    report(done)

    def read(index: int) -> tuple[int, Rows]:
        return index, reader.read_accounts(chunks[index])

    def keep(index: int, rows: Rows) -> None:
        nonlocal done
        name = names[index]
        if "_state" in rows:    # beside the rows, first: a chunk of rows without it is never taken as complete
            cache.put(STATE + name, KeptState.chunk_of(rows.pop("_state")))  # type: ignore[arg-type]
        cache.put(f"positions-{name}", rows)
        results[index] = rows
        stats.chunks_read += 1
        done += len(chunks[index])
        report(done)

    # the first chunk alone: the reader learns its markets once, not once per worker
    for index, rows in map(read, todo[:1]):
        keep(index, rows)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for index, rows in pool.map(read, todo[1:]):
            keep(index, rows)
    return [rows for rows in results if rows is not None]
