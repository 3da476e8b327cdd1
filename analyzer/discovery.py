"""Account discovery: one ``eth_getLogs`` per block range for all of a protocol's contracts and
topics, cached on disk in block chunks that do not depend on the scan's block.

Shaped like cryo's log datasets: the block axis is cut into fixed chunks (``chunk_blocks``, aligned
to multiples of it); each chunk's result (every account its logs name, with the last block that
named it) is a JSON file ``<lo>-<hi>.json``. A chunk the scan's block cuts short is kept as a
partial file and extended by a later scan; while a chunk is read, the file grows after every
accepted ``eth_getLogs`` range, so an interrupted scan re-reads no range it finished. The cache
folder is keyed by the protocol's addresses and topics and by the hash of the first block, so two
chains (two devnets with one chain id) never share chunks.

Logs arrive as columns (:mod:`analyzer.loganswer`); a protocol that declares where its events
name accounts and holdings (:class:`protocols.base.EventField`) has them decoded for every log of a
range at once with numpy, and every distinct account checksummed once; otherwise its functions
read the logs one by one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from analyzer.atomic import atomic_write_bytes, atomic_write_text
from analyzer.checksum import checksum, remember, remember_hex_column
from analyzer.logcolumns import HEX_VALUE, LogColumns
from analyzer.rpc import RpcClient
from protocols.base import AccountEvents, EventField

CHUNK_BLOCKS = 100_000
Checksummed = tuple[np.ndarray, list[str]]      # distinct S40 digits, sorted, and their checksummed forms


__all__ = ["checksum"]      # readers checksum the accounts their logs name with it (analyzer.checksum)
ADDRESS_PADDING = "0x" + "0" * 24     # a topic or word holding an address


@dataclass
class DiscoveryStats:
    ranges_read: int = 0        # eth_getLogs ranges fetched from the node
    chunks_cached: int = 0      # chunks taken whole from the cache
    chunks_read: int = 0        # chunks (or their missing tails) read from the node


def remember_accounts(logs: list[dict]) -> None:
    """Checksum, in one batch, every address-shaped topic and data word of ``logs`` (as the node
    sends them: hex text) in both forms readers ask for (``0x`` text, 20 bytes): the readers'
    ``accounts`` / ``holdings`` then find each account they name already checksummed."""
    words = {t for log in logs for t in log["topics"][1:]}
    words.update("0x" + d[i:i + 64] for log in logs if len(d := log.get("data", "0x")) <= 2 + 64 * 8
                 for i in range(2, len(d) - 63, 64))
    # an amount is zero-padded too, but rarely in the address's first four bytes (a word missed here
    # is checksummed when a reader asks for it)
    addresses = {"0x" + w[26:].lower() for w in words if len(w) == 66 and w.startswith(ADDRESS_PADDING)
                 and w[26:34] != "00000000"}
    remember([*addresses, *(bytes.fromhex(a[2:]) for a in addresses)])


class ChunkFiles:
    """The chunk files of one protocol's event set; ``None`` root keeps nothing. With ``events``,
    the folder also names what it caches (``events.txt``: the addresses and topics asked)."""

    def __init__(self, root: Path | None, events: AccountEvents | None = None, *, durable: bool = True):
        self.root = root
        self.events = events
        self.durable = durable      # False: no fsync (a file a crash of the machine damaged is read again)

    def best(self, lo: int, hi: int) -> tuple[int, dict[str, int], dict[str, list[str]]] | None:
        """The cached chunk starting at ``lo`` that reaches furthest without passing ``hi``:
        (its end, account -> last block, account -> holdings)."""
        if self.root is None or not self.root.is_dir():
            return None
        ends = [int(p.stem.split("-")[1]) for p in self.root.glob(f"{lo}-*.json")]
        for end in sorted((e for e in ends if e <= hi), reverse=True):
            try:
                data = json.loads((self.root / f"{lo}-{end}.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue  # a damaged file is read again
            if isinstance(data, dict) and isinstance(data.get("accounts"), dict):
                return end, data["accounts"], data.get("holdings", {})
        return None

    def put(self, lo: int, hi: int, accounts: dict[str, int], holdings: dict[str, list[str]],
            replaces: int | None) -> None:
        if self.root is None:
            return
        if self.events is not None and not (self.root / "events.txt").is_file():
            atomic_write_text(self.root / "events.txt", json.dumps(
                {"addresses": sorted(a.lower() for a in self.events.addresses), "topics": sorted(self.events.topics)}))
        # orjson: the bytes json.dumps(..., separators=(",", ":")) writes, in a tenth of its time (10^5
        # accounts a chunk); an integer past 64 bits raises, never rounds
        atomic_write_bytes(self.root / f"{lo}-{hi}.json", orjson.dumps({"accounts": accounts, "holdings": holdings}),
                           durable=self.durable)
        if replaces is not None and replaces != hi:
            (self.root / f"{lo}-{replaces}.json").unlink(missing_ok=True)


def take_logs(events: AccountEvents, logs: LogColumns, accounts: dict[str, int],
              held: dict[str, list[str]]) -> None:
    """Add the accounts ``logs`` name (with the last block naming each) to ``accounts``, and the
    holdings they show to ``held``: in bulk where ``events`` declares its fields, else through the
    reader's functions, log by log."""
    if events.account_fields:
        named, checksummed = declared_accounts(logs, events.account_fields)
        if not accounts:        # a chunk's first range: nothing to compare with
            accounts.update(named)
        else:
            for account, last in named.items():
                accounts[account] = max(accounts.get(account, 0), last)
        if events.holdings is not None:
            names, held_names, account_of, holding_of = holding_pairs(logs, events.holding_fields, checksummed)
            if not held:        # a chunk's first range: the pairs are distinct already, grouped at once
                held.update(_grouped(names, held_names, account_of, holding_of))
                return
            for a, h in zip(account_of.tolist(), holding_of.tolist(), strict=True):
                account, holding = names[a], held_names[h]
                if holding not in held.setdefault(account, []):
                    held[account].append(holding)
        return
    rows = logs.dicts()
    remember_accounts(rows)
    for log in rows:
        for account in events.accounts(log):
            accounts[account] = max(accounts.get(account, 0), log["blockNumber"])
        for account, holding in events.holdings(log) if events.holdings is not None else ():
            if holding not in held.setdefault(account, []):
                held[account].append(holding)


