"""Replay with an L2 sequencer down: Aave's real PriceOracleSentinel (@aave-dao/aave-v3-origin) set on
the devnet over a sequencer-uptime feed that says down. The replay no longer stops: the keepers
liquidate only what the protocol's rule permits (``Rules.sentinel_permits``: HF < 0.95 on Aave),
skip the others with the reason, and the chain refuses none of what they send."""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import to_checksum_address

from analyzer.books import market_of
from analyzer.cheats import read, send_as
from analyzer.devnet.solc import fixture_artifact
from analyzer.replay import replay
from analyzer.scan import scan
from analyzer.scenarios import ShockScenario
from protocols import plugins
from protocols.aave_v3 import origin
from protocols.aave_v3.rules import AaveV3Rules
from tests.conftest import requires_anvil
from tests.test_aave_v3_sentinel import GRACE_SECONDS, _deploy

pytestmark = requires_anvil


@pytest.mark.slow
def test_a_replay_with_the_sequencer_down_liquidates_only_what_the_sentinel_permits(chain_checkpoint):
    devnet = chain_checkpoint
    w3 = devnet.w3
    pool = market_of(devnet.book, "aave-v3")["pool"]
    provider = to_checksum_address(read(w3, pool, "ADDRESSES_PROVIDER()(address)"))
    feed = _deploy(w3, fixture_artifact("oracles", "PriceFeed"), "L2 sequencer uptime", 1)   # 1: down
    sentinel = _deploy(w3, origin.artifact("PriceOracleSentinel"), provider, feed, GRACE_SECONDS)
    send_as(w3, read(w3, provider, "owner()(address)"), provider, "setPriceOracleSentinel(address)", sentinel)

    chosen = [plugins()[name] for name in ("aave-v3", "uniswap-v3")]
    before = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    result = replay(devnet.url, devnet.book, ShockScenario(name="weth-30", price_shocks={"WETH": -0.30}),
                    chosen, max_rounds=1)

    rules, oracle = AaveV3Rules(), result.rounds[0].prices_usd
    exempt, paused = set(), set()
    for book in rules.books(before):
        prices = np.array([oracle[a] for a in book.assets])
        hf = rules.health_factor(book, prices)
        flagged = rules.liquidatable(book, prices)
        exempt |= {str(a) for a in book.accounts[flagged & (hf < AaveV3Rules.SENTINEL_EXEMPT_HEALTH_FACTOR)]}
        paused |= {str(a) for a in book.accounts[flagged & (hf >= AaveV3Rules.SENTINEL_EXEMPT_HEALTH_FACTOR)]}
    assert exempt and paused, "a 30% WETH fall must put seeded accounts on both sides of HF 0.95"
    liquidated = {x.account for x in result.rounds[0].liquidations if x.protocol == "aave-v3"}
    assert liquidated and liquidated <= exempt
    skips = {(s.protocol, s.account): s.reason for s in result.skips}
    for account in paused:
        assert skips.get(("aave-v3", account), "").startswith("paused: the sequencer-uptime feed"), account
    # nothing the keepers sent was refused (the sentinel's PriceOracleSentinelCheckFailed included)
    assert not [r for r in skips.values() if r.startswith("refused")]
    assert any("restricted to what its sequencer check permits" in note for note in result.oracle_notes)
