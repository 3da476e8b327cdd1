"""Children die with the CLI and their scratch files go with them (analyzer/children.py).

The parent here is a real Python process that we SIGKILL; the child is a real ``sleep``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watchdog reads /proc")

REPO = Path(__file__).resolve().parents[1]
PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from analyzer.children import spawn_tied
    scratch = Path(sys.argv[1])
    scratch.mkdir()
    (scratch / "state.json").write_text("{}")
    proc, watchdog = spawn_tied(["sleep", sys.argv[2]], stdout=subprocess.DEVNULL, scratch=[scratch])
    print(proc.pid, watchdog.pid, flush=True)
    if sys.argv[3] == "reap":
        proc.wait()   # the child is gone before we are
    print("ready", flush=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_parent_and_wait(tmp_path: Path, child_runs_s: str, mode: str) -> tuple[Path, int, int]:
    scratch = tmp_path / "anvil-states"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(scratch), child_runs_s, mode],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        child, watchdog = map(int, parent.stdout.readline().split())
        assert parent.stdout.readline().strip() == "ready"
        time.sleep(0.5)   # the watchdog has polled the gone child (the old one then left for good)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.monotonic() + 10
    while (scratch.exists() or alive(watchdog)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return scratch, child, watchdog


@pytest.mark.parametrize("mode", ["child-running", "reap"])
def test_kill_9_of_the_parent_removes_the_scratch_and_ends_child_and_watchdog(tmp_path, mode):
    """Whether the child still runs or died first (as anvil does by PR_SET_PDEATHSIG while the
    killed parent is still tearing down), the watchdog removes the scratch folder and exits."""
    scratch, child, watchdog = kill_parent_and_wait(tmp_path, "0.1" if mode == "reap" else "600", mode)
    assert not alive(child)
    assert not scratch.exists(), sorted(scratch.rglob("*"))
    assert not alive(watchdog)


def test_stop_watchdog_ends_a_watchdog_whose_child_is_gone():
    from analyzer.children import spawn_tied, stop_watchdog

    proc, watchdog = spawn_tied(["true"], stdout=subprocess.DEVNULL)
    proc.wait(timeout=10)
    time.sleep(0.5)
    assert watchdog is not None and watchdog.poll() is None   # it waits for us, not for the child
    stop_watchdog(watchdog)
    assert watchdog.poll() is not None
