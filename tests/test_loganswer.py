"""The log answer read by offsets (anvil's, reth's and geth's compact layout) equals the JSON
decoder's reading of the same bytes; an answer damaged anywhere is refused or read as it was."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from analyzer.loganswer import _fixed_layout, parse_log_answer
from analyzer.logcolumns import LogColumns


def same_columns(left: LogColumns, right: LogColumns) -> bool:
    return (all(np.array_equal(getattr(left, f), getattr(right, f)) for f in ("address", "topics", "topic_counts", "block"))
            and left.data == right.data)


def hex_text(rng: random.Random, digits: int, upper: bool = False) -> str:
    text = "".join(rng.choice("0123456789abcdef") for _ in range(digits))
    return "0x" + (text.upper() if upper else text)


def random_logs(rng: random.Random, count: int, *, with_hash: bool = True) -> list[dict]:
    """Logs as a node writes them (its key order: anvil and reth with blockHash before blockNumber,
    geth without), with 0-4 topics, data of 0-12 words or of odd lengths, any case."""
    logs = []
    for _ in range(count):
        log = {"address": hex_text(rng, 40, upper=rng.random() < 0.2),
               "topics": [hex_text(rng, 64, upper=rng.random() < 0.1) for _ in range(rng.randrange(5))],
               "data": hex_text(rng, rng.choice([0, 64, 64, 128, 192, 64 * 12, 2, 70]), upper=rng.random() < 0.1)}
        if with_hash:
            log["blockHash"] = hex_text(rng, 64)
        log["blockNumber"] = hex(rng.randrange(1 << rng.choice([1, 8, 24, 40])))
        log.update({"transactionHash": hex_text(rng, 64), "transactionIndex": hex(rng.randrange(300)),
                    "logIndex": hex(rng.randrange(300)), "removed": False})
        logs.append(log)
    return logs


def compact(request_id: int, logs: list[dict]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": logs}, separators=(",", ":")).encode()


@pytest.mark.parametrize("with_hash", [True, False])
def test_a_compact_answer_is_read_by_offsets_as_the_json_decoder_reads_it(with_hash):
    rng = random.Random(7)
    for count in (0, 1, 2, 50):
        logs = random_logs(rng, count, with_hash=with_hash)
        answer = compact(9, logs)
        fixed = _fixed_layout(answer, 9)        # the offsets, not the regular expressions, read it
        assert fixed is not None and same_columns(fixed, LogColumns.from_dicts(logs))
        assert same_columns(parse_log_answer(answer, 9), LogColumns.from_dicts(logs))
        assert parse_log_answer(answer, 10) is None and _fixed_layout(answer + b"\n", 9) is not None
        # every data word, against a plain loop over the decoder's strings
        everyone = np.arange(count)
        for word in range(3):
            has, words = fixed.data_words(everyone, word)
            expected = [log["data"][2 + 64 * word:66 + 64 * word].lower() for log in logs
                        if len(log["data"]) >= 66 + 64 * word]
            assert has.tolist() == [len(log["data"]) >= 66 + 64 * word for log in logs]
            assert words.astype(str).tolist() == expected


def test_an_answer_damaged_anywhere_is_refused_or_read_as_it_was():
    rng = random.Random(11)
    logs = random_logs(rng, 3)
    answer = compact(3, logs)
    expected = LogColumns.from_dicts(logs)
    assert _fixed_layout(answer, 3) is not None
    taken = 0
    for at in range(len(answer)):
        for byte in b'"]}{[,:g \x00':
            if answer[at] == byte:
                continue
            damaged = answer[:at] + bytes([byte]) + answer[at + 1:]
            columns = parse_log_answer(damaged, 3)
            # no byte of these is part of a value read: a damaged value is refused, a damaged key or
            # frame read as written nowhere else (refused), other keys' values ignored
            if columns is not None:
                taken += 1
                assert same_columns(columns, expected), (at, bytes([byte]))
    assert taken       # the keys nothing reads (transactionHash, logIndex, ...) may be damaged
    for cut in range(1, len(answer)):
        assert _fixed_layout(answer[:cut], 3) is None


def test_an_answer_of_another_layout_is_left_to_the_regular_expressions():
    logs = random_logs(random.Random(5), 4)
    reordered = [{"topics": log["topics"], **log} for log in logs]
    for body in (json.dumps({"jsonrpc": "2.0", "id": 4, "result": logs}).encode(),     # spaced
                 compact(4, reordered)):
        assert _fixed_layout(body, 4) is None
        assert same_columns(parse_log_answer(body, 4), LogColumns.from_dicts(logs))


def test_the_logs_of_an_event_and_its_emitters_are_those_a_plain_loop_picks():
    rng = random.Random(3)
    logs = random_logs(rng, 300)
    emitters = ["0x" + "ab" * 20, "0x" + "ab" * 4 + "cd" * 16, "0x" + "12" * 20]    # two alike in their first digits
    event = hex_text(rng, 64)
    for i, log in enumerate(logs):
        log["address"] = [*emitters, "0x" + "ab" * 4 + "ef" * 16, log["address"]][i % 5]
        if log["topics"] and i % 3:
            log["topics"][0] = "0x" + event[2:].upper() if i % 7 == 0 else event
    columns = _fixed_layout(compact(1, logs), 1)
    assert columns is not None
    for wanted in ([emitters[0].upper()], emitters[:2], emitters[1:], []):
        expected = [bool(log["topics"]) and log["topics"][0].lower() == event
                    and (not wanted or log["address"].lower() in {e.lower() for e in wanted}) for log in logs]
        assert columns.of_event(event, tuple(wanted)).tolist() == expected
        assert columns.of_event(event.upper(), tuple(wanted)).tolist() == expected     # remembered
        if wanted:
            assert columns.emitted_by(wanted).tolist() == [log["address"].lower() in {e.lower() for e in wanted}
                                                           for log in logs]