def _named(logs: LogColumns, spec: EventField) -> tuple[np.ndarray, np.ndarray]:
    """(the logs ``spec`` names an address in, as indices; those addresses, lower-case hex without
    ``0x``, as ``S40``)."""
    counts, starts = logs.topic_counts, logs.topic_starts
    mask = logs.of_event(spec.topic0, spec.emitters)
    if spec.topic is not None:
        index = np.flatnonzero(mask & (counts > spec.topic))
        words = logs.topics[starts[index] + spec.topic]
    else:
        index = np.flatnonzero(mask)
        has, words = logs.data_words(index, int(spec.word or 0))
        index = index[has]
    named = _address_of(words)
    keep = np.ones(len(index), dtype=bool)
    if spec.skip_zero:
        keep &= named != b"0" * 40
    if spec.skip_emitter:
        keep &= named != _address_of(logs.address[index])
    return index[keep], named[keep]


def _address_of(words: np.ndarray) -> np.ndarray:
    """The last 40 hex digits of each ``0x`` word (a topic, a data word or an address) as ``S40``."""
    if not len(words):
        return np.empty(0, dtype="S40")
    width = words.dtype.itemsize
    digits = np.frombuffer(words.astype(f"S{width}").tobytes(), dtype="S1").reshape(len(words), width)
    return np.ascontiguousarray(digits[:, width - 40:]).view("S40").ravel()


