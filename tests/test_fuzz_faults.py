"""Every transport fault a hosted node shows is survived, and the scan reads the node's head.

tests/rpcserver.FaultProxy sits between the scan and the devnet and injects one of ten fault kinds
on a quarter of all requests (then all ten mixed). The scan is not given a block: it must pin the
head that a quorum of reads agrees on (never a lagging replica's), and produce exactly the
snapshot of a clean scan at the devnet's head. The full-scale version is
``python -m benchmarks.faults``.
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from analyzer.model import TABLES
from analyzer.rpc import RpcClient
from analyzer.scan import scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.rpcserver import FAULT_KINDS, FaultProxy

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")


def lenders():
    known = plugins()
    return [known[n] for n in LENDERS if n in known]


def assert_same_tables(a, b) -> None:
    for name in TABLES:
        left = a.table(name).sort_values(list(a.table(name).columns)).reset_index(drop=True)
        right = b.table(name).sort_values(list(b.table(name).columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right)


@pytest.fixture(scope="module")
def clean(devnet):
    return scan(devnet.url, lenders(), book=devnet.book, cache_dir=None)


@pytest.mark.parametrize("faults", [*[(kind,) for kind in FAULT_KINDS], FAULT_KINDS],
                         ids=[*FAULT_KINDS, "all-mixed"])
def test_a_quarter_of_requests_faulted_still_gives_the_clean_snapshot_at_the_head(devnet, clean, faults):
    head = devnet.w3.eth.block_number
    with FaultProxy(devnet.url, faults=faults, rate=0.25, seed=11, delay_s=0.05) as proxy:
        client = RpcClient(proxy.url, timeout=5, backoff_s=0.001, max_backoff_s=0.01, max_retries=12)
        got = scan(proxy.url, lenders(), book=devnet.book, cache_dir=None, client=client, log_range=200)
    assert sum(proxy.injected.values()) >= 5, f"{faults} was hardly injected: {proxy.injected}"
    assert got.meta["block_number"] == head == clean.meta["block_number"]
    assert_same_tables(got, clean)


class ScriptedProxy(FaultProxy):
    """Injects ``script[i]`` on the i-th request of ``method`` (nothing on the others)."""

    def __init__(self, upstream: str, method: str, script: list):
        super().__init__(upstream, faults=(), rate=0.0)
        self.method, self.script, self.asked = method, list(script), 0

    def choose(self, request: dict) -> str | None:
        if request.get("method") != self.method:
            return None
        with self.lock:
            self.asked += 1
            return self.script[self.asked - 1] if self.asked <= len(self.script) else None


def test_a_lagging_first_answer_does_not_pin_an_older_block(devnet):
    """The first and third eth_blockNumber come from replicas 1-8 blocks behind the head."""
    head = devnet.w3.eth.block_number
    with ScriptedProxy(devnet.url, "eth_blockNumber", ["stale", None, "stale", None]) as proxy:
        client = RpcClient(proxy.url)
        assert client.head_block() == head
        assert proxy.injected["stale"] == 2


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_connection_closed_mid_answer_is_retried(devnet, chunked):
    """The failure of round one: the body stops half-way (urllib3 IncompleteRead, requests'
    ChunkedEncodingError); a plain requests call fails on it, the client asks again."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    with ScriptedProxy(devnet.url, "eth_chainId", ["mid_close", "mid_close"]) as proxy:
        proxy.chunked = chunked
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            requests.post(proxy.url, json=request, timeout=5)
        client = RpcClient(proxy.url, backoff_s=0.001)
        assert client.chain_id() == devnet.w3.eth.chain_id
        assert client.retries["eth_chainId"] == 1 and proxy.injected["mid_close"] == 2
