"""``eth_getLogs`` answers as columns, read from the node's bytes without a JSON decoder.

A mainnet-sized discovery is hundreds of megabytes of logs: ``json.loads`` builds a dict per log
and a string per field, and then a Python callback per log looked at them (seconds each at 10^5
accounts). A log answer's values are only hex strings, numbers in hex, booleans and one array of
hex strings (``topics``), and its keys are fixed words (Ethereum JSON-RPC, ``eth_getLogs``): so each
field is one regular expression over the whole answer, found in log order. The answer is taken
this way only when it is plainly a log list (no ``"error"``, the id asked, as many of each field as
there are logs); anything else is left to the JSON decoder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FIELD = {
    "address": re.compile(rb'"address"\s*:\s*"(0x[0-9a-fA-F]{40})"'),
    "topics": re.compile(rb'"topics"\s*:\s*\[([^\]]*)\]'),
    "data": re.compile(rb'"data"\s*:\s*"(0x[0-9a-fA-F]*)"'),
    "blockNumber": re.compile(rb'"blockNumber"\s*:\s*"(0x[0-9a-fA-F]+)"'),
}
# the four fields in one pass, where a node writes them in this order without spaces (anvil and reth:
# blockHash between data and blockNumber; geth: none)
LOG = re.compile(rb'"address":"(0x[0-9a-fA-F]{40})","topics":\[([^\]]*)\],"data":"(0x[0-9a-fA-F]*)",'
                 rb'(?:"blockHash":"0x[0-9a-fA-F]{64}",)?"blockNumber":"(0x[0-9a-fA-F]+)"')
TOPIC = re.compile(rb"0x[0-9a-fA-F]{64}")
FRAME_COLUMNS, FRAME = [0, 1, 2, 67, 68], np.frombuffer(b'"0x",', dtype=np.uint8)   # a topic's 69 bytes: "0x...",
FRAME_AND_DIGITS = b'"x,0123456789abcdef'
ANSWER_ID = re.compile(rb'"id"\s*:\s*(\d+)')
RESULT_OPENS = re.compile(rb'"result"\s*:\s*\[')


@dataclass
class LogColumns:
    """Logs as columns: ``address`` (lower-case ``0x`` hex), ``topics`` (every topic of every log in
    order, lower-case ``0x`` hex, as a numpy ``S66`` array) with ``topic_counts`` per log, ``data``
    (``0x`` hex, bytes) and ``block`` (int64)."""

    address: np.ndarray
    topics: np.ndarray
    topic_counts: np.ndarray
    data: list[bytes]
    block: np.ndarray

    def __len__(self) -> int:
        return len(self.data)

    @property
    def topic_starts(self) -> np.ndarray:
        return np.cumsum(self.topic_counts) - self.topic_counts

    def topic(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(topic ``index`` of every log that has it, as ``S66``; the mask of those logs)."""
        has = self.topic_counts > index
        return self.topics[self.topic_starts[has] + index], has

    def dicts(self) -> list[dict]:
        """The logs as JSON-RPC dicts (``address``, ``topics`` and ``data`` hex text, ``blockNumber``
        an int): what a reader's per-log callbacks take."""
        topics = self.topics.astype(str).tolist()
        starts = self.topic_starts.tolist()
        return [{"address": a, "topics": topics[s:s + n], "data": d, "blockNumber": b}
                for a, s, n, d, b in zip(self.address.astype(str).tolist(), starts, self.topic_counts.tolist(),
                                         (d.decode() for d in self.data), self.block.tolist(), strict=True)]

    @classmethod
    def from_dicts(cls, logs: Sequence[dict]) -> LogColumns:
        """Columns of logs a JSON decoder gave (a node whose answer the fast path did not take)."""
        topics = [str(t).lower() for log in logs for t in log.get("topics", [])]
        return cls(address=np.array([str(log["address"]).lower() for log in logs], dtype="S42"),
                   topics=np.array(topics, dtype="S66"),
                   topic_counts=np.array([len(log.get("topics", [])) for log in logs], dtype=np.int64),
                   data=[str(log.get("data", "0x")).encode() for log in logs],
                   block=np.array([int(log["blockNumber"], 16) if isinstance(log["blockNumber"], str)
                                   else int(log["blockNumber"]) for log in logs], dtype=np.int64))


