"""Logs as columns: the log answer read without a JSON decoder equals the JSON decoder's reading,
and the accounts and holdings a reader declares (decoded in bulk) equal what its per-log functions
give, on every lender of the mainnet-like devnet."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import requests

from analyzer.books import deployments_for
from analyzer.discovery import take_logs
from analyzer.loganswer import _fixed_layout, parse_log_answer
from analyzer.logcolumns import LogColumns
from analyzer.multicall import multicall
from analyzer.rpc import RpcClient
from protocols import plugins
from protocols.base import ReadContext
from tests.conftest import requires_anvil

LENDERS = ("aave-v3", "compound-v2", "comet")


def same_columns(left: LogColumns, right: LogColumns) -> bool:
    return (all(np.array_equal(getattr(left, f), getattr(right, f)) for f in ("address", "topics", "topic_counts", "block"))
            and left.data == right.data)


def test_an_answer_written_with_spaces_or_fields_reordered_reads_as_the_json_decoder_reads_it():
    logs = [{"removed": False, "blockNumber": "0x1f", "data": "0x" + "00" * 31 + "2a", "logIndex": "0x0",
             "topics": ["0x" + "AB" * 32, "0x" + "00" * 12 + "11" * 20], "address": "0x" + "Cd" * 20},
            {"address": "0x" + "ef" * 20, "topics": [], "data": "0x", "blockNumber": "0x20"}]
    for body in (json.dumps({"jsonrpc": "2.0", "id": 7, "result": logs}),
                 json.dumps({"result": logs, "id": 7, "jsonrpc": "2.0"}, indent=1),
                 json.dumps({"jsonrpc": "2.0", "id": 7, "result": logs}, separators=(",", ":"))):
        columns = parse_log_answer(body.encode(), 7)
        assert columns is not None and same_columns(columns, LogColumns.from_dicts(logs))
        assert columns.dicts()[0]["topics"][0] == "0x" + "ab" * 32 and columns.dicts()[1]["blockNumber"] == 32
    assert parse_log_answer(json.dumps({"jsonrpc": "2.0", "id": 8, "result": logs}).encode(), 7) is None
    whole = json.dumps({"jsonrpc": "2.0", "id": 7, "result": logs}).encode()
    for cut in range(1, len(whole)):     # a body cut short anywhere (a dropped connection) is never taken
        assert parse_log_answer(whole[:cut], 7) is None, whole[:cut]
    error = {"jsonrpc": "2.0", "id": 7, "error": {"code": -32005, "message": "query returned more than 10000 results"}}
    assert parse_log_answer(json.dumps(error).encode(), 7) is None


@requires_anvil
@pytest.mark.parametrize("name", LENDERS)
def test_declared_events_find_what_the_readers_functions_find(devnet, name):
    if name not in plugins() or name not in devnet.book["protocols"]:
        pytest.skip(f"{name} is not on this devnet")
    client = RpcClient(devnet.url)
    block = client.block_number()
    w3 = devnet.w3
    ctx = ReadContext(w3=w3, chain_id=client.chain_id(), block=block, get_logs=None,
                      multicall=lambda calls: multicall(w3, calls, block=block))
    markets = deployments_for([plugins()[name]], client.chain_id(), devnet.book, None)
    for market, kind in [(m, k) for m in markets for k in ("account_events", "change_events")]:
        events = getattr(market.plugin.reader(ctx, market.deployment), kind)()
        if events is None or not events.account_fields:
            continue
        query = [{"address": list(events.addresses), "topics": [list(events.topics)], "fromBlock": "0x0",
                  "toBlock": hex(block)}]
        answer = requests.post(devnet.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs",
                                                 "params": query}, timeout=120).content
        columns = parse_log_answer(answer, 1)
        assert columns is not None and same_columns(columns, LogColumns.from_dicts(json.loads(answer)["result"]))
        assert _fixed_layout(answer, 1) is not None     # anvil's answer is read by offsets
        assert len(columns) > 0
        declared, declared_held = {}, {}
        take_logs(events, columns, declared, declared_held)
        one_by_one, held = {}, {}
        take_logs(dataclasses.replace(events, account_fields=(), holding_fields=()), columns, one_by_one, held)
        assert declared == one_by_one and declared
        assert {a: sorted(h) for a, h in declared_held.items()} == {a: sorted(h) for a, h in held.items()}
