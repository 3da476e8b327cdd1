"""A run folder is all-or-nothing: ``kill -9`` at any point leaves the previous complete run or
the new one, never a mix (analyzer.atomic.staged_folder / atomic_directory).

Each command first runs to completion twice from the same previous run (its files are the "new
complete run"; a file that differs between the two is compared by presence only), then is killed
with SIGKILL at random points of its run, biased towards the end where it writes. Full scale
(100 kills) is ``python -m benchmarks.kills``.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requires_anvil

pytestmark = requires_anvil
KILLS_PER_COMMAND = 3


def folder_state(folder: Path) -> dict[str, str] | None:
    """{relative path: sha256} of the folder's visible files (hidden staging/cache names skipped)."""
    if not folder.exists():
        return None
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def same_run(state: dict | None, reference: dict | None, volatile: set[str]) -> bool:
    if state is None or reference is None:
        return state is reference
    return state.keys() == reference.keys() and all(state[k] == reference[k] for k in state if k not in volatile)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "analyzer.cli", *args]


def commands(root: Path, devnet_url: str) -> dict[str, tuple[list[list[str]], list[str], str]]:
    """name -> (commands that make the previous run, the command killed, the folder it writes)."""
    book, accounts, snap = str(root / "book.json"), str(root / "accounts.txt"), "run/snapshot"
    scan = ["scan", "--rpc", devnet_url, "--book", book, "--protocols", "aave-v3,uniswap-v3", "--no-cache"]
    copy_snapshot = ["scan", "--rpc", devnet_url, "--book", book, "--protocols", "aave-v3,uniswap-v3", "--no-cache",
                     "--out", snap]
    return {
        "scan": ([[*scan, "--accounts", accounts, "--out", "snap"]], [*scan, "--out", "snap"], "snap"),
        "simulate": ([copy_snapshot, ["simulate", snap, "--shock", "WETH=-20%", "--out", "run"]],
                     ["simulate", snap, "--shock", "WETH=-40%", "--out", "run"], "run"),
        "sweep": ([copy_snapshot, ["sweep", snap, "--assets", "WETH", "--shocks=-10%:-20%:10%", "--out", "run"]],
                  ["sweep", snap, "--assets", "WETH", "--shocks=-10%:-30%:10%", "--out", "run"], "run"),
        "graph": ([copy_snapshot, ["graph", snap, "--out", "run", "--fold-below-usd", "1e15"]],
                  ["graph", snap, "--out", "run"], "run"),
        "report": ([copy_snapshot, ["graph", snap, "--out", "run"],
                    ["simulate", snap, "--shock", "WETH=-30%", "--out", "run"]], ["report", "run"], "run"),
    }


def run_in(cwd: Path, args: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(cli(*args), cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return time.monotonic() - start


def kill_trials(root: Path, name: str, before: list[list[str]], killed: list[str], folder: str, kills: int,
                rng: random.Random) -> dict:
    """Run the kill trials of one command; returns counts of each outcome."""
    base = root / f"base-{name}"
    base.mkdir()
    for args in before:
        run_in(base, args)
    previous = folder_state(base / folder)
    references, durations = [], []
    for i in range(2):
        ref = root / f"ref-{name}-{i}"
        shutil.copytree(base, ref, symlinks=True)
        durations.append(run_in(ref, killed))
        references.append(folder_state(ref / folder))
    new = references[0]
    volatile = {k for k in new if references[1].get(k) != new[k]}
    assert new != previous, f"{name}: the new run is indistinguishable from the previous one"
    outcomes = {"previous": 0, "new": 0}
    duration = min(durations)
    for trial in range(kills):
        work = root / f"trial-{name}-{trial}"
        shutil.copytree(base, work, symlinks=True)
        proc = subprocess.Popen(cli(*killed), cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * rng.uniform(0.3, 1.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        state = folder_state(work / folder)
        if same_run(state, previous, set()):
            outcomes["previous"] += 1
        elif same_run(state, new, volatile):
            outcomes["new"] += 1
        else:
            mixed = sorted(set(state or {}) ^ set(new or {})) or sorted(k for k in (state or {}) if state[k] != new.get(k))
            raise AssertionError(f"{name}: kill {trial} left a mixed run folder: {mixed[:6]}")
        shutil.rmtree(work, ignore_errors=True)
    return outcomes


@pytest.fixture(scope="module")
def inputs(devnet, tmp_path_factory) -> tuple[Path, str]:
    from analyzer.scan import scan
    from protocols import plugins

    root = tmp_path_factory.mktemp("kills")
    (root / "book.json").write_text(json.dumps(devnet.book))
    snapshot = scan(devnet.url, [plugins()["aave-v3"]], book=devnet.book, cache_dir=None)
    (root / "accounts.txt").write_text("\n".join(sorted(set(snapshot.positions["account"]))[:2]) + "\n")
    return root, devnet.url


COMMANDS = ("scan", "simulate", "sweep", "graph", "report")


@pytest.mark.slow   # a dozen CLI runs per command: minutes on a loaded machine
@pytest.mark.parametrize("name", COMMANDS)
def test_kill_9_at_random_points_leaves_the_previous_or_the_new_complete_run(inputs, name):
    root, url = inputs
    before, killed, folder = commands(root, url)[name]
    outcomes = kill_trials(root, name, before, killed, folder, KILLS_PER_COMMAND, random.Random(name))
    assert sum(outcomes.values()) == KILLS_PER_COMMAND
