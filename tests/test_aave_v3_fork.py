"""Reading a fork of the devnet gives the same snapshot as reading the devnet itself."""

from __future__ import annotations

import pandas as pd

from analyzer.books import market_of
from analyzer.chain import Anvil
from analyzer.model import TABLES
from protocols.aave_v3.reader import read_snapshot
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def test_fork_of_the_devnet_reads_identically(devnet):
    deployment = market_of(devnet.book, "aave-v3")
    block = devnet.w3.eth.block_number
    direct = read_snapshot(devnet.w3, deployment, block)
    with Anvil(fork_url=devnet.url, fork_block=block) as fork:
        assert fork.w3.eth.block_number == block
        forked = read_snapshot(fork.w3, deployment, block)
    assert len(direct.positions) > 600
    for name in TABLES:
        pd.testing.assert_frame_equal(direct.table(name), forked.table(name), check_exact=True, obj=name)


def test_the_scan_path_reads_the_same_aave_rows(devnet):
    """``analyzer.scan.scan`` (chunked logs, threaded account chunks) gives the reader's rows."""
    from analyzer.scan import scan
    from protocols import get

    deployment = market_of(devnet.book, "aave-v3")
    block = devnet.w3.eth.block_number
    direct = read_snapshot(devnet.w3, deployment, block)
    scanned = scan(devnet.url, [get("aave-v3")], block=block, book=devnet.book, cache_dir=None,
                   chunk_accounts=50, log_range=100, workers=2)
    for name in ("positions", "accounts", "markets"):
        ours = direct.table(name).sort_values(list(direct.table(name).columns[:5])).reset_index(drop=True)
        theirs = scanned.table(name)
        theirs = theirs[theirs["protocol"] == "aave-v3"]
        theirs = theirs.sort_values(list(theirs.columns[:5])).reset_index(drop=True)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True, obj=name)
