"""Watchdog of one child process (see analyzer/children.py); run as a script, standard library only.

``python -I -S watchdog.py PARENT_PID CHILD_PID [SCRATCH_PATH ...]``: while PARENT_PID is our
parent, wait; once we are reparented (the parent died, even by SIGKILL), kill the child's
process group, wait for it to be gone, remove the scratch paths and exit. The parent stops us
when it stops the child itself.

The child's end is no reason to exit: a SIGKILLed parent tears its threads and memory down
before we are reparented, and the child (killed by ``PR_SET_PDEATHSIG`` when the parent's
main thread exits) is gone during that window; its scratch files are still ours to remove.
"""

import contextlib
import os
import shutil
import signal
import sys
import time

POLL_S = 0.2
CHILD_EXIT_WAIT_S = 10.0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def _kill_and_wait(child: int) -> None:
    for kill in (lambda: os.killpg(child, signal.SIGKILL), lambda: os.kill(child, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    deadline = time.monotonic() + CHILD_EXIT_WAIT_S
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)   # a dying child may still be closing the files we remove next


def _remove(path: str) -> None:
    for _ in range(5):   # a folder still being written to fails with "not empty": try again
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        if not os.path.lexists(path):
            return
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    parent, child, scratch = int(argv[1]), int(argv[2]), argv[3:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C meant for the CLI is not for us
    child_gone = False
    while os.getppid() == parent:
        child_gone = child_gone or not _alive(child)
        time.sleep(POLL_S)
    if not child_gone:   # once gone, its pid may be another process's: never signal it then
        _kill_and_wait(child)
    for path in scratch:
        _remove(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
