"""Account discovery: one ``eth_getLogs`` per block range for all of a protocol's contracts and
topics, cached on disk in block chunks that do not depend on the scan's block.

Shaped like cryo's log datasets: the block axis is cut into fixed chunks (``chunk_blocks``, aligned
to multiples of it); each chunk's result (every account its logs name, with the last block that
named it) is a JSON file ``<lo>-<hi>.json``. A chunk the scan's block cuts short is kept as a
partial file and extended by a later scan; while a chunk is read, the file grows after every
accepted ``eth_getLogs`` range, so an interrupted scan re-reads no range it finished. The cache
folder is keyed by the protocol's addresses and topics and by the hash of the first block, so two
chains (two devnets with one chain id) never share chunks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.checksum import checksum, remember
from analyzer.rpc import RpcClient
from protocols.base import AccountEvents

CHUNK_BLOCKS = 100_000


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

    def __init__(self, root: Path | None, events: AccountEvents | None = None):
        self.root = root
        self.events = events

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
        atomic_write_text(self.root / f"{lo}-{hi}.json",
                          json.dumps({"accounts": accounts, "holdings": holdings}, sort_keys=True))
        if replaces is not None and replaces != hi:
            (self.root / f"{lo}-{replaces}.json").unlink(missing_ok=True)


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

            def keep(a: int, b: int, logs: list[dict], accounts=accounts, held=held, lo=lo, state=state) -> None:
                # the logs as the node sends them (topics and data as hex text, which every reader's
                # events take): converting each topic to bytes took a tenth of a scan
                remember_accounts(logs)
                for log in logs:
                    log["blockNumber"] = int(log["blockNumber"], 16)
                    for account in events.accounts(log):
                        accounts[account] = max(accounts.get(account, 0), log["blockNumber"])
                    for account, holding in events.holdings(log) if events.holdings is not None else ():
                        if holding not in held.setdefault(account, []):
                            held[account].append(holding)
                files.put(lo, b, accounts, held, state["reached"])
                state["reached"] = b
                stats.ranges_read += 1

            client.get_logs(list(events.addresses), [list(events.topics)], reached + 1, hi,
                            max_range=max_range, on_range=keep)
        for account, last in accounts.items():
            found[account] = max(found.get(account, 0), last)
        if holdings is not None:
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
