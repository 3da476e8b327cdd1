"""The loopback transport of RpcClient (analyzer.rpc.loopback_target): which URLs take it, and that a
node sees the same requests from it as from requests (path, query, credentials, body), with kept-alive
connections reopened where the node closed them, never counted as a retry."""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analyzer.rpc import RpcClient, loopback_target


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8545", ("127.0.0.1", 8545, "/", None)),
    ("http://localhost/", ("localhost", 80, "/", None)),
    ("http://[::1]:9/rpc?key=abc", ("::1", 9, "/rpc?key=abc", None)),
    ("http://us%40er:p%3Ass@127.0.0.2:1/v2/k", ("127.0.0.2", 1, "/v2/k", "us@er:p:ss")),
    ("https://127.0.0.1:8545", None),          # TLS: requests
    ("http://10.0.0.1:8545", None),            # another machine: requests
    ("http://eth.example.com", None),
    ("ws://127.0.0.1:8545", None),
])
def test_loopback_target(url, expected, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    found = loopback_target(url)
    if expected is None:
        assert found is None
        return
    host, port, target, headers = found
    assert (host, port, target) == expected[:3]
    auth = headers.get("Authorization")
    assert (None if auth is None else base64.b64decode(auth.removeprefix("Basic ")).decode()) == expected[3]


def test_a_proxy_for_loopback_keeps_requests(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://10.9.9.9:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert loopback_target("http://127.0.0.1:8545") is None
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert loopback_target("http://127.0.0.1:8545") is not None


class _Node:
    """Answers eth_blockNumber with the request's id; closes the connection after every
    ``close_every``-th answer (a node's keep-alive limit); records what each request carried."""

    def __init__(self, close_every: int = 0):
        self.seen: Counter = Counter()
        self.answers = 0
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.seen[(self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"),
                           body["method"], json.dumps(body["params"]))] += 1
                node.answers += 1
                answer = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x2a"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                self.close_connection = bool(close_every) and node.answers % close_every == 0

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str = "127.0.0.1", userinfo: str = "", path: str = "") -> str:
        return f"http://{userinfo}{host}:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_node_sees_what_requests_sends(monkeypatch):
    """The same calls through the loopback transport and through requests (the transport a remote
    node gets) reach the node alike."""
    node = _Node()
    try:
        url = node.url(userinfo="alice:s3cr%40t@", path="/v2/key?apikey=q")
        lean = RpcClient(url)
        assert lean._loopback is not None
        plain = RpcClient(url, loopback=False)      # requests, as for a remote node
        assert plain._loopback is None
        for client in (lean, plain):
            assert client.block_number() == 42
            assert client.request("eth_getBalance", ["0x" + "11" * 20, "latest"]) == "0x2a"
        assert all(count == 2 for count in node.seen.values()), node.seen
        assert {key[:3] for key in node.seen} == {
            ("/v2/key?apikey=q", "Basic " + base64.b64encode(b"alice:s3cr@t").decode(), "application/json")}
        assert lean.retries == Counter() and plain.retries == Counter()
    finally:
        node.close()


def test_a_closed_keep_alive_connection_is_reopened_without_a_retry():
    node = _Node(close_every=2)
    try:
        client = RpcClient(node.url())
        for _ in range(9):
            assert client.block_number() == 42
        assert node.answers == 9
        assert client.retries == Counter()
    finally:
        node.close()
