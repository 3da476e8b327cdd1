"""A JSON-RPC client that survives a flaky node: retries with backoff, adaptive log ranges.

Hosted nodes time out, rate-limit (HTTP 429), fail (5xx), drop connections, answer with
truncated or non-JSON bodies, and refuse ``eth_getLogs`` over too wide a block range. Connections
also close in the middle of an answer (requests' ``ChunkedEncodingError``, urllib3's
``ProtocolError``/``IncompleteRead``), and replicas behind one URL lag the head. Readers should
not care: :class:`RpcClient` retries every transport fault with exponential backoff (and jitter
from a seeded RNG), :meth:`RpcClient.get_logs` splits a range that the node refuses until each
part is accepted, and :meth:`RpcClient.head_block` pins the head that a quorum of reads agrees
on rather than the first replica's. Every request is counted by method, so callers and tests can tell
what was read. URLs are redacted in every error.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import logging
import random
import re
import select
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import requests
import urllib3.exceptions
from web3.providers.base import JSONBaseProvider

from analyzer.errors import ContagionError
from analyzer.loganswer import parse_log_answer
from analyzer.logcolumns import LogColumns
from analyzer.rpcurl import check_rpc_url, redact_url

# urllib3 logs every request line (path and query included) at DEBUG: a key there would reach a
# log file whenever a user turns on debug logging
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

# JSON-RPC error messages that mean "ask for a smaller block range"
RANGE_ERRORS = ("range", "too many", "more than", "limit exceeded", "query returned", "too large",
                "block range", "exceed")
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
LAGGING_NODE = ("header not found", "unknown block", "blockoutofrange", "block out of range")
# a full (non-archive) node that has dropped the state of the block asked: no retry can help
# (geth/nethermind "missing trie node", erigon/reth/hosted "pruned", "historical state ... not available")
PRUNED_STATE = ("missing trie node", "pruned", "historical state", "state not available", "state is not available",
                "state histories", "archive node")
# JSON-RPC errors a load balancer or an overloaded node answers for a request that may succeed again
BUSY_NODE = ("internal error", "timeout", "timed out", "temporarily", "try again", "busy", "overloaded",
             "capacity", "unavailable")
TRANSIENT_RPC_CODES = (-32005, -32603, 429)
# a request the URL itself makes impossible: no retry can help
URL_FAULTS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
              requests.exceptions.InvalidHeader)
# everything that can go wrong on the way: refused or reset connections, timeouts, a connection
# closed in the middle of the answer (chunked or Content-Length bodies), a bad status line
TRANSPORT_FAULTS = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                    ConnectionError, TimeoutError, OSError)


JSON_HEADERS = {"Content-Type": "application/json"}


def json_body(body: dict) -> bytes:
    """A request as JSON bytes: through orjson (a lens call carries 10^5 characters of hex, which the
    standard encoder walks one by one: a twentieth of a second a mainnet-scale scan), through the
    standard encoder where orjson refuses a value (an integer past 64 bits). Requests hold no float."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, allow_nan=False).encode()


def loopback_target(url: str) -> tuple[str, int, str, dict[str, str]] | None:
    """(host, port, request target, headers) of a plain-HTTP node on this machine that no proxy
    setting routes elsewhere; None for any other URL. Such a node (an anvil devnet or fork) answers
    in a millisecond, so a client's own cost per request shows: ``requests`` spends about a
    millisecond of Python on each (sessions, adapters, hooks, header merging), a tenth of an
    incremental rescan's 40 requests, where :mod:`http.client` on a kept-alive connection spends a
    tenth of that. Remote nodes keep ``requests`` (proxies, compression, TLS as users configure them)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None
    if not loopback or ("http" in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)):
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = dict(JSON_HEADERS)
    if parts.username is not None:      # user info as HTTP basic credentials, as requests sends them
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        credentials = pair.encode("latin-1") if pair.isascii() or max(map(ord, pair)) < 256 else pair.encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    return host, parts.port or 80, target, headers


class RpcRangeError(Exception):
    """The node refused an eth_getLogs range as too large."""


class PrunedStateError(ContagionError):
    """The node has no state at the block asked (a full node past its pruning window)."""


def pruned_state(message: str) -> bool:
    """Whether a JSON-RPC error says the block's state is gone (also anvil's "block height is H
    but requested was B" for B below H: a loaded state without its history)."""
    message = message.lower()
    if any(k in message for k in PRUNED_STATE):
        return True
    found = re.search(r"block height is (\d+) but requested was (\d+)", message)
    return found is not None and int(found[2]) < int(found[1])


