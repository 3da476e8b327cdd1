"""Child processes that die with this one, whatever kills it.

A child in its own session (so that stopping it stops its whole group) is not signalled when
its parent dies: after a ``kill -9`` of the CLI an anvil would run on as an orphan, and its log
and state folder would stay on disk. Two independent guards end it:

- ``PR_SET_PDEATHSIG`` (Linux ``prctl``): the kernel sends the child SIGKILL the moment the
  thread that started it exits. Set only from the main thread, whose end is the process's end.
- a watchdog process (``watchdog.py``, in its own session so a signal to the CLI's group spares
  it): it polls its parent, and once reparented it kills the child's group and removes the
  child's scratch files. It lives until then, or until the parent stops it (``stop_watchdog``)
  after stopping the child: the child's own end is no reason to go, since a SIGKILLed parent
  can take a while to die after its child did, and the scratch files still need removing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
WATCHDOG = Path(__file__).with_name("watchdog.py")
# what a child needs from the environment; nothing else (no RPC URL or key a user exported,
# and no ETH_RPC_URL, which anvil would read as a fork URL of its own)
CHILD_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TEMP", "TMP", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
             "SYSTEMROOT")


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    return None


_PRCTL = _libc_prctl()   # loaded here: the forked child must not import or allocate


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in CHILD_ENV}


def spawn_tied(cmd: Sequence[str], *, stdout, scratch: Sequence[Path] = ()) -> tuple[subprocess.Popen, subprocess.Popen | None]:
    """Start ``cmd`` in its own session, tied to this process; (the child, its watchdog).

    ``scratch`` files and folders are removed by the watchdog if this process dies first.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    proc = subprocess.Popen(list(cmd), stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=child_env(),
                            preexec_fn=_die_with_parent if _PRCTL is not None and main_thread else None)
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WATCHDOG), str(os.getpid()), str(proc.pid), *map(str, scratch)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=child_env())
    except OSError:
        watchdog = None   # the prctl guard still holds
    return proc, watchdog


def stop_watchdog(watchdog: subprocess.Popen | None) -> None:
    if watchdog is None:
        return
    if watchdog.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            watchdog.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        watchdog.wait(timeout=5)
