"""A scan killed (SIGKILL, no cleanup) at random points and rerun ends in the snapshot of an
uninterrupted scan, and the rerun reads no log range and no account chunk that a killed run finished."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from analyzer.rpc import RpcClient
from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")
CHUNK_BLOCKS, CHUNK_ACCOUNTS = 100, 20
SCRIPT = f"""
import json, sys
from pathlib import Path
from analyzer.scan import scan
from protocols import plugins
url, book, block, cache = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), int(sys.argv[3]), Path(sys.argv[4])
known = plugins()
scan(url, [known[n] for n in {LENDERS!r} if n in known], book=book, block=block, cache_dir=cache,
     chunk_blocks={CHUNK_BLOCKS}, chunk_accounts={CHUNK_ACCOUNTS}, workers=1, market_workers=4)
"""


class RecordingClient(RpcClient):
    """Remembers every eth_getLogs range asked, with the addresses it asked for."""

    def __init__(self, url: str):
        super().__init__(url)
        self.ranges: list[tuple[frozenset, int, int]] = []

    def request(self, method, params=(), **options):
        if method == "eth_getLogs":
            query = params[0]
            addresses = query["address"] if isinstance(query["address"], list) else [query["address"]]
            self.ranges.append((frozenset(a.lower() for a in addresses), int(query["fromBlock"], 16),
                                int(query["toBlock"], 16)))
        return super().request(method, params, **options)


def cached_ranges(cache: Path) -> dict[str, list[tuple[int, int]]]:
    """Per event-set folder, the block ranges its chunk files hold."""
    found: dict[str, list[tuple[int, int]]] = {}
    for path in cache.rglob("logs/*/*.json"):
        lo, hi = (int(x) for x in path.stem.split("-"))
        found.setdefault(path.parent.name, []).append((lo, hi))
    return found


def test_killed_scans_resume_to_the_same_snapshot_without_rereading(devnet, tmp_path):
    known = plugins()
    lenders = [known[n] for n in LENDERS if n in known]
    block = devnet.w3.eth.block_number
    book = tmp_path / "book.json"
    book.write_text(json.dumps(devnet.book))
    cache = tmp_path / "cache"
    rng = random.Random(19)
    for kill in range(3):
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, devnet.url, str(book), str(block), str(cache)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kill == 0:       # the first run is killed once it has finished a log range (imports are slow under load)
            deadline = time.monotonic() + 300
            while not any(cache.rglob("logs/*/*-*.json")) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        else:
            time.sleep(rng.uniform(2.5, 6.0))    # imports take ~2 s; then discovery and reads
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = cached_ranges(cache)
    positions_done = len(list(cache.rglob("positions-*.chunk")))
    client, stats = RecordingClient(devnet.url), ScanStats()
    resumed = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=cache, chunk_blocks=CHUNK_BLOCKS,
                   chunk_accounts=CHUNK_ACCOUNTS, stats=stats, client=client)
    tables_equal(resumed, scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=None))
    # which event-set folder each request belongs to: the one that asked the same addresses
    assert before, "no killed run finished a log range: kill later"
    folders = {path.name: path for path in cache.rglob("logs/*") if path.is_dir()}
    folder_of = {frozenset(json.loads((folders[name] / "events.txt").read_text())["addresses"]): name
                 for name in before}
    for addresses, lo, hi in client.ranges:
        for done_lo, done_hi in before.get(folder_of.get(addresses, ""), []):
            assert hi < done_lo or lo > done_hi, f"re-read [{lo}, {hi}] which a killed run finished"
    assert stats.chunks_cached >= positions_done     # finished account chunks are not read again
