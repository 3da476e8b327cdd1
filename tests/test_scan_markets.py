"""Markets read at once (``market_workers``, as ``contagion scan`` reads them) give the snapshot
of markets read in turn; an interrupt in one market stops the others, and a rerun reads no log
range a stopped market finished."""

from __future__ import annotations

import pytest

from analyzer.scan import ScanStats, scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")
CHUNK = 100


def test_markets_read_at_once_stop_together_and_resume_to_the_same_snapshot(devnet, tmp_path):
    known = plugins()
    lenders = [known[n] for n in LENDERS if n in known]
    block = devnet.w3.eth.block_number
    in_turn = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=None)
    markets = sum(len(devnet.book["protocols"][p]) for p in LENDERS if p in devnet.book["protocols"])
    chunks = block // CHUNK + 1
    reported: list[str] = []

    def interrupt(label: str, done: int, total: int) -> None:
        reported.append(label)
        if label == "aave-v3 discovery" and done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, chunk_blocks=CHUNK,
             progress=interrupt, market_workers=4)
    assert len({label.rsplit(" ", 1)[0] for label in reported}) > 1      # the markets did run at once
    stats = ScanStats()
    again = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, chunk_blocks=CHUNK,
                 stats=stats, market_workers=4)
    tables_equal(again, in_turn)
    # the three finished Aave ranges at least are not read again (one request per chunk read)
    assert stats.requests["eth_getLogs"] <= chunks * markets - 3
