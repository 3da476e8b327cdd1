"""Loopback JSON-RPC servers for tests: a fake client, and a fault-injecting proxy.

``FakeNode`` answers from a dict of canned results (e.g. a node that claims to be geth).
``FaultProxy`` forwards to a real upstream (anvil) and injects faults on a share of requests:
the ten kinds of :data:`FAULT_KINDS` (stalls, HTTP 429/5xx, reset connections, connections
closed mid-answer, truncated or malformed bodies, JSON-RPC errors, ``eth_getLogs`` range
refusals, a lagging replica) and a replica that answers from a later block. It counts requests by method, so tests can tell what a client re-read.
"""

from __future__ import annotations

import json
import random
import socket
import struct
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
                disable_nagle_algorithm = True

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
# the ten fault kinds a hosted node shows, each survivable: a stall, rate limiting, a failing
# gateway, a reset connection, a connection closed in the middle of its answer, a body cut short,
# a body that is not JSON, a JSON-RPC error, a refused log range, a replica lagging the head
FAULT_KINDS = ("delay", "http429", "http503", "drop", "mid_close", "truncate", "malformed", "rpc_error",
               "logs_range", "stale")
RPC_ERRORS = ({"code": -32603, "message": "internal error"}, {"code": -32000, "message": "request timed out"},
              {"code": 429, "message": "Too Many Requests"}, {"code": -32005, "message": "daily request count exceeded"})
# params index of the block a method reads at, for a lagging replica that does not have it yet
BLOCK_PARAM = {"eth_call": 1, "eth_getBlockByNumber": 0, "eth_getBalance": 1, "eth_getCode": 1,
               "eth_getStorageAt": 2, "eth_getTransactionCount": 1, "eth_getProof": 2}


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
        self.chunked: bool | None = None   # how mid_close cuts an answer (None: either, at random)
        self.forwarded: Counter = Counter()
        self.injected: Counter = Counter()
        self.seen: Counter = Counter()   # (request path, Authorization header): what clients sent
        self.lock = threading.Lock()

        def factory(server):
            class Handler(BaseHTTPRequestHandler):
                disable_nagle_algorithm = True

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

    def choose(self, request: dict) -> str | None:
        """The fault to inject on ``request`` (None: forward it); tests may override."""
        with self.lock:
            return self.random.choice(self.faults) if self.random.random() < self.rate else None

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers["Content-Length"]))
        request = json.loads(body)
        self.seen[(handler.path, handler.headers.get("Authorization"))] += 1
        batch = isinstance(request, list)
        first = request[0] if batch else request
        fault = self.choose(first)
        if self._range_too_large(first):
            self.injected["logs_range_limit"] += 1
            error = {"jsonrpc": "2.0", "id": first.get("id"),
                     "error": {"code": -32005, "message": f"query exceeds max block range {self.max_log_range}"}}
            return _reply(handler, 200, json.dumps(error).encode())
        if fault == "logs_range" and first.get("method") != "eth_getLogs":
            fault = None
        if fault == "stale" and first.get("method") not in (*BLOCK_PARAM, "eth_blockNumber", "eth_getLogs"):
            fault = None
        if fault:
            self.injected[fault] += 1
        if fault == "delay":
            time.sleep(self.delay_s)
        elif fault in ("http429", "http503"):
            return _reply(handler, 429 if fault == "http429" else 503, b'{"error":"slow down"}')
        elif fault == "drop":
            # a reset (RST), not a polite close: SO_LINGER with a zero timeout
            handler.close_connection = True
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            return None
        elif fault == "rpc_error":
            with self.lock:
                error = self.random.choice(RPC_ERRORS)
            return _reply(handler, 200, json.dumps({"jsonrpc": "2.0", "id": first.get("id"), "error": error}).encode())
        elif fault == "stale":
            return self._stale(handler, first)
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
        if fault == "mid_close":
            return self._close_mid_answer(handler, answer)
        if fault == "malformed":
            return _reply(handler, 200, b"<html>502 Bad Gateway</html>")
        return _reply(handler, 200, answer)

    def _upstream(self, method: str, params: list) -> dict:
        body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": method, "params": params}).encode()
        upstream = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(upstream, timeout=60) as response:
            return json.loads(response.read())

    def _stale(self, handler: BaseHTTPRequestHandler, request: dict) -> None:
        """Answer as a replica a few blocks behind the head: an older head, and "header not
        found" for a read at a block it does not have yet."""
        head = int(self._upstream("eth_blockNumber", [])["result"], 16)
        with self.lock:
            lag = self.random.randint(1, 8)
        if request.get("method") == "eth_blockNumber":
            answer = {"jsonrpc": "2.0", "id": request.get("id"), "result": hex(max(0, head - lag))}
        else:
            answer = {"jsonrpc": "2.0", "id": request.get("id"), "error": {"code": -32000, "message": "header not found"}}
        _reply(handler, 200, json.dumps(answer).encode())

    def _close_mid_answer(self, handler: BaseHTTPRequestHandler, answer: bytes) -> None:
        """Start the answer, then close the connection half-way: a Content-Length body cut short
        (urllib3 IncompleteRead) or a chunked body without its last chunk (ChunkedEncodingError)."""
        half = answer[: max(1, len(answer) // 2)]
        with self.lock:
            chunked = self.random.random() < 0.5 if self.chunked is None else self.chunked
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
        else:
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(half)
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
