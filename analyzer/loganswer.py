"""``eth_getLogs`` answers as columns (:class:`analyzer.logcolumns.LogColumns`), read from the
node's bytes without a JSON decoder.

A mainnet-sized discovery is hundreds of megabytes of logs: ``json.loads`` builds a dict per log
and a string per field, and then a Python callback per log looked at them (seconds each at 10^5
accounts). A log answer's values are only hex strings, numbers in hex, booleans and one array of
hex strings (``topics``), and its keys are fixed words (Ethereum JSON-RPC, ``eth_getLogs``). Where
a node writes them compactly in its fixed order (anvil, reth, geth: :func:`_fixed_layout`), every
field sits at an offset from its log's ``{`` or from the end of the variable field before it, so
the columns are cut out of the bytes with numpy, without a Python step per log. Otherwise each
field is one regular expression over the whole answer, found in log order. The answer is taken
only when it is plainly a log list (no error, the id asked, as many of each field as there are
logs, every value checked); anything else is left to the JSON decoder.
"""

from __future__ import annotations

import re

import numpy as np

from analyzer.logcolumns import HEX_VALUE, LOWER_HEX, WORD_DIGITS, LogColumns, byte_rows

# each value closed where the next key or the log's end follows (a value cut short by a stray quote is not one)
FIELD = {
    "address": re.compile(rb'"address"\s*:\s*"(0x[0-9a-fA-F]{40})"(?=\s*[,}])'),
    "topics": re.compile(rb'"topics"\s*:\s*\[([^\]]*)\](?=\s*[,}])'),
    "data": re.compile(rb'"data"\s*:\s*"(0x[0-9a-fA-F]*)"(?=\s*[,}])'),
    "blockNumber": re.compile(rb'"blockNumber"\s*:\s*"(0x[0-9a-fA-F]+)"(?=\s*[,}])'),
}
# the four fields in one pass, where a node writes them in this order without spaces (anvil and reth:
# blockHash between data and blockNumber; geth: none)
LOG = re.compile(rb'"address":"(0x[0-9a-fA-F]{40})","topics":\[([^\]]*)\],"data":"(0x[0-9a-fA-F]*)",'
                 rb'(?:"blockHash":"0x[0-9a-fA-F]{64}",)?"blockNumber":"(0x[0-9a-fA-F]+)"(?=[,}])')
TOPIC = re.compile(rb"0x[0-9a-fA-F]{64}")
FRAME_COLUMNS, FRAME = [0, 1, 2, 67, 68], np.frombuffer(b'"0x",', dtype=np.uint8)   # a topic's 69 bytes: "0x...",
FRAME_AND_DIGITS = b'"x,0123456789abcdef'
ANSWER_ID = re.compile(rb'"id"\s*:\s*(\d+)')
RESULT_OPENS = re.compile(rb'"result"\s*:\s*\[')


