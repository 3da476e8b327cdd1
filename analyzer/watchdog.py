"""Watchdog of one child process (see analyzer/children.py); run as a script, standard library only.

``python -I -S watchdog.py PARENT_PID CHILD_PID [SCRATCH_PATH ...]``: while PARENT_PID is our
parent, wait; once we are reparented (the parent died, even by SIGKILL), kill the child's
process group, remove the scratch paths and exit. Exit at once when the child is gone.
"""

import contextlib
import os
import shutil
import signal
import sys
import time


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


def main(argv: list[str]) -> int:
    parent, child, scratch = int(argv[1]), int(argv[2]), argv[3:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C meant for the CLI is not for us
    while os.getppid() == parent:
        if not _alive(child):
            return 0
        time.sleep(0.2)
    for kill in (lambda: os.killpg(child, signal.SIGKILL), lambda: os.kill(child, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill()
    time.sleep(0.2)   # let the child close its files before they go
    for path in scratch:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
