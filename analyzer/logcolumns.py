"""``eth_getLogs`` logs as columns (numpy arrays), as :mod:`analyzer.loganswer` reads them from a
node's answer: what discovery decodes declared event fields from (:mod:`analyzer.discovery`) for
every log of a range at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LOWER_HEX = b"0123456789abcdef"
HEX_VALUE = np.full(256, 255, dtype=np.uint8)     # a hex digit's value by its byte (either case), 255 for others
HEX_VALUE[np.frombuffer(LOWER_HEX, np.uint8)] = HEX_VALUE[np.frombuffer(LOWER_HEX.upper(), np.uint8)] = np.arange(16)
WORD_DIGITS = 64        # a data word: 32 bytes in hex


@dataclass
class LogColumns:
    """Logs as columns: ``address`` (lower-case ``0x`` hex, ``S42``), ``topics`` (every topic of every
    log in order, lower-case ``0x`` hex, as a numpy ``S66`` array) with ``topic_counts`` per log,
    ``block`` (int64), and each log's data as hex digits (as the node spelled them, without ``0x``):
    ``data_lengths[i]`` digits from ``data_starts[i]`` in ``data_digits`` (uint8; the node's answer
    itself where it was read by offsets)."""

    address: np.ndarray
    topics: np.ndarray
    topic_counts: np.ndarray
    block: np.ndarray
    data_digits: np.ndarray
    data_starts: np.ndarray
    data_lengths: np.ndarray
    _data: list[bytes] | None = field(default=None, repr=False, compare=False)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)    # columns and masks asked before

    def __len__(self) -> int:
        return len(self.block)

    @classmethod
    def with_data(cls, address: np.ndarray, topics: np.ndarray, topic_counts: np.ndarray, block: np.ndarray,
                  data: Sequence[bytes]) -> LogColumns:
        """Columns whose data is each log's ``0x`` hex text (bytes)."""
        digits = [d[2:] if d[:2] in (b"0x", b"0X") else d for d in data]
        lengths = np.fromiter(map(len, digits), dtype=np.int64, count=len(digits))
        return cls(address, topics, topic_counts, block, np.frombuffer(b"".join(digits), dtype=np.uint8),
                   np.cumsum(lengths) - lengths, lengths)

    @property
    def data(self) -> list[bytes]:
        """Each log's data as ``0x`` hex text (bytes)."""
        if self._data is None:
            whole = self.data_digits.tobytes()
            self._data = [b"0x" + whole[s:s + n] for s, n in zip(self.data_starts.tolist(), self.data_lengths.tolist(),
                                                                 strict=True)]
        return self._data

    def data_words(self, logs: np.ndarray, word: int) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``logs`` (indices) have data word ``word`` (0-based), as a mask; that word of
        each of them, 64 lower-case hex digits as ``S64``)."""
        at = self.data_starts[logs] + WORD_DIGITS * word
        has = self.data_lengths[logs] >= WORD_DIGITS * (word + 1)
        if not has.any():
            return has, np.empty(0, dtype="S64")
        rows = byte_rows(self.data_digits, at[has], WORD_DIGITS)
        assert rows is not None     # every word lies within the data
        return has, np.frombuffer(rows.tobytes().lower(), dtype="S64")

    @property
    def topic_starts(self) -> np.ndarray:
        if "starts" not in self._memo:
            self._memo["starts"] = np.cumsum(self.topic_counts) - self.topic_counts
        return self._memo["starts"]

    def of_event(self, topic0: str, emitters: Sequence[str] = ()) -> np.ndarray:
        """The mask of the logs whose first topic is ``topic0`` (``0x`` hex text), emitted by one of
        ``emitters`` (hex text, any case; every emitter when empty). Each event's mask and each set
        of emitters' is made once (a reader declares several fields on one event)."""
        key = (topic0.lower(), tuple(emitters))
        if key not in self._memo:
            if "topic0" not in self._memo:
                first = np.zeros(len(self), dtype="S66")
                first[self.topic_counts > 0] = self.topics[self.topic_starts[self.topic_counts > 0]]
                self._memo["topic0"] = first
            if (topic0.lower(), ()) not in self._memo:
                self._memo[topic0.lower(), ()] = self._memo["topic0"] == topic0.lower().encode()
            if emitters and ("emitters", key[1]) not in self._memo:
                self._memo["emitters", key[1]] = self.emitted_by(emitters)
            self._memo[key] = self._memo[topic0.lower(), ()] & self._memo["emitters", key[1]] if emitters \
                else self._memo[topic0.lower(), ()]
        return self._memo[key]

    def emitted_by(self, emitters: Sequence[str]) -> np.ndarray:
        """The mask of the logs emitted by one of ``emitters`` (hex text, any case): matched on the
        first 8 digits of each address as one integer, then every match checked whole (np.isin
        compares every address with every emitter)."""
        wanted = np.unique(np.array([e.lower() for e in emitters], dtype="S42"))
        keys = _prefix_keys(wanted)
        order = np.argsort(keys)
        keys, wanted = keys[order], wanted[order]
        if len(np.unique(keys)) < len(keys) or self.address.dtype != wanted.dtype or not len(wanted):
            return np.isin(self.address, wanted)       # two emitters alike in their first digits
        found = _prefix_keys(self.address)
        at = np.minimum(np.searchsorted(keys, found), len(keys) - 1)
        mask = keys[at] == found
        mask[mask] = self.address[mask] == wanted[at[mask]]
        return mask

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
        return cls.with_data(address=np.array([str(log["address"]).lower() for log in logs], dtype="S42"),
                             topics=np.array(topics, dtype="S66"),
                             topic_counts=np.array([len(log.get("topics", [])) for log in logs], dtype=np.int64),
                             block=np.array([int(log["blockNumber"], 16) if isinstance(log["blockNumber"], str)
                                             else int(log["blockNumber"]) for log in logs], dtype=np.int64),
                             data=[str(log.get("data", "0x")).encode() for log in logs])


def _prefix_keys(addresses: np.ndarray) -> np.ndarray:
    """The 8 bytes after ``0x`` of each ``S42`` address, as one uint64 each."""
    rows = np.ascontiguousarray(addresses).view(np.uint8).reshape(len(addresses), addresses.dtype.itemsize)
    return np.ascontiguousarray(rows[:, 2:10]).view(np.uint64).ravel()


def byte_rows(body: np.ndarray, at: np.ndarray, width: int) -> np.ndarray | None:
    """The ``width`` bytes from each offset ``at`` (rows of uint8); None if one runs past the end."""
    if not len(at):
        return np.empty((0, width), dtype=np.uint8)
    if width > len(body) or int(at.max()) > len(body) - width or int(at.min()) < 0:
        return None
    # one item of ``width`` bytes starting at every byte: a gather of whole items (a third faster
    # than rows of a sliding window, which copy byte by byte)
    items = np.ndarray(buffer=body, dtype=f"S{width}", shape=(len(body) - width + 1,), strides=(1,))
    return items[at].view(np.uint8).reshape(len(at), width)
