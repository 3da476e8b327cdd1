"""mainnet-scale (issue 19): on ~100,000 discovered accounts, the lens read under each account's
holdings gives the snapshot of the lens read in full, and the Multicall3 read of every one of them
(a node without state overrides: minutes) the same snapshot, table for table.

Building the mainnet-scale devnet takes many minutes (loading its cached state, seconds), so this
runs only when asked: ``CONTAGION_SCALE_TESTS=1 pytest tests/test_scan_scale.py``. With
``CONTAGION_SCALE_STATE=DIR`` it loads a mainnet-scale devnet saved beforehand (``DIR/state.json``,
``DIR/book.json``, as ``benchmarks.scan --state``) instead of building or loading the cached one.
"""

from __future__ import annotations

import os

import pytest

from analyzer.scan import scan
from protocols import parse_protocols
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal

pytestmark = [requires_anvil, pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("CONTAGION_SCALE_TESTS") != "1",
                                 reason="mainnet-scale devnet: set CONTAGION_SCALE_TESTS=1")]
LENDERS = "aave-v3,compound-v2,comet"


@pytest.fixture(scope="module")
def scale():
    import json
    from pathlib import Path

    from analyzer.chain import Anvil
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import CHAIN_ID, CODE_SIZE_LIMIT, RunningDevnet, start_devnet

    scenario = scenario_mod.load("mainnet-scale")
    saved = os.environ.get("CONTAGION_SCALE_STATE")
    if saved:
        anvil = Anvil(chain_id=CHAIN_ID, load_state=Path(saved) / "state.json", code_size_limit=CODE_SIZE_LIMIT)
        running = RunningDevnet(anvil.start(), json.loads((Path(saved) / "book.json").read_text()), scenario)
    else:
        running = start_devnet(scenario, parse_protocols(None))
    with running:
        yield running


def test_the_masked_lens_equals_the_full_lens_and_multicall(scale):
    lenders = parse_protocols(LENDERS)
    block = scale.w3.eth.block_number
    discovered = scan(scale.url, lenders, book=scale.book, block=block, cache_dir=None, oracle_paths=False)
    accounts = sorted(set(discovered.accounts["account"]) | set(discovered.positions["account"]))
    assert len(accounts) >= 100_000
    full = scan(scale.url, lenders, book=scale.book, block=block, accounts=accounts, cache_dir=None,
                oracle_paths=False)
    tables_equal(discovered, full)
    through_multicall = scan(scale.url, lenders, book=scale.book, block=block, accounts=accounts, cache_dir=None,
                             oracle_paths=False, use_lens=False)
    assert len(through_multicall.positions) >= 100_000
    tables_equal(discovered, through_multicall)
