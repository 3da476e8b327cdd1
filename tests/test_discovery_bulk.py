"""Discovery's bulk decoding of declared event fields against a plain loop over the JSON decoder's
logs, on synthetic answers: the same accounts, last blocks and holdings, whether the blocks come in
one range or split into many."""

from __future__ import annotations

import json
import random

import numpy as np
from eth_utils import to_checksum_address

from analyzer.discovery import _distinct, take_logs
from analyzer.loganswer import parse_log_answer
from protocols.base import AccountEvents, EventField

EMITTERS = tuple(to_checksum_address("0x" + c * 20) for c in ("1a", "2b", "3c"))    # as readers spell them
MOVE, POSITION, HOLD = ("0x" + c * 64 for c in "def")     # topic0s
# accounts: MOVE's topic 2 (not the zero address) on the first two emitters, POSITION's data word 1
# (not its emitter); holdings: MOVE's receiver holds its emitter, HOLD's topic 2 holds topic 3
FIELDS = (EventField(MOVE, EMITTERS[:2], topic=2, skip_zero=True), EventField(POSITION, word=1, skip_emitter=True))
HOLDINGS = (EventField(MOVE, EMITTERS[:2], topic=2, skip_zero=True), EventField(HOLD, topic=2, holding_topic=3))


def word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:]


def synthetic_logs(seed: int, count: int) -> list[dict]:
    rng = random.Random(seed)
    people = ["0x" + "00" * 20] + [f"0x{rng.getrandbits(160):040x}" for _ in range(60)]
    people += ["0x" + "77" * 8 + f"{rng.getrandbits(96):024x}" for _ in range(5)]     # alike in their first 16 digits
    logs = []
    for block in sorted(rng.randrange(1, 500) for _ in range(count)):
        emitter, kind = rng.choice(EMITTERS), rng.choice((MOVE, POSITION, HOLD))
        a, b, c = (rng.choice([*people, emitter]) for _ in range(3))
        topics = {MOVE: [MOVE, word(a), word(b)], POSITION: [POSITION], HOLD: [HOLD, word(a), word(b), word(c)]}[kind]
        data = "0x" + (word(a)[2:] + word(b)[2:] if kind == POSITION else f"{rng.getrandbits(64):064x}")
        logs.append({"address": emitter.lower(), "topics": topics[:rng.choice([len(topics)] * 5 + [1])], "data": data,
                     "blockHash": "0x" + "ab" * 32, "blockNumber": hex(block), "logIndex": "0x0", "removed": False})
    return logs


def plain_loop(logs: list[dict]) -> tuple[dict, dict]:
    accounts: dict[str, int] = {}
    held: dict[str, list[str]] = {}

    def name(account: str, block: int) -> None:
        accounts[to_checksum_address(account)] = max(accounts.get(to_checksum_address(account), 0), block)

    def hold(account: str, holding: str) -> None:
        holdings = held.setdefault(to_checksum_address(account), [])
        if holding not in holdings:
            holdings.append(holding)

    for log in logs:
        block, topics, emitter = int(log["blockNumber"], 16), log["topics"], log["address"]
        if topics[0] == MOVE and len(topics) > 2 and emitter in (e.lower() for e in EMITTERS[:2]):
            receiver = "0x" + topics[2][-40:]
            if int(receiver, 16):
                name(receiver, block)
                hold(receiver, next(e for e in EMITTERS if e.lower() == emitter))
        if topics[0] == POSITION and len(log["data"]) >= 2 + 128 and log["data"][-40:].lower() != emitter[2:]:
            name("0x" + log["data"][-40:], block)
        if topics[0] == HOLD and len(topics) > 3:
            hold("0x" + topics[2][-40:], to_checksum_address("0x" + topics[3][-40:]))
    return accounts, held


def events() -> AccountEvents:
    return AccountEvents(EMITTERS, (MOVE, POSITION, HOLD), lambda log: [], lambda log: [],
                         account_fields=FIELDS, holding_fields=HOLDINGS)


def columns(logs: list[dict]):
    answer = json.dumps({"jsonrpc": "2.0", "id": 1, "result": logs}, separators=(",", ":")).encode()
    found = parse_log_answer(answer, 1)
    assert found is not None
    return found


def test_declared_fields_find_what_a_plain_loop_finds_in_one_range_or_many():
    logs = synthetic_logs(1, 3_000)
    expected_accounts, expected_held = plain_loop(logs)
    assert len(expected_accounts) > 30 and len(expected_held) > 30
    for cuts in ([], [250], [100, 101, 300, 420]):
        accounts: dict[str, int] = {}
        held: dict[str, list[str]] = {}
        for lo, hi in zip([0, *cuts], [*cuts, 10**9], strict=True):
            part = [log for log in logs if lo <= int(log["blockNumber"], 16) < hi]
            take_logs(events(), columns(part), accounts, held)
        assert accounts == expected_accounts
        assert held == expected_held       # each account's holdings in the order the logs first show them


def test_distinct_digits_equal_numpy_unique():
    rng = np.random.default_rng(4)
    pool = [f"{int(rng.integers(0, 2**62)):040x}".encode() for _ in range(50)]
    pool += [b"0" * 16 + f"{int(rng.integers(0, 2**62)):024x}".encode() for _ in range(5)]   # alike in 16 digits
    for values in (pool[:50], pool, pool[50:], pool[:1], []):
        digits = np.array([values[i] for i in rng.integers(0, len(values), 400)] if values else [], dtype="S40")
        unique, inverse, order, starts = _distinct(digits)
        expected, expected_inverse = np.unique(digits, return_inverse=True)
        assert np.array_equal(unique, expected) and np.array_equal(inverse, expected_inverse.ravel())
        assert np.array_equal(digits[order], np.sort(digits, kind="stable")) and np.array_equal(digits[order][starts], unique)
