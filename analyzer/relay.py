"""A loopback JSON-RPC relay: how a fork's anvil reaches the node without holding its secret.

anvil takes its upstream as ``--fork-url``, in its process arguments (readable by anyone with
``ps``) and in its log. Instead it gets ``http://127.0.0.1:<port>/`` of a :class:`RpcRelay`
running in this process, which forwards every JSON-RPC request to the real node through
:class:`~analyzer.rpc.RpcClient`: the key stays in this process's memory, any URL form works
(user info, key in the path or the query, http or ws), and every transport fault the client
survives is survived by the fork too. The relay dies with this process, so an orphaned anvil
cannot reach the node either.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from analyzer.errors import ContagionError
from analyzer.rpc import RpcClient
from analyzer.rpcurl import redact_secrets

MAX_REQUEST_BYTES = 16 * 2 ** 20
log = logging.getLogger(__name__)


class _RelayServer(ThreadingHTTPServer):
    """A client (the fork's anvil) that hung up before its answer was written is not an error of
    ours: logged at DEBUG, not printed as a traceback on the console."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            log.debug("relay: the fork hung up before its answer was written")
            return
        super().handle_error(request, client_address)


class RpcRelay:
    """Forward JSON-RPC from ``http://127.0.0.1:<port>/`` to ``upstream``; a context manager."""

    def __init__(self, upstream: str, *, client: RpcClient | None = None):
        self.upstream = upstream
        self.client = client or RpcClient(upstream)
        self._server = _RelayServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rpc-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> RpcRelay:
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RpcRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def answer(self, request: Any) -> Any:
        """The upstream's answer to one JSON-RPC request (or a batch), with the caller's ids."""
        if isinstance(request, list):
            return [self.answer(item) for item in request]
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        params = request.get("params") or []
        try:
            payload = self.client.payload(request["method"], params if isinstance(params, list) else [params])
        except ContagionError as exc:
            payload = {"error": {"code": -32603, "message": redact_secrets(str(exc), self.upstream)}}
        answer = {"jsonrpc": "2.0", "id": request.get("id")}
        answer.update({k: payload[k] for k in ("result", "error") if k in payload})
        return answer


def _handler(relay: RpcRelay):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive: anvil sends many small requests
        disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

        def log_message(self, *args) -> None:  # nothing on stderr, whatever the request
            pass

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_REQUEST_BYTES:
                    raise ValueError(length)
                request = json.loads(self.rfile.read(length))
                status, answer = 200, relay.answer(request)
            except (ValueError, RecursionError):
                status, answer = 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