def parse_log_answer(content: bytes, request_id: int) -> LogColumns | None:
    """The logs of a JSON-RPC ``eth_getLogs`` answer ``content`` (to request ``request_id``) as
    columns; None when it is not plainly such an answer (an error, another id, a field missing)."""
    if (fixed := _fixed_layout(content, request_id)) is not None:
        return fixed
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
    return LogColumns.with_data(address=np.frombuffer(b"".join(addresses).lower(), dtype="S42").copy(),
                                topics=topics, topic_counts=counts, data=data,
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


# a node's compact answer: this head, then per log (anvil, reth and geth write these keys first, in
# this order) '{"address":"0x<40>","topics":[<topics>],"data":"0x<digits>",' then, anvil and reth,
# '"blockHash":"0x<64>",' and '"blockNumber":"0x<digits>"', then keys nothing here reads
HEAD = re.compile(rb'\{"jsonrpc":"2\.0","id":(\d+),"result":\[')
LOG_HEAD, TOPICS_HEAD, DATA_HEAD = b'{"address":"0x', b'","topics":[', b'],"data":"0x'
HASH_HEAD, NUMBER_HEAD = b'","blockHash":"0x', b'","blockNumber":"0x'
DATA_END = b'","block'   # what follows a log's data in both
TOPIC_BYTES = 69        # '"0x<64 digits>"' and the comma (or ']') after it
DATA_PROBES = 9         # data of up to 8 words is found by offsets; longer, by a search per log
NUMBER_DIGITS = 15      # a block number's digits at most (int64)
OPEN, CLOSE, LIST_OPEN, LIST_CLOSE = b"{}[]"


def _fixed_layout(content: bytes, request_id: int) -> LogColumns | None:
    """The logs of an answer written compactly in the nodes' key order, cut out at offsets; None
    for any other answer (or anything out of place)."""
    head = HEAD.match(content)
    if head is None or int(head[1]) != request_id:
        return None
    body = np.frombuffer(content, dtype=np.uint8)
    starts, closes = _brackets(body)
    if starts is None or closes is None:
        return None
    tail = content.rstrip()
    if not len(starts):
        return _empty() if tail == content[:head.end()] + b"]}" else None
    # the logs follow the head and each other ('},{'), the last closes the answer ('}]}')
    heads = byte_rows(body, starts, len(LOG_HEAD) + 40 + len(TOPICS_HEAD))
    if heads is None or not (starts[0] == head.end() and tail.endswith(b"}]}") and len(tail) == closes[-1] + 2
                             and (body[starts[1:] - 2] == CLOSE).all() and (body[starts[1:] - 1] == ord(",")).all()
                             and _is(heads[:, :len(LOG_HEAD)], LOG_HEAD) and _is(heads[:, -len(TOPICS_HEAD):], TOPICS_HEAD)):
        return None
    address = _hex_column(heads[:, len(LOG_HEAD):len(LOG_HEAD) + 40])
    # topics: up to the first ']' after '[' (no value holds one)
    first = starts + len(heads[0])
    ends = closes[np.minimum(np.searchsorted(closes, first), len(closes) - 1)]
    counts = (ends - first + 1) // TOPIC_BYTES
    if address is None or not np.array_equal(ends - first, np.maximum(TOPIC_BYTES * counts - 1, 0)):
        return None
    topics = _topics(body, first, counts)
    if topics is None or not _at(body, ends, DATA_HEAD):
        return None
    data_starts = ends + len(DATA_HEAD)
    data_ends = _data_ends(content, body, data_starts)
    if data_ends is None or not _all_hex(body, data_starts, data_ends - data_starts):
        return None
    block = _block_numbers(body, data_ends)
    if block is None:
        return None
    return LogColumns(address=_prefixed(address), topics=topics, topic_counts=counts, block=block,
                      data_digits=body, data_starts=data_starts, data_lengths=data_ends - data_starts)


def _brackets(body: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(where each log's '{' is, where every ']' is), where the brackets are the answer's object
    and list and each log's object and topic list, and nothing else (no value holds one)."""
    # '{}[]' are the bytes 0x59 with bits 1, 2 and 5 free (and only 'Y', '_', 'y' and DEL besides):
    # one pass over the answer, in one scratch buffer
    scratch = np.bitwise_and(body, 0xD9)
    found = np.equal(scratch, 0x59, out=scratch.view(bool))
    marks = np.flatnonzero(found)
    kinds = body[marks]
    opens, closes = marks[kinds == OPEN], marks[kinds == LIST_CLOSE]
    if not (len(opens) and opens[0] == 0
            and np.count_nonzero(kinds == CLOSE) == np.count_nonzero(kinds == LIST_OPEN) == len(closes) == len(opens)):
        return None, None
    return opens[1:], closes


def _empty() -> LogColumns:
    none = np.empty(0, dtype=np.int64)
    return LogColumns(np.empty(0, "S42"), np.empty(0, "S66"), none, none, np.empty(0, np.uint8), none, none)


def _at(body: np.ndarray, at: np.ndarray, text: bytes) -> bool:
    """Whether ``text`` is written at every offset ``at``."""
    rows = byte_rows(body, at, len(text))
    return rows is not None and _is(rows, text)


def _is(rows: np.ndarray, text: bytes) -> bool:
    """Whether every row (uint8) is ``text``."""
    return bool((rows == np.frombuffer(text, dtype=np.uint8)).all())


def _hex_column(rows: np.ndarray) -> np.ndarray | None:
    """Rows of hex digits (uint8) in lower case, as ``S<width>``; None if one is not a hex digit."""
    width = rows.shape[1]
    text = rows.tobytes()
    if text.translate(None, LOWER_HEX):
        text = text.lower()
        if text.translate(None, LOWER_HEX):
            return None
    return np.frombuffer(text, dtype=f"S{width}")


def _prefixed(digits: np.ndarray) -> np.ndarray:
    """``0x`` + each of ``digits`` (``S<n>``), as ``S<n + 2>``."""
    width = digits.dtype.itemsize
    out = np.empty((len(digits), width + 2), dtype=np.uint8)
    out[:, :2] = np.frombuffer(b"0x", dtype=np.uint8)
    out[:, 2:] = digits.view(np.uint8).reshape(len(digits), width)
    return out.view(f"S{width + 2}").ravel()


def _topics(body: np.ndarray, first: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """Every topic (``counts`` from each offset ``first``) as lower-case ``S66``; None if one is not
    '"0x<64 hex digits>"' followed by ',' (or ']' after a log's last)."""
    total = int(counts.sum())
    if not total:
        return np.empty(0, "S66")
    log_of = np.repeat(np.arange(len(counts)), counts)
    place = np.arange(total) - (np.cumsum(counts) - counts)[log_of]
    rows = byte_rows(body, first[log_of] + TOPIC_BYTES * place, TOPIC_BYTES)
    after = np.where(place == counts[log_of] - 1, LIST_CLOSE, ord(","))
    if rows is None or not (_is(rows[:, :3], b'"0x') and _is(rows[:, 67:68], b'"') and np.array_equal(rows[:, 68], after)):
        return None
    digits = _hex_column(rows[:, 3:67])
    return None if digits is None else _prefixed(digits)


def _data_ends(content: bytes, body: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """Where each log's data digits end (its closing quote, before '","block'): at one of the first
    ``DATA_PROBES`` whole words, else found by a search (data not of whole words, or longer)."""
    probes = np.minimum(starts[:, None] + WORD_DIGITS * np.arange(DATA_PROBES), len(body) - 1)
    quoted = body[probes] == ord('"')
    ends = starts + WORD_DIGITS * quoted.argmax(axis=1)
    after = byte_rows(body, np.minimum(ends, len(body) - len(DATA_END)), len(DATA_END))
    assert after is not None    # every row starts within the answer
    for log in np.flatnonzero(~(after == np.frombuffer(DATA_END, np.uint8)).all(axis=1)).tolist():
        ends[log] = content.find(b'"', int(starts[log]))
    return None if (ends < 0).any() else ends


def _all_hex(body: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> bool:
    """Whether every log's data (``lengths`` bytes from ``starts``) is hex digits (either case):
    checked at once for the logs of each length."""
    for length in np.unique(lengths).tolist():
        if length:
            rows = byte_rows(body, starts[lengths == length], length)
            if rows is None or rows.tobytes().lower().translate(None, LOWER_HEX):
                return False
    return True


def _block_numbers(body: np.ndarray, data_ends: np.ndarray) -> np.ndarray | None:
    """Each log's block number: the hex digits after its blockHash (anvil, reth) or right after
    its data (geth), read at once; None where a log has neither."""
    hashed = len(HASH_HEAD) + 64 + len(NUMBER_HEAD)
    window = NUMBER_DIGITS + 2      # the digits, their quote and what follows (',' or '}')
    rows = byte_rows(body, data_ends, hashed + window)
    if rows is not None and _is(rows[:, :len(HASH_HEAD)], HASH_HEAD) and _is(rows[:, hashed - len(NUMBER_HEAD):hashed],
                                                                             NUMBER_HEAD):
        digits = rows[:, hashed:]
    else:
        rows = byte_rows(body, data_ends, len(NUMBER_HEAD) + window)
        if rows is None or not _is(rows[:, :len(NUMBER_HEAD)], NUMBER_HEAD):
            return None
        digits = rows[:, len(NUMBER_HEAD):]
    closed = digits[:, :-1] == ord('"')
    width = closed.argmax(axis=1)
    inside = np.arange(NUMBER_DIGITS + 1) < width[:, None]
    values = np.where(inside, HEX_VALUE[digits[:, :-1]], 0).astype(np.int64)
    follows = digits[np.arange(len(digits)), width + 1]
    if not (closed.any(axis=1).all() and (width > 0).all() and (values < 16).all()
            and ((follows == ord(",")) | (follows == CLOSE)).all()):
        return None
    powers = np.where(inside, width[:, None] - 1 - np.arange(NUMBER_DIGITS + 1), 0)
    return (values << (4 * powers)).sum(axis=1)