class RpcClient:
    """JSON-RPC over HTTP with retries. ``max_retries`` bounds attempts per request."""

    def __init__(self, url: str, *, timeout: float = 30.0, max_retries: int = 8, backoff_s: float = 0.05,
                 max_backoff_s: float = 2.0, seed: int = 0, loopback: bool = True):
        self.url = check_rpc_url(url)
        self.websocket = url.lower().startswith(("ws://", "wss://"))
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.calls: Counter = Counter()
        self.retries: Counter = Counter()
        self._random = random.Random(seed)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._id = 0
        self.log_span: int | None = None   # the widest eth_getLogs range the node is known to accept
        self._chain_id: str | None = None
        # a node on this machine over http.client (False: through requests, as a remote node)
        self._loopback = loopback_target(self.url) if loopback else None

    def _post_loopback(self, body: dict, node: tuple[str, int, str, dict[str, str]]) -> tuple[int, bytes]:
        """:meth:`_post` to a loopback ``node`` (:func:`loopback_target`) on this thread's kept-alive
        connection, opened again where the node has closed it since the last answer (a readable
        idle socket: its end of file, as urllib3 checks before reusing a pooled connection)."""
        host, port, target, headers = node
        connection = self._local.__dict__.get("loopback")
        if connection is not None and connection.sock is not None and select.select([connection.sock], [], [], 0)[0]:
            connection.close()
        if connection is None:
            connection = self._local.loopback = http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection.request("POST", target, body=json_body(body), headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _forget_connection(self) -> None:
        """Drop this thread's connection: one that failed mid-answer may be half-read."""
        session = self._local.__dict__.pop("session", None)
        if session is not None:
            session.close()
        connection = self._local.__dict__.pop("loopback", None)
        if connection is not None:
            connection.close()
        socket = self._local.__dict__.pop("websocket", None)
        if socket is not None:
            with contextlib.suppress(Exception):
                socket.close()

    def _post(self, body: dict) -> tuple[int, bytes]:
        """Send one JSON-RPC body; (HTTP status, raw answer). Transport faults raise."""
        if self._loopback is not None:
            return self._post_loopback(body, self._loopback)
        if not self.websocket:
            # the body in one read: requests' ``content`` joins 10 kB pieces (a second of the scan's CPU
            # at 10^5 accounts); a transport fault mid-body raises urllib3's errors (TRANSPORT_FAULTS)
            response = self._session().post(self.url, data=json_body(body), headers=JSON_HEADERS, timeout=self.timeout,
                                            stream=True)
            return response.status_code, response.raw.read(decode_content=True)
        from websockets.sync.client import connect

        if not hasattr(self._local, "websocket"):
            self._local.websocket = connect(self.url, open_timeout=self.timeout, max_size=2 ** 28,
                                            compression=None, proxy=None)
        socket = self._local.websocket
        socket.send(json.dumps(body))
        while True:
            answer = socket.recv(timeout=self.timeout)
            try:
                parsed = json.loads(answer)
            except (ValueError, RecursionError):
                return 200, answer.encode() if isinstance(answer, str) else answer
            # a subscription notification or a late answer to an abandoned request is not ours
            if not isinstance(parsed, dict) or parsed.get("id") == body["id"]:
                return 200, answer.encode() if isinstance(answer, str) else answer

    def _next_id(self) -> int:
        with self._lock:
            self._id += 1
            return self._id

    def request(self, method: str, params: Sequence[Any] = (), *, log_columns: bool = False) -> Any:
        """One JSON-RPC call; transient failures are retried, a JSON-RPC error raises. With
        ``log_columns`` (``eth_getLogs``), the result is :class:`analyzer.logcolumns.LogColumns`."""
        payload = self.payload(method, params, log_columns=log_columns)
        error = payload.get("error")
        if error:
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            if method == "eth_getLogs" and any(k in message.lower() for k in RANGE_ERRORS):
                raise RpcRangeError(message)
            if pruned_state(message):
                raise self.pruned_state_error(message)
            raise ContagionError(f"RPC {redact_url(self.url)} refused {method}: {message}")
        result = payload["result"]
        if log_columns and not isinstance(result, LogColumns):
            return LogColumns.from_dicts(result)    # an answer the fast path did not take
        return result

    def pruned_state_error(self, message: str) -> PrunedStateError:
        """The one-line error for a node that has no state at the block asked."""
        return PrunedStateError(f"RPC {redact_url(self.url)} has no state at the block asked ({message[:120]}): "
                                "reading a past block needs an archive node (or scan the latest block)")

    def payload(self, method: str, params: Sequence[Any] = (), *, log_columns: bool = False) -> dict:
        """The node's JSON-RPC answer (result or error) after retrying every transient failure:
        connection errors, timeouts, HTTP 429/5xx, bodies that are not JSON-RPC, rate limits.
        The chain id is asked once: web3 asks it before every ``eth_call`` a reader makes."""
        if method == "eth_chainId" and self._chain_id is not None:
            return {"jsonrpc": "2.0", "id": 0, "result": self._chain_id}
        answer = self._payload(method, params, log_columns)
        if method == "eth_chainId" and isinstance(answer.get("result"), str):
            self._chain_id = answer["result"]
        return answer

    def _payload(self, method: str, params: Sequence[Any], log_columns: bool = False) -> dict:
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.retries[method] += 1
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
                with self._lock:
                    delay *= 0.5 + self._random.random()
                time.sleep(delay)
            with self._lock:
                self.calls[method] += 1
            body = {"jsonrpc": "2.0", "id": self._next_id(), "method": method, "params": list(params)}
            try:
                status, content = self._post(body)
            except URL_FAULTS:
                raise ContagionError(f"RPC {redact_url(self.url)}: not a URL this client can send to") from None
            except TRANSPORT_FAULTS as exc:
                last = type(exc).__name__
                self._forget_connection()
                continue
            except Exception as exc:  # a websocket closed mid-answer raises its library's own errors
                if type(exc).__module__.split(".")[0] != "websockets":
                    raise
                last = type(exc).__name__
                self._forget_connection()
                continue
            if status in TRANSIENT_HTTP:
                last = f"HTTP {status}"
                continue
            if status in (401, 403):
                raise ContagionError(f"RPC {redact_url(self.url)} refused the credentials (HTTP {status})")
            if status != 200:
                raise ContagionError(f"RPC {redact_url(self.url)} answered {method} with HTTP {status}")
            if log_columns and (columns := parse_log_answer(content, body["id"])) is not None:
                return {"jsonrpc": "2.0", "id": body["id"], "result": columns}
            try:
                payload = json.loads(content)
            except (ValueError, RecursionError):
                last = "a body that is not JSON"
                self._forget_connection()
                continue
            if (not isinstance(payload, dict) or ("result" not in payload and "error" not in payload)
                    or payload.get("id") != body["id"]):
                last = "a JSON body that is not the JSON-RPC answer asked for"
                continue
            if payload.get("error") and self._transient(method, payload["error"]):
                last = self._message(payload["error"])
                continue
            return payload
        raise ContagionError(f"RPC {redact_url(self.url)} kept failing {method} after "
                             f"{self.max_retries + 1} attempts (last: {last})")

    @staticmethod
    def _message(error: Any) -> str:
        return str(error.get("message", error)) if isinstance(error, dict) else str(error)

    def _transient(self, method: str, error: Any) -> bool:
        """A JSON-RPC error worth asking again: rate limits, a lagging replica, a busy node.
        A range refusal of ``eth_getLogs`` is not (the range is split instead), nor a revert."""
        message = self._message(error).lower()
        if method == "eth_getLogs" and any(k in message for k in RANGE_ERRORS) or pruned_state(message):
            return False
        code = error.get("code") if isinstance(error, dict) else None
        return (code in TRANSIENT_RPC_CODES or "rate" in message or any(k in message for k in LAGGING_NODE)
                or any(k in message for k in BUSY_NODE))

    def head_block(self, *, quorum: int = 2, min_reads: int = 3, max_reads: int = 9) -> int:
        """The head block that ``quorum`` reads of ``eth_blockNumber`` agree on.

        Behind a load balancer one read may come from a replica that lags by a few blocks; the
        highest number seen ``quorum`` times over at least ``min_reads`` reads is the head the
        node's replicas share. A chain that moves between reads only raises the answer.
        """
        seen: Counter = Counter()
        for read in range(max_reads):
            seen[self.block_number()] += 1
            top = max(seen)
            if read + 1 >= min_reads and seen[top] >= quorum:
                return top
        agreed = [number for number, count in seen.items() if count >= quorum]
        return max(agreed) if agreed else max(seen)

    # ---- the calls readers need ----
    def chain_id(self) -> int:
        return int(self.request("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.request("eth_blockNumber"), 16)

    def block(self, number: int) -> dict:
        block = self.request("eth_getBlockByNumber", [hex(number), False])
        if not block:
            raise ContagionError(f"RPC {redact_url(self.url)} has no block {number}")
        return block

    def eth_call(self, tx: dict, block: int) -> bytes:
        result = self.request("eth_call", [tx, hex(block)])
        if not isinstance(result, str) or not result.startswith("0x"):
            raise ContagionError(f"RPC {redact_url(self.url)} answered eth_call with {result!r}")
        return bytes.fromhex(result[2:])

    def get_logs(self, address: str | list[str], topics: list, from_block: int, to_block: int,
                 *, max_range: int = 50_000, on_range=None, columns: bool = False) -> list[dict]:
        """All logs in ``[from_block, to_block]``, in ranges the node accepts.

        A refused range is halved, and the accepted width is remembered (``log_span``) for every
        later request, so a node's limit is learnt once. ``on_range(lo, hi, logs)`` is called after
        each accepted range, in block order (the scan caches them as they complete); with it, the
        logs are not also returned. With ``columns``, ``on_range`` gets each range's logs as
        :class:`analyzer.logcolumns.LogColumns` (read without a JSON decoder where the answer allows).
        """
        logs: list[dict] = []
        refusals: Counter = Counter()   # per single block
        lo = from_block
        while lo <= to_block:
            span = max(1, min(max_range, self.log_span or max_range))
            hi = min(lo + span - 1, to_block)
            try:
                found = self.request("eth_getLogs", [{"address": address, "topics": topics,
                                                      "fromBlock": hex(lo), "toBlock": hex(hi)}],
                                     log_columns=columns)
            except RpcRangeError:
                if lo == hi:
                    # one block cannot be split: a load balancer's passing refusal is retried, a
                    # node that really cannot serve one block is an error
                    refusals[lo] += 1
                    if refusals[lo] > self.max_retries:
                        raise ContagionError(f"RPC {redact_url(self.url)} refuses eth_getLogs even for one block ({lo})") from None
                    time.sleep(min(self.max_backoff_s, self.backoff_s * 2 ** refusals[lo]))
                    continue
                self.log_span = max(1, (hi - lo + 1) // 2)
                continue
            if on_range is not None:
                on_range(lo, hi, found)     # handed over, not kept: a mainnet-sized book's logs fill memory
            else:
                logs.extend(found.dicts() if isinstance(found, LogColumns) else found)
            lo = hi + 1
        return logs


class RetryingProvider(JSONBaseProvider):
    """A web3 provider over :class:`RpcClient`: every call a reader makes through ``w3`` (not only
    its Multicall3 batches) gets the same retries. JSON-RPC errors (reverts) pass through as web3
    expects them, except a node's missing state at the block, which raises
    :class:`PrunedStateError`."""

    def __init__(self, client: RpcClient):
        super().__init__()
        self.client = client

    def make_request(self, method, params) -> Any:
        payload = self.client.payload(method, params)
        error = payload.get("error")
        if error and pruned_state(self.client._message(error)):
            # no state at the block: one error at once, not a revert a reader may step over
            raise self.client.pruned_state_error(self.client._message(error))
        return {"jsonrpc": "2.0", "id": payload.get("id", 0), **{k: payload[k] for k in ("result", "error") if k in payload}}

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.client.chain_id()
            return True
        except ContagionError:
            return False
