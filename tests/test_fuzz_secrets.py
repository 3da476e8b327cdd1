"""An RPC secret never leaves the process: not in a file, a log, stderr or a process's arguments.

The planted URL carries a secret in each of the three places a hosted node's URL does (user
info, a path segment, the query). A FaultProxy in front of the devnet records what it was sent,
so the tests also prove that each form of credential reaches the node. The fork's anvil reads
through our loopback relay; killed with SIGKILL mid-scan, the CLI leaves no anvil and no log.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import requires_anvil
from tests.rpcserver import FaultProxy

pytestmark = requires_anvil
PASSWORD, PATH_KEY, QUERY_KEY = (f"{kind}{secrets.token_hex(12)}" for kind in ("pw", "pathkey", "querykey"))
SECRETS = (PASSWORD, PATH_KEY, QUERY_KEY)
PROTOCOLS = "aave-v3"


def planted_url(proxy: FaultProxy) -> str:
    return f"http://alice:{PASSWORD}@{proxy.url.removeprefix('http://')}/v2/{PATH_KEY}?apikey={QUERY_KEY}"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "analyzer.cli", *args]


def environment(root: Path, **extra: str) -> dict[str, str]:
    """The CLI's environment: its scratch files (anvil logs, states) and HOME under ``root``."""
    for name in ("tmp", "home"):
        (root / name).mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(root / "tmp"), HOME=str(root / "home"), **extra)


def leaks_in_files(root: Path) -> list[str]:
    return [f"{path}: {secret}" for path in root.rglob("*") if path.is_file()
            for secret in SECRETS if secret.encode() in path.read_bytes()]


def leaks_in_processes() -> list[str]:
    """Every process's arguments on this machine (what `ps` shows anyone)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            found += [f"pid {proc.name}: {secret}" for secret in SECRETS if secret.encode() in argv]
    return found


def children(pid: int) -> dict[int, str]:
    """{pid: command name} of the direct children of ``pid``."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            status = dict(line.split(":\t", 1) for line in (proc / "status").read_text().splitlines() if ":\t" in line)
        except (OSError, ValueError):
            continue
        if status.get("PPid", "").strip() == str(pid):
            found[int(proc.name)] = status["Name"].strip()
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def inputs(devnet, tmp_path_factory):
    """The devnet's address book, three of its Aave borrowers (a fork reads every storage slot
    through the relay: a short account list keeps it quick) and a WETH -20% scenario."""
    from analyzer.scan import scan
    from protocols import plugins

    root = tmp_path_factory.mktemp("inputs")
    snapshot = scan(devnet.url, [plugins()["aave-v3"]], book=devnet.book, cache_dir=None)
    debt = snapshot.positions[snapshot.positions["side"] == "debt"]
    (root / "accounts.txt").write_text("\n".join(sorted(set(debt["account"]))[:3]) + "\n")
    (root / "book.json").write_text(json.dumps(devnet.book))
    (root / "shock.toml").write_text('name = "weth-20"\nmax_rounds = 2\n[price]\nWETH = "-20%"\n')
    return root


@pytest.fixture
def proxy(devnet):
    with FaultProxy(devnet.url, faults=(), rate=0.0) as running:
        yield running


def assert_credentials_arrived(proxy: FaultProxy) -> None:
    basic = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert (f"/v2/{PATH_KEY}?apikey={QUERY_KEY}", basic) in proxy.seen, set(proxy.seen)


def test_every_command_taking_a_url_uses_all_three_forms_and_prints_none(inputs, proxy, tmp_path):
    url = planted_url(proxy)
    dead = url.replace(proxy.url.removeprefix("http://"), "127.0.0.1:1")
    common = ["--book", str(inputs / "book.json"), "--protocols", PROTOCOLS]
    scan = ["scan", *common, "--accounts", str(inputs / "accounts.txt"), "--no-cache"]
    replay = ["replay", "--scenario", str(inputs / "shock.toml"), *common]
    runs = [  # (arguments, extra environment, expected status)
        ([*scan, "--rpc", url, "--out", str(tmp_path / "a" / "snapshot")], {}, 0),
        ([*scan, "--out", str(tmp_path / "b" / "snapshot")], {"CONTAGION_FORK_URL": url}, 0),
        ([*scan, "--fork-url", dead, "--out", str(tmp_path / "c")], {}, 2),
        ([*replay, "--out", str(tmp_path / "d")], {"CONTAGION_FORK_URL": dead}, 2),
        ([*replay, "--rpc", dead, "--out", str(tmp_path / "e")], {}, 2),
    ]
    for args, extra, status in runs:
        proxy.seen.clear()
        done = subprocess.run(cli(*args), capture_output=True, text=True, env=environment(tmp_path, **extra), timeout=600)
        assert done.returncode == status, (args, done.stderr[-2000:])
        for secret in SECRETS:
            assert secret not in done.stdout + done.stderr, (args, secret)
        if status == 0:
            assert_credentials_arrived(proxy)
        else:
            assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
    for run in ("a", "b"):
        assert (tmp_path / run / "snapshot" / "meta.json").is_file()
    assert leaks_in_files(tmp_path) == []
    assert not list((tmp_path / "tmp").glob("anvil-*"))   # logs and state folders removed


@pytest.mark.parametrize("command", ["scan", "replay"])
def test_kill_9_of_the_cli_mid_run_leaves_no_anvil_no_log_and_no_secret(inputs, proxy, tmp_path, command):
    """Killed while its fork reads the node (full book: the run lasts), with the URL in the
    environment: during and after, no process argument, file or stderr line holds a secret."""
    common = ["--book", str(inputs / "book.json"), "--protocols", PROTOCOLS]
    args = (["scan", *common, "--no-cache", "--out", str(tmp_path / "run" / "snapshot")] if command == "scan" else
            ["replay", "--scenario", str(inputs / "shock.toml"), *common, "--out", str(tmp_path / "run")])
    env = environment(tmp_path, CONTAGION_FORK_URL=planted_url(proxy))
    cli_proc = subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline, anvil = time.monotonic() + 120, None
        while anvil is None and time.monotonic() < deadline and cli_proc.poll() is None:
            anvil = next((pid for pid, name in children(cli_proc.pid).items() if name == "anvil"), None)
            time.sleep(0.05)
        assert anvil is not None, "the CLI never started its fork"
        while sum(proxy.seen.values()) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)   # the fork is reading the node through the relay
        assert_credentials_arrived(proxy)
        assert leaks_in_processes() == []                                   # during the run
        anvil_environment = (Path("/proc") / str(anvil) / "environ").read_bytes()
        assert not any(secret.encode() in anvil_environment for secret in SECRETS)
        assert list((tmp_path / "tmp").glob("anvil-*"))                     # its log exists now
        assert cli_proc.poll() is None, cli_proc.stderr.read()[-2000:]
        os.kill(cli_proc.pid, signal.SIGKILL)
        cli_proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (alive(anvil) or list((tmp_path / "tmp").glob("anvil-*"))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(anvil), "anvil outlived the CLI"
        assert not list((tmp_path / "tmp").glob("anvil-*")), "the orphan's log and states stayed"
    finally:
        if cli_proc.poll() is None:
            cli_proc.kill()
    stderr = cli_proc.stderr.read().decode(errors="replace")
    assert all(secret not in stderr for secret in SECRETS)
    assert leaks_in_processes() == []                                       # after
    assert leaks_in_files(tmp_path) == []
    assert not (tmp_path / "run" / "snapshot").exists()
