"""Aave V3 accounts read from storage (protocols/aave_v3/slots.py): the slots are solc's storage
layout of the real sources, the words read equal the real getters' answers on the devnet, and a
layout that does not match is caught and read through the getters, to the same snapshot."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile

import pytest

from analyzer.books import deployments_for
from analyzer.lens import decode_rows, encode_arguments, read_rows
from analyzer.rpc import RpcClient
from analyzer.scan import _read_context, scan
from protocols import plugins
from protocols.aave_v3 import lens as aave_lens
from protocols.aave_v3 import slots
from tests.aave_v3_devnets import aave_devnet, devnet_v30  # noqa: F401 -- fixtures
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal


def aave():
    return [plugins()["aave-v3"]]


def slot_reads_taken(monkeypatch) -> list[bool]:
    """Whether each call of the lens's storage read was taken (True) or sent to the getters."""
    taken: list[bool] = []
    real = aave_lens.read_rows_from_slots

    def spy(*args, **kwargs):
        rows = real(*args, **kwargs)
        taken.append(rows is not None)
        return rows
    monkeypatch.setattr(aave_lens, "read_rows_from_slots", spy)
    return taken


@pytest.mark.slow
def test_the_slots_are_those_of_the_storage_layout_solc_gives_for_the_real_sources():
    from protocols.aave_v3 import origin

    files = origin.sources()
    settings = {**origin.SETTINGS, "outputSelection": {"*": {"*": ["storageLayout"]}}}
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in files.items()}, "settings": settings}
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as stdin:
        stdin.write(json.dumps(request))
        stdin.seek(0)
        subprocess.run(["node", str(origin.SOLCJS), "--standard-json"], stdin=stdin, stdout=out, check=True)
        out.seek(0)
        text = out.read()
    compiled = json.loads(text[text.find("{"):])["contracts"]
    layout = {name: {e["label"]: e for e in by[name]["storageLayout"]["storage"]}
              for by in compiled.values() for name in by
              if name in ("PoolInstance", "ATokenInstance", "VariableDebtTokenInstance")}
    assert int(layout["PoolInstance"]["_usersConfig"]["slot"]) == slots.POOL_USERS_CONFIG_SLOT
    assert int(layout["PoolInstance"]["_usersEModeCategory"]["slot"]) == slots.POOL_USERS_EMODE_SLOT
    assert int(layout["ATokenInstance"]["_userState"]["slot"]) == slots.ATOKEN_USER_STATE_SLOT
    assert int(layout["VariableDebtTokenInstance"]["_userState"]["slot"]) == slots.VARIABLE_DEBT_USER_STATE_SLOT


@pytest.fixture(scope="module")
def aave_reader(devnet):
    """The devnet's Aave reader at the head, with every account a Multicall3 scan found."""
    block = devnet.w3.eth.block_number
    reference = scan(devnet.url, aave(), book=devnet.book, block=block, cache_dir=None, use_lens=False,
                     oracle_paths=False)
    client = RpcClient(devnet.url)
    ctx = _read_context(devnet.url, client, client.chain_id(), block, True, 100_000)
    market = deployments_for(aave(), ctx.chain_id, devnet.book, None)[0]
    return market.plugin.reader(ctx, market.deployment), sorted(set(reference.accounts["account"])), reference, block


@requires_anvil
def test_the_words_read_from_storage_are_the_getters_answers(aave_reader):
    reader, accounts, _, _ = aave_reader
    reserves = reader.reserves()
    ids = [r["id"] for r in reserves]
    tokens = [t if int(t, 16) else aave_lens.ZERO for r in reserves
              for t in (r["aToken"], r["variableDebtToken"], r["stableDebtToken"])]

    def encode(batch):     # every reserve's aToken read for every account
        every = [list(range(len(batch)))] * len(reserves)
        return slots.SELECTOR + encode_arguments(reader.pool, ids, tokens, batch, slots.held_runs(every, 0, len(batch)),
                                                 *slots.slots())

    overrides = {reader.pool: slots.reader_code()}
    overrides.update({t: slots.reader_code() for r in reserves for t in (r["aToken"], r["variableDebtToken"])})
    from_storage = read_rows(reader.ctx.lens, slots.lens_code(), encode, accounts, 6, overrides)
    getter_calldata = [aave_lens.SELECTOR + encode_arguments(reader.pool, ids, tokens, [a], [])
                       for a in accounts]
    from_getters = [decode_rows(reader.ctx.lens(aave_lens.lens_code(), c))[0] for c in getter_calldata]
    assert [row if len(row) > 2 else [] for row in from_storage] == from_getters
    assert sum(len(row) > 2 for row in from_getters) > 20      # accounts with balances, not only empty rows
    assert any(row[k] % 3 == 1 for row in from_getters for k in range(2, len(row), 3))   # variable debt read too


@requires_anvil
def test_a_scan_proves_its_storage_reads_then_takes_them(devnet, aave_reader, monkeypatch):
    _, accounts, reference, block = aave_reader
    taken = slot_reads_taken(monkeypatch)
    got = scan(devnet.url, aave(), book=devnet.book, block=block, accounts=accounts, cache_dir=None, oracle_paths=False)
    tables_equal(got, reference)
    assert taken and all(taken)


@requires_anvil
def test_a_layout_that_does_not_match_is_caught_and_read_through_the_getters(devnet, aave_reader, monkeypatch, caplog):
    _, accounts, reference, block = aave_reader
    monkeypatch.setattr(slots, "ATOKEN_USER_STATE_SLOT", slots.ATOKEN_USER_STATE_SLOT + 1)   # another version's layout
    with caplog.at_level(logging.WARNING, logger="protocols.aave_v3.slots"):
        got = scan(devnet.url, aave(), book=devnet.book, block=block, accounts=accounts, cache_dir=None,
                   oracle_paths=False)
    tables_equal(got, reference)
    assert "differs from the getters" in caplog.text


@requires_anvil
def test_both_releases_read_from_storage_to_the_multicall_snapshot(aave_devnet, monkeypatch):  # noqa: F811
    """3.0 (stable debt read through its token, a 128-bit balance word) and 3.6 (120 bits and a
    delegation mode byte): the storage reads are taken, and the snapshot is the Multicall3 one."""
    block = aave_devnet.w3.eth.block_number
    taken = slot_reads_taken(monkeypatch)
    got = scan(aave_devnet.url, aave(), book=aave_devnet.book, block=block, cache_dir=None, oracle_paths=False)
    tables_equal(got, scan(aave_devnet.url, aave(), book=aave_devnet.book, block=block, cache_dir=None,
                           use_lens=False, oracle_paths=False))
    assert taken and all(taken)
    assert len(got.positions) > 300
