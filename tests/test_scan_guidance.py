"""Guidance for real nodes: a pruned block is one clear error at once; a large book scanned through
--fork-url is told that --rpc is the scan path."""

from __future__ import annotations

import json
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from analyzer import scanning
from analyzer.errors import ContagionError
from analyzer.rpc import RpcClient
from analyzer.scan import scan
from protocols import plugins
from tests.conftest import requires_anvil
from tests.rpcserver import _reply, _Server

pytestmark = requires_anvil


class PrunedNode(_Server):
    """Forwards to anvil, but answers every read of state at a past block as a geth full node does."""

    def __init__(self, upstream: str, head: int):
        self.upstream, self.head, self.calls, self.asked = upstream, head, 0, []

        def factory(server):
            class Handler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_POST(self):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    request = json.loads(body)
                    if request.get("method") == "eth_call":
                        server.calls += 1
                        server.asked.append(json.dumps(request["params"], sort_keys=True))
                        if int(request["params"][1], 16) < server.head:
                            error = {"code": -32000, "message": "missing trie node 0badc0ffee (path ) <nil>"}
                            return _reply(self, 200, json.dumps({"jsonrpc": "2.0", "id": request["id"],
                                                                 "error": error}).encode())
                    forward = urllib.request.Request(server.upstream, data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(forward, timeout=60) as response:
                        return _reply(self, 200, response.read())
            return Handler

        super().__init__(factory)


def test_a_pruned_block_is_one_error_naming_the_archive_node_at_once(devnet):
    head = devnet.w3.eth.block_number
    with PrunedNode(devnet.url, head) as node, pytest.raises(ContagionError, match="archive node") as raised:
        scan(node.url, [plugins()["aave-v3"]], book=devnet.book, block=head - 1, cache_dir=None,
             client=RpcClient(node.url, backoff_s=0.001))
    assert "\n" not in str(raised.value)
    # not retried as if the node were lagging: the scan follows the oracle paths while it reads the
    # markets, so two different reads may be in flight when the first answer comes; none is asked twice
    assert 1 <= node.calls <= 2 and len(set(node.asked)) == node.calls, node.asked


def test_a_large_book_through_a_fork_is_pointed_to_rpc(devnet, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(scanning, "LARGE_BOOK_ACCOUNTS", 100)
    book = tmp_path / "book.json"
    book.write_text(json.dumps(devnet.book))
    with caplog.at_level("INFO", logger="analyzer.scanning"):
        scanning.run_scan(rpc=None, fork_url=devnet.url, block=None, protocols="aave-v3", book=book, accounts=None,
                          from_block=None, out=tmp_path / "snapshot", use_cache=False, venues=False)
    said = [record.getMessage() for record in caplog.records]
    assert any("note:" in line and "--rpc URL is the scan path" in line for line in said), said
