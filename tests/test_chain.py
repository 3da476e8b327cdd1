"""The anvil harness: processes start, stop and leave nothing behind; forks pin state; the guard."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest
from web3 import HTTPProvider, Web3

from analyzer import chain
from analyzer.chain import Anvil, find_anvil, is_anvil, redact_url, require_anvil
from analyzer.errors import ContagionError, NotAnvilError
from tests.conftest import requires_anvil
from tests.rpcserver import FakeNode


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state from /proc where there is one
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@requires_anvil
def test_anvil_stops_and_leaves_no_process():
    with Anvil() as node:
        pid = node.pid
        assert process_alive(pid)
        assert node.w3.eth.chain_id == 31337
        scratch = [node.cache_dir, node.log_path]
        assert all(p.exists() for p in scratch)
    assert not process_alive(pid)
    # nor files: its log and the states anvil persists to disk (tens of GB over a session if kept)
    assert not any(p.exists() for p in scratch)


@requires_anvil
def test_anvil_is_stopped_when_the_body_raises():
    node = Anvil()
    with pytest.raises(RuntimeError), node:
        pid = node.pid
        raise RuntimeError("boom")
    assert not process_alive(pid)


def test_missing_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ANVIL_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("DEFI_CONTAGION_NODE_MODULES", str(tmp_path))
    with pytest.raises(ContagionError, match=r"anvil not found: run `make setup`, or install Foundry, or set ANVIL_BIN"):
        find_anvil()


def test_cli_exits_2_with_one_line_when_anvil_is_missing(tmp_path):
    env = dict(os.environ, ANVIL_BIN=str(tmp_path / "no-such-anvil"))
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", "devnet", "up", "--exit", "--no-cache"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ANVIL_BIN=")
    assert "anvil not found" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@requires_anvil
def test_anvil_that_dies_at_start_shows_its_log():
    with pytest.raises(ContagionError, match=r"anvil exited at start .*(error|unexpected|invalid)"):
        Anvil(extra_args=["--no-such-flag"]).start()


def test_fork_url_that_does_not_answer_is_a_clear_error():
    dead = f"http://127.0.0.1:{chain.free_port()}/v2/secretkey0123456789abcdef"
    with pytest.raises(ContagionError, match=r"does not answer eth_chainId") as info:
        Anvil(fork_url=dead).start()
    assert "secretkey" not in str(info.value)


@requires_anvil
def test_fork_sees_the_source_at_the_fork_block_and_not_later_writes():
    with Anvil() as source:
        w3 = source.w3
        # not one of anvil's dev accounts: a fork re-funds those with its own --balance
        alice, bob = w3.eth.accounts[0], "0x000000000000000000000000000000000000bEEF"
        # anvil answers eth_sendTransaction before the block is committed: read the block from the receipt
        sent = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": alice, "to": bob, "value": 10**18}))
        fork_block = sent["blockNumber"]
        balance_at_fork = w3.eth.get_balance(bob, block_identifier=fork_block)
        with Anvil(fork_url=source.url, fork_block=fork_block) as fork:
            # a write on the source after the fork point
            w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction({"from": alice, "to": bob, "value": 5 * 10**18}))
            assert w3.eth.get_balance(bob) == balance_at_fork + 5 * 10**18
            assert fork.w3.eth.get_balance(bob) == balance_at_fork
            assert fork.w3.eth.block_number == fork_block
            assert fork.w3.eth.chain_id == w3.eth.chain_id


@requires_anvil
def test_is_anvil_accepts_anvil(anvil):
    assert is_anvil(anvil.w3)
    require_anvil(anvil.w3)


@pytest.mark.parametrize("version", ["Geth/v1.13.14-stable/linux-amd64/go1.21.6", "erigon/2.59.0", ""])
def test_is_anvil_refuses_a_node_that_reports_another_client(version):
    with FakeNode({"web3_clientVersion": version, "eth_chainId": "0x1"}) as node:
        w3 = Web3(HTTPProvider(node.url))
        assert not is_anvil(w3)
        with pytest.raises(NotAnvilError, match="not anvil"):
            require_anvil(w3)


def test_a_node_that_does_not_answer_is_not_anvil():
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{chain.free_port()}", request_kwargs={"timeout": 2}))
    assert not is_anvil(w3)


@pytest.mark.parametrize(("url", "secret"), [
    ("https://eth-mainnet.g.alchemy.com/v2/AbCdEf1234567890xyz", "AbCdEf1234567890xyz"),
    ("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef", "0123456789abcdef"),
    ("https://user:hunter2@node.example.com:8545/", "hunter2"),
    ("https://node.example.com/rpc?apikey=topsecretvalue", "topsecretvalue"),
])
def test_redact_url_removes_credentials(url, secret):
    redacted = redact_url(url)
    assert secret not in redacted
    assert redacted.startswith("https://")


@requires_anvil
def test_state_dump_and_load_round_trip(tmp_path):
    state = tmp_path / "state.json"
    with Anvil(dump_state=state) as node:
        w3 = node.w3
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[2], "value": 123})
        w3.eth.wait_for_transaction_receipt(tx)
        expected = w3.eth.get_balance(w3.eth.accounts[2])
        raw = gzip.decompress(bytes.fromhex(chain.rpc(w3, "anvil_dumpState")[2:]))
    # anvil dumps a call trace per transaction; the saved state keeps the transaction, not its trace
    assert [t["info"]["traces"] for t in json.loads(raw)["transactions"]] != [[]]
    assert [t["info"]["traces"] for t in json.loads(state.read_text())["transactions"]] == [[]]
    with Anvil(load_state=state) as node:
        assert node.w3.eth.get_balance(node.w3.eth.accounts[2]) == expected
        assert node.w3.eth.get_transaction_receipt(tx)["status"] == 1


@requires_anvil
def test_sigterm_to_the_tool_stops_its_anvil(tmp_path):
    script = tmp_path / "hold.py"
    script.write_text(
        "import sys, time\n"
        "from analyzer.chain import Anvil\n"
        "with Anvil() as node:\n"
        "    print(node.pid, flush=True)\n"
        "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=str(chain.REPO_ROOT))
    anvil_pid = int(proc.stdout.readline())
    assert process_alive(anvil_pid)
    proc.terminate()
    proc.wait(timeout=20)
    assert not process_alive(anvil_pid)