def declared_accounts(logs: LogColumns, fields: tuple[EventField, ...]) -> tuple[dict[str, int], Checksummed]:
    """Every account ``fields`` name in ``logs`` (checksummed) with the last block naming it, and the
    accounts' digits (sorted) with their checksummed forms (what :func:`holding_pairs` looks up)."""
    index = [_named(logs, spec) for spec in fields]
    if not index:
        return {}, (np.empty(0, "S40"), [])
    named = np.concatenate([n for _, n in index])
    blocks = np.concatenate([logs.block[i] for i, _ in index])
    unique, _, order, starts = _distinct(named)
    last = np.maximum.reduceat(blocks[order], starts) if len(starts) else np.empty(0, np.int64)
    checksummed = _checksummed(unique)
    return dict(zip(checksummed, last.tolist(), strict=True)), (unique, checksummed)


def _distinct(digits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(digits, return_inverse=True)`` of ``S40`` lower-case hex digits, with the sort
    behind it: (the distinct values, sorted; each value's index among them; the stable order that
    sorts ``digits``; where each distinct value starts in it). Sorted on the first 16 digits as one
    integer (numpy's string sort compares byte by byte, three times slower), on the whole only where
    two different values share those."""
    count = len(digits)
    digits = np.ascontiguousarray(digits, dtype="S40")
    nibbles = HEX_VALUE[digits.view(np.uint8).reshape(count, 40)[:, :16]]
    key = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2]).view(">u8").ravel()
    order = np.argsort(key, kind="stable")
    ordered = digits[order]
    same = ordered[1:] == ordered[:-1]
    if not np.array_equal(same, key[order][1:] == key[order][:-1]):     # alike in their first 16 digits only
        order = np.argsort(digits, kind="stable")
        ordered = digits[order]
        same = ordered[1:] == ordered[:-1]
    new = np.concatenate([np.ones(min(count, 1), dtype=bool), ~same])
    starts = np.flatnonzero(new)
    inverse = np.empty(count, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return ordered[starts], inverse, order, starts


def _checksummed(unique: np.ndarray, known: Checksummed | None = None) -> list[str]:
    """Checksummed ``0x`` addresses of distinct ``S40`` lower-case hex digits (remembered: an
    account named in many ranges and by holdings is hashed once a scan); taken from ``known``
    (sorted digits and their checksummed forms) where it has them all: a holding's account is
    one the same logs named (no lookup per address)."""
    if known is not None and len(known[0]) and len(unique):
        at = np.minimum(np.searchsorted(known[0], unique), len(known[0]) - 1)
        if np.array_equal(known[0][at], unique):
            return list(map(known[1].__getitem__, at.tolist()))
    return remember_hex_column(unique)


def holding_pairs(logs: LogColumns, fields: tuple[EventField, ...], accounts_known: Checksummed | None = None
                  ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Every (account, holding) pair ``fields`` name in ``logs``, once each, in log order: (the
    accounts, checksummed (those in ``accounts_known`` taken from it); the holdings, as spelled;
    per pair, the index of its account in the first and of its holding in the second)."""
    order, accounts, holdings = [], [], []
    for spec in fields:
        index, named = _named(logs, spec)
        if spec.holding_topic is None:
            held = _address_of(logs.address[index])
            spelled = {e.lower()[2:].encode(): e for e in spec.emitters}
        else:
            has = logs.topic_counts[index] > spec.holding_topic
            index, named = index[has], named[has]
            held = _address_of(logs.topics[logs.topic_starts[index] + spec.holding_topic])
            spelled = None
        order.append(index)
        accounts.append(named)
        holdings.append((held, spelled))
    if not order:
        return [], [], np.empty(0, np.int64), np.empty(0, np.int64)
    order_all = np.concatenate(order)
    sort = np.argsort(order_all, kind="stable")
    named_all = np.concatenate(accounts)[sort]
    held_all = np.concatenate([h for h, _ in holdings])[sort]
    spelled = {k: v for _, s in holdings if s for k, v in s.items()}
    names_unique, names_inverse, _, _ = _distinct(named_all)
    held_unique, held_inverse, _, _ = _distinct(held_all)
    # the distinct pairs (one integer each), in log order
    _, first = np.unique(names_inverse.astype(np.int64) * len(held_unique) + held_inverse, return_index=True)
    first.sort()
    names = _checksummed(names_unique, accounts_known)
    held_names = [spelled.get(h) or c for h, c in zip(held_unique.tolist(), _checksummed(held_unique), strict=True)]
    return names, held_names, names_inverse[first], held_inverse[first]


def _grouped(names: list[str], held_names: list[str], account_of: np.ndarray,
             holding_of: np.ndarray) -> dict[str, list[str]]:
    """Distinct (account, holding) pairs (indices into ``names`` / ``held_names``) as account ->
    its holdings in the pairs' order: one step per account, not per pair."""
    if not len(account_of):
        return {}
    by_account = np.argsort(account_of, kind="stable")     # each account's pairs in their order
    accounts = account_of[by_account]
    starts = np.flatnonzero(np.r_[True, accounts[1:] != accounts[:-1]])
    holdings = [held_names[h] for h in holding_of[by_account].tolist()]
    ends = [*starts[1:].tolist(), len(holdings)]
    return {names[a]: holdings[lo:hi] for a, lo, hi in zip(accounts[starts].tolist(), starts.tolist(), ends,
                                                           strict=True)}


def chunks(start: int, end: int, chunk_blocks: int) -> list[tuple[int, int]]:
    """``[start, end]`` cut at multiples of ``chunk_blocks``."""
    out, lo = [], start
    while lo <= end:
        hi = min((lo // chunk_blocks + 1) * chunk_blocks - 1, end)
        out.append((lo, hi))
        lo = hi + 1
    return out


def discover(client: RpcClient, events: AccountEvents, start: int, end: int, files: ChunkFiles, *,
             chunk_blocks: int = CHUNK_BLOCKS, max_range: int = CHUNK_BLOCKS,
             progress: Callable[[int, int], None] = lambda done, total: None,
             stats: DiscoveryStats | None = None, holdings: dict[str, set[str]] | None = None) -> dict[str, int]:
    """Every account ``events`` name in ``[start, end]``, with the last block that named it; with
    ``holdings`` (and ``events.holdings``), also every account's holdings the logs show, added to it."""
    stats = stats if stats is not None else DiscoveryStats()
    found: dict[str, int] = {}
    parts = chunks(start, end, chunk_blocks)
    progress(0, len(parts))
    for done, (lo, hi) in enumerate(parts, start=1):
        cached = files.best(lo, hi)
        reached, accounts, held = cached if cached is not None else (lo - 1, {}, {})
        if reached == hi:
            stats.chunks_cached += 1
        else:
            stats.chunks_read += 1
            state = {"reached": None if cached is None else reached}

            def keep(a: int, b: int, logs: LogColumns, accounts=accounts, held=held, lo=lo, state=state) -> None:
                take_logs(events, logs, accounts, held)
                files.put(lo, b, accounts, held, state["reached"])
                state["reached"] = b
                stats.ranges_read += 1

            client.get_logs(list(events.addresses), [list(events.topics)], reached + 1, hi,
                            max_range=max_range, on_range=keep, columns=True)
        if not found:           # the first chunk: nothing to compare with
            found.update(accounts)
        else:
            for account, last in accounts.items():
                found[account] = max(found.get(account, 0), last)
        if holdings is not None and not holdings:       # the first chunk: each account's set made at once
            holdings.update(zip(held, map(set, held.values()), strict=True))
        elif holdings is not None:
            for account, indexes in held.items():
                holdings.setdefault(account, set()).update(indexes)
        progress(done, len(parts))
    return found


def load_log_span(path: Path | None) -> int | None:
    try:
        return int(json.loads(path.read_text())["log_span"]) if path is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_log_span(path: Path | None, span: int | None) -> None:
    if path is not None and span is not None:
        atomic_write_text(path, json.dumps({"log_span": span}))