def parse_log_answer(content: bytes, request_id: int) -> LogColumns | None:
    """The logs of a JSON-RPC ``eth_getLogs`` answer ``content`` (to request ``request_id``) as
    columns; None when it is not plainly such an answer (an error, another id, a field missing)."""
    if b'"error"' in content or RESULT_OPENS.search(content) is None:
        return None
    # a log has no "id" key: the answer's id sits before or after its result
    ids = ANSWER_ID.findall(content if len(content) < 512 else content[:256] + b" " + content[-256:])
    if len(ids) != 1 or int(ids[0]) != request_id:
        return None
    # whole: the answer's object and one object per log, closed (a body cut short is not); no value
    # of a log holds a bracket, so these counts are exact
    count = content.count(b"{") - 1
    if not (content.count(b"}") == count + 1 == content.count(b"[") == content.count(b"]")
            and content.rstrip().endswith(b"}")):
        return None
    logs = LOG.findall(content)     # a match lies within one log: as many as logs, each log matched once
    if len(logs) == count:
        addresses, topic_lists, data, blocks = (list(column) for column in zip(*logs, strict=True)) if logs else ([], [], [], [])
    else:                           # fields in another order or spaced: one pass each
        addresses, topic_lists, data, blocks = (pattern.findall(content) for pattern in FIELD.values())
        if not len(addresses) == len(topic_lists) == len(data) == len(blocks) == count:
            return None
    # written without spaces, n topics take 69n - 1 bytes ('"0x<64 digits>"' joined by commas)
    lengths = np.fromiter(map(len, topic_lists), dtype=np.int64, count=count)
    counts = (lengths + 1) // 69
    compact = np.array_equal(lengths, np.maximum(69 * counts - 1, 0))
    topics = _compact_topics(topic_lists, counts) if compact else None
    if topics is None:          # spaces, upper case: one regular expression
        found = TOPIC.findall(b",".join(topic_lists).lower())
        if not compact:
            counts = np.fromiter((t.count(b"0x") for t in topic_lists), dtype=np.int64, count=count)
        if int(counts.sum()) != len(found):
            return None
        topics = np.array(found, dtype="S66") if found else np.empty(0, "S66")
    return LogColumns(address=np.frombuffer(b"".join(addresses).lower(), dtype="S42").copy(),
                      topics=topics, topic_counts=counts, data=list(data),
                      block=np.array([int(b, 16) for b in blocks], dtype=np.int64))


def _compact_topics(topic_lists: list[bytes], counts: np.ndarray) -> np.ndarray | None:
    """Every topic as ``S66``, where every list is written in lower case without spaces (``counts``
    topics each, ``"0x<64 hex digits>"`` joined by commas): the lists joined are then rows of 69
    bytes, checked and cut at once; None otherwise."""
    if not counts.any():
        return np.empty(0, "S66")
    # every topic with its comma: rows of 69 bytes, each '"0x' + 64 digits + '",' where its frame is
    # that and every other byte a lower-case hex digit (checked on the joined bytes at once)
    joined = b",".join([*(t for t in topic_lists if t), b""])
    rows = np.frombuffer(joined, dtype=np.uint8).reshape(-1, 69)
    if not (rows[:, FRAME_COLUMNS] == FRAME).all():
        return None
    if joined.translate(None, FRAME_AND_DIGITS) or joined.count(b"x") != len(rows) \
            or joined.count(b",") != len(rows) or joined.count(b'"') != 2 * len(rows):
        return None     # another byte (upper case: the regular expression lowers it), or a frame byte among the digits
    return np.ascontiguousarray(rows[:, 1:67]).view("S66").ravel()
