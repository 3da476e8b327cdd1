"""Loopback JSON-RPC servers for tests: a fake client, and a fault-injecting proxy.

``FakeNode`` answers from a dict of canned results (e.g. a node that claims to be geth).
``FaultProxy`` forwards to a real upstream (anvil) and injects faults on a share of requests:
delays, HTTP 429/5xx, dropped connections, truncated or malformed JSON, ``eth_getLogs`` range
errors. It counts requests by method, so tests can tell what a client re-read.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    def __init__(self, handler_factory):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_factory(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FakeNode(_Server):
    """Answers each JSON-RPC method from ``results`` (unknown methods: a JSON-RPC error)."""

    def __init__(self, results: dict):
        self.results = results
        self.calls: Counter = Counter()

        def factory(server):
            class Handler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_POST(self):
                    request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    server.calls[request["method"]] += 1
                    if request["method"] in server.results:
                        answer = {"jsonrpc": "2.0", "id": request["id"], "result": server.results[request["method"]]}
                    else:
                        answer = {"jsonrpc": "2.0", "id": request["id"],
                                  "error": {"code": -32601, "message": "method not found"}}
                    _reply(self, 200, json.dumps(answer).encode())
            return Handler

        super().__init__(factory)


FAULTS = ("delay", "http429", "http503", "drop", "truncate", "malformed", "logs_range", "wrong_block")


class FaultProxy(_Server):
    """Forwards JSON-RPC to ``upstream``, injecting ``faults`` on a ``rate`` share of requests.

    A request that was faulted is not forwarded, so the upstream never sees it; the client must
    retry. ``seed`` makes the fault pattern repeatable. ``max_log_range`` makes ``eth_getLogs``
    over a wider block range fail as hosted nodes do.
    """

    def __init__(self, upstream: str, faults=FAULTS, rate: float = 0.3, seed: int = 1,
                 max_log_range: int | None = None, delay_s: float = 0.2):
        self.upstream = upstream
        self.faults = tuple(faults)
        self.rate = rate
        self.random = random.Random(seed)
        self.max_log_range = max_log_range
        self.delay_s = delay_s
        self.forwarded: Counter = Counter()
        self.injected: Counter = Counter()
        self.lock = threading.Lock()

        def factory(server):
            class Handler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_POST(self):
                    server.handle(self)
            return Handler

        super().__init__(factory)

    def _range_too_large(self, request: dict) -> bool:
        if self.max_log_range is None or request.get("method") != "eth_getLogs":
            return False
        query = request["params"][0]
        lo, hi = query.get("fromBlock", "0x0"), query.get("toBlock", "latest")
        if not (isinstance(lo, str) and isinstance(hi, str) and lo.startswith("0x") and hi.startswith("0x")):
            return True
        return int(hi, 16) - int(lo, 16) + 1 > self.max_log_range

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        request = json.loads(body)
        batch = isinstance(request, list)
        first = request[0] if batch else request
        with self.lock:
            fault = self.random.choice(self.faults) if self.random.random() < self.rate else None
        if self._range_too_large(first):
            self.injected["logs_range_limit"] += 1
            error = {"jsonrpc": "2.0", "id": first.get("id"),
                     "error": {"code": -32005, "message": f"query exceeds max block range {self.max_log_range}"}}
            return _reply(handler, 200, json.dumps(error).encode())
        if fault == "logs_range" and first.get("method") != "eth_getLogs":
            fault = None
        if fault:
            self.injected[fault] += 1
        if fault == "delay":
            time.sleep(self.delay_s)
        elif fault in ("http429", "http503"):
            return _reply(handler, 429 if fault == "http429" else 503, b'{"error":"slow down"}')
        elif fault == "drop":
            handler.close_connection = True
            handler.connection.close()
            return None
        elif fault == "logs_range":
            error = {"jsonrpc": "2.0", "id": first.get("id"),
                     "error": {"code": -32005, "message": "query returned more than 10000 results"}}
            return _reply(handler, 200, json.dumps(error).encode())
        if fault == "wrong_block":
            # answer an eth_call from the block after the one asked, as a replica ahead of the
            # others behind a load balancer would
            if first.get("method") == "eth_call" and isinstance(first["params"][1], str) and first["params"][1].startswith("0x"):
                first["params"][1] = hex(int(first["params"][1], 16) + 1)
                body = json.dumps(request).encode()
            else:
                fault = None
        upstream = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(upstream, timeout=60) as response:
            answer = response.read()
        for item in request if batch else [request]:
            self.forwarded[item.get("method")] += 1
        if fault == "truncate":
            return _reply(handler, 200, answer[: max(1, len(answer) // 2)])
        if fault == "malformed":
            return _reply(handler, 200, b"<html>502 Bad Gateway</html>")
        return _reply(handler, 200, answer)
