"""The chain: anvil processes, RPC helpers and the "is this anvil" guard.

Every chain this tool touches is either a node the user names (read-only use) or an anvil
process started here: a devnet, or a fork of another node pinned to a block. Transactions are
only ever sent to anvil; :func:`require_anvil` is the guard every sending path calls first.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from analyzer.children import spawn_tied, stop_watchdog
from analyzer.errors import ContagionError, NotAnvilError
from analyzer.paths import DATA_ROOT, node_modules
from analyzer.rpcurl import check_rpc_url, redact_secrets, redact_url

__all__ = ["redact_secrets", "redact_url"]   # their home is analyzer.rpcurl; kept importable here

REPO_ROOT = DATA_ROOT   # the folder holding abis/ and fixtures/ (a checkout, or site-packages)
ANVIL_MISSING = "anvil not found: run `make setup`, or install Foundry, or set ANVIL_BIN"

# anvil's default mnemonic accounts (public test keys, funded by anvil itself): keepers and
# deployers on a devnet or fork are these accounts, never a key read from the environment.
DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"


# --- finding the binary -------------------------------------------------------------------------

def _npm_platform_dir() -> str:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"anvil-{system}-{arch}"


def find_anvil() -> str:
    """Path of the anvil binary: ``$ANVIL_BIN``, then ``anvil`` on PATH, then the npm package.

    The npm package ``@foundry-rs/anvil`` ships the native binary in a per-platform package;
    we run that binary directly rather than its node wrapper, so that stopping the process
    stops anvil itself.
    """
    env_bin = os.environ.get("ANVIL_BIN")
    if env_bin:
        if Path(env_bin).is_file() and os.access(env_bin, os.X_OK):
            return env_bin
        raise ContagionError(f"ANVIL_BIN={env_bin} is not an executable file; {ANVIL_MISSING}")
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    modules = node_modules()
    for candidate in (
        modules / "@foundry-rs" / _npm_platform_dir() / "bin" / "anvil",
        modules / ".bin" / "anvil",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ContagionError(ANVIL_MISSING)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- URLs and raw RPC ---------------------------------------------------------------------------

def raw_rpc(url: str, method: str, params: Sequence[Any] = (), timeout: float = 10.0) -> Any:
    """One JSON-RPC call without web3 and without retries (http(s) with any credentials the
    URL carries, or ws); raises ContagionError with the URL redacted."""
    check_rpc_url(url, "RPC")
    if url.lower().startswith(("ws://", "wss://")):
        from analyzer.rpc import RpcClient

        return RpcClient(url, timeout=timeout, max_retries=0).request(method, params)
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    try:
        with requests.post(url, json=body, timeout=timeout) as response:
            payload = json.loads(response.content)
    except (requests.RequestException, OSError, ValueError, RecursionError) as exc:
        reason = redact_secrets(type(exc).__name__ if isinstance(exc, requests.RequestException) else str(exc), url)
        raise ContagionError(f"RPC {redact_url(url)} does not answer {method}: {reason}") from None
    if not isinstance(payload, dict):
        raise ContagionError(f"RPC {redact_url(url)} answered {method} with something that is not JSON-RPC")
    if payload.get("error"):
        message = payload["error"].get("message", payload["error"]) if isinstance(payload["error"], dict) else payload["error"]
        raise ContagionError(f"RPC {redact_url(url)} refused {method}: {message}")
    return payload.get("result")


def web3_client(url: str, timeout: float) -> Web3:
    """A Web3 client for ``url`` that asks the node its chain id once: web3's validation
    middleware checks every ``eth_call``, ``eth_estimateGas`` and ``eth_sendTransaction`` against
    ``eth_chainId``, an extra round trip each (a tenth of a replay's time) for an answer a node
    never changes."""
    return Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}, cache_allowed_requests=True,
                             cacheable_requests={RPCEndpoint("eth_chainId")},
                             request_cache_validation_threshold=None))


def connect(url: str, timeout: float = 30.0) -> Web3:
    """A Web3 client for ``url`` that has answered ``eth_chainId``."""
    raw_rpc(url, "eth_chainId", timeout=min(timeout, 10.0))
    return web3_client(url, timeout)


def rpc(w3: Web3, method: str, params: Sequence[Any] = ()) -> Any:
    """A JSON-RPC call through ``w3`` that raises ContagionError on an error answer."""
    answer = w3.provider.make_request(method, list(params))
    if answer.get("error"):
        error = answer["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ContagionError(f"RPC refused {method}: {message}")
    return answer.get("result")


# --- the guard ----------------------------------------------------------------------------------

def client_version(w3: Web3) -> str:
    try:
        return str(w3.provider.make_request("web3_clientVersion", []).get("result") or "")
    except Exception:  # an unreachable or broken node is simply not anvil
        return ""


def is_anvil(w3: Web3) -> bool:
    """True when the node answers ``web3_clientVersion`` as anvil does (``anvil/v...``)."""
    return client_version(w3).lower().startswith("anvil/")


def require_anvil(w3: Web3) -> None:
    """Refuse, with NotAnvilError, any chain whose client is not anvil.

    Every code path that sends a transaction or a cheat call calls this first: liquidations,
    swaps and oracle moves are for forks and devnets, never for a chain that holds real money.
    """
    version = client_version(w3)
    if not version.lower().startswith("anvil/"):
        shown = version or "no answer to web3_clientVersion"
        raise NotAnvilError(f"refusing to send transactions: the chain's client is not anvil ({shown})")


# --- the anvil process --------------------------------------------------------------------------

_LIVE: dict[int, subprocess.Popen] = {}
_SCRATCH: set[Path] = set()   # logs and state caches of anvils started here, removed at stop/exit
MAX_PERSISTED_STATES = 64
DUMP_TIMEOUT_S = 3600.0
LOAD_SECONDS_PER_GB = 300.0   # allowed beside the startup timeout, per GB of a --load-state file


def dump_state(w3: Web3) -> str:
    """An anvil's whole state (``anvil_dumpState``, which changes nothing) as the JSON text
    ``anvil --load-state`` reads, without the transactions' call traces (:func:`without_call_traces`)."""
    import gzip

    require_anvil(w3)
    url = getattr(w3.provider, "endpoint_uri", None)
    # a bulk-seeded devnet's dump takes minutes on a loaded machine: past the provider's timeout
    state = raw_rpc(str(url), "anvil_dumpState", timeout=DUMP_TIMEOUT_S) if url else rpc(w3, "anvil_dumpState")
    data = bytes.fromhex(state[2:] if state.startswith("0x") else state)
    del state
    if data[:2] == b"\x1f\x8b":      # anvil answers gzip-compressed JSON; --load-state reads it plain
        data = gzip.decompress(data)
    return without_call_traces(data).decode()


TRACES, AFTER_TRACES = b'"traces":', b',"exit":'


def without_call_traces(state: bytes) -> bytes:
    """An anvil state dump with every transaction's call traces emptied.

    Anvil keeps a call trace per transaction (``info.traces``: every sub-call with its calldata and
    return data) and dumps it with the transaction; nothing here reads traces (``debug_``/``trace_``
    calls), and for bulk-seeded devnets (hundreds of accounts per transaction) they are most of the
    dump and of the memory ``--load-state`` takes. The dump is cut as bytes (a multi-GB dump never
    becomes Python objects): ``TransactionInfo`` serialises ``traces`` just before ``exit``, so each
    ``"traces":`` runs to the next ``,"exit":``; a dump that does not have that shape is kept whole."""
    starts = state.count(TRACES)
    if starts == 0 or starts != state.count(AFTER_TRACES):
        return state
    parts, at = [], 0
    while (start := state.find(TRACES, at)) != -1:
        end = state.find(AFTER_TRACES, start)
        parts += [state[at:start], TRACES + b"[]"]
        at = end
    parts.append(state[at:])
    return b"".join(parts)


def _remove(path: Path | None) -> None:
    if path is None:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    _SCRATCH.discard(path)


def _stop_all_live() -> None:
    for proc in list(_LIVE.values()):
        _terminate(proc)
    for path in list(_SCRATCH):
        _remove(path)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    _LIVE.pop(proc.pid, None)


atexit.register(_stop_all_live)


def _exit_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (finally blocks and atexit run, so anvil is stopped).

    Python's default SIGTERM ends the process at once; anvil runs in its own process group and
    would be left behind. Only installed when nothing else handles SIGTERM, from the main thread.
    """
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class Anvil:
    """An anvil process on loopback, as a context manager that always stops it.

    Parameters
    ----------
    chain_id, accounts, balance_eth : the devnet's identity and funded accounts.
    block_time : seconds between blocks; None mines one block per transaction.
    fork_url, fork_block : fork another node (pinned to ``fork_block``); the fork URL must answer.
    load_state, dump_state : anvil state files to start from / write on exit.
    port : a loopback port; a free one is picked when None.
    code_size_limit : raise the contract size limit (some protocol bytecode exceeds EIP-170).

    Examples
    --------
    >>> with Anvil() as node:               # doctest: +SKIP
    ...     node.w3.eth.block_number
    0
    """

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        accounts: int = 10,
        balance_eth: int = 10_000,
        block_time: float | None = None,
        fork_url: str | None = None,
        fork_block: int | None = None,
        load_state: str | os.PathLike | None = None,
        dump_state: str | os.PathLike | None = None,
        port: int | None = None,
        code_size_limit: int | None = None,
        gas_limit: int | None = None,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ):
        self.chain_id = chain_id
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.block_time = block_time
        self.fork_url = fork_url
        self.fork_block = fork_block
        self.load_state = Path(load_state) if load_state else None
        self.dump_state = Path(dump_state) if dump_state else None
        self.port = port
        self.code_size_limit = code_size_limit
        self.gas_limit = gas_limit
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.watchdog: subprocess.Popen | None = None
        self.relay: Any = None   # the loopback RpcRelay a fork reads its upstream through
        self.log_path: Path | None = None
        self.cache_dir: Path | None = None
        self._w3: Web3 | None = None

    # ---- lifecycle ----
    def command(self, binary: str) -> list[str]:
        cmd = [binary, "--host", "127.0.0.1", "--port", str(self.port), "--accounts", str(self.accounts),
               "--balance", str(self.balance_eth), "--mnemonic", DEFAULT_MNEMONIC]
        if self.fork_url:
            # never the user's URL: it would sit in anvil's arguments and log (see analyzer/relay.py)
            cmd += ["--fork-url", self.relay.url if self.relay is not None else self.fork_url]
            if self.fork_block is not None:
                cmd += ["--fork-block-number", str(self.fork_block)]
            cmd += ["--no-rate-limit"]
            # a fork keeps its source's chain id unless told otherwise
            if self.chain_id != 31337:
                cmd += ["--chain-id", str(self.chain_id)]
        else:
            cmd += ["--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.load_state is not None:
            cmd += ["--load-state", str(self.load_state)]
        if self.code_size_limit is not None:
            cmd += ["--code-size-limit", str(self.code_size_limit)]
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        if self.cache_dir is not None:
            # anvil persists old states to disk (by default under ~/.foundry/anvil/tmp, never removed:
            # tens of GB over a test session); ours go to a private folder removed at stop
            cmd += ["--cache-path", str(self.cache_dir), "--max-persisted-states", str(MAX_PERSISTED_STATES)]
        return cmd + self.extra_args

    def start(self) -> Anvil:
        if self.proc is not None:
            return self
        binary = find_anvil()
        _exit_on_sigterm()
        if self.load_state is not None and not self.load_state.is_file():
            raise ContagionError(f"anvil state file {self.load_state} does not exist")
        if self.fork_url:
            from analyzer.relay import RpcRelay

            raw_rpc(self.fork_url, "eth_chainId", timeout=10.0)  # clear error before anvil's own
            self.relay = RpcRelay(self.fork_url).start()
        if self.port is None:
            self.port = free_port()
        fd, log = tempfile.mkstemp(prefix=f"anvil-{self.port}-", suffix=".log")
        self.log_path = Path(log)
        self.cache_dir = Path(tempfile.mkdtemp(prefix=f"anvil-{self.port}-states-"))
        _SCRATCH.update({self.log_path, self.cache_dir})
        with os.fdopen(fd, "wb") as log_file:
            # its own process group (we stop it and any child together), killed if we die
            self.proc, self.watchdog = spawn_tied(self.command(binary), stdout=log_file,
                                                  scratch=[self.log_path, self.cache_dir])
        _LIVE[self.proc.pid] = self.proc
        try:
            self._wait_ready()
        except BaseException:
            self._release()
            raise
        return self

    def _release(self) -> None:
        """Stop the watchdog and the relay (after anvil itself is gone)."""
        stop_watchdog(self.watchdog)
        self.watchdog = None
        if self.relay is not None:
            self.relay.stop()
            self.relay = None

    def _wait_ready(self) -> None:
        # a large state file (a bulk-seeded devnet's) takes anvil a while to parse before it listens
        loading = self.load_state.stat().st_size / 1e9 * LOAD_SECONDS_PER_GB if self.load_state is not None else 0.0
        deadline = time.monotonic() + self.startup_timeout + loading
        while time.monotonic() < deadline:
            assert self.proc is not None        # started by start() before it waits
            if self.proc.poll() is not None:
                tail = self.log_tail()
                _LIVE.pop(self.proc.pid, None)
                self.proc = None
                _remove(self.cache_dir)
                raise ContagionError(f"anvil exited at start (status {self.exit_status}): {tail}")
            try:
                version = str(raw_rpc(self.url, "web3_clientVersion", timeout=1.0) or "")
            except ContagionError:
                time.sleep(0.05)
                continue
            if not version.lower().startswith("anvil/"):
                # ANVIL_BIN (or PATH) named another client: nothing we send later is for it
                self.stop()
                raise NotAnvilError(f"the binary started as anvil answers as {version or 'an unknown client'}; "
                                    "set ANVIL_BIN to Foundry's anvil")
            return
        tail = self.log_tail()
        self.stop()
        raise ContagionError(f"anvil did not answer within {self.startup_timeout + loading:.0f}s: {tail}")

    @property
    def exit_status(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def stop(self) -> None:
        """Stop anvil (dumping its state first when ``dump_state`` is set)."""
        if self.proc is None:
            return
        try:
            if self.dump_state is not None and self.proc.poll() is None:
                self.save_state(self.dump_state)
        finally:
            _terminate(self.proc)
            self.proc = None
            self._w3 = None
            for scratch in (self.cache_dir, self.log_path):
                _remove(scratch)
            self._release()

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- access ----
    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def w3(self) -> Web3:
        if self._w3 is None:
            self._w3 = web3_client(self.url, 120)
        return self._w3

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        tail = " | ".join(line.strip() for line in text[-lines:] if line.strip())
        return redact_secrets(tail, self.fork_url)

    # ---- state ----
    def save_state(self, path: str | os.PathLike) -> Path:
        """Write anvil's whole state (``anvil_dumpState``) to ``path`` atomically."""
        from analyzer.atomic import atomic_write_text

        return atomic_write_text(path, dump_state(self.w3))

    def snapshot(self) -> str:
        return rpc(self.w3, "evm_snapshot")

    def revert(self, snapshot_id: str) -> None:
        if not rpc(self.w3, "evm_revert", [snapshot_id]):
            raise ContagionError(f"evm_revert to {snapshot_id} failed")

