"""The lens reads' batching (analyzer/lens.py ``in_batches``), which both the row lenses
(``read_rows``) and Comet's packed principals use: consecutive slices, halved while the node runs
out of gas and the size learnt for the lens code, None when the node refuses overrides. Offline:
a fake node whose gas cap takes a given number of accounts a call."""

from __future__ import annotations

import pytest

from analyzer.errors import ContagionError
from analyzer.lens import LensUnavailable, in_batches, read_rows


class Node:
    """A lens call that answers ``range(start, stop)`` squared, and runs out of gas past ``cap``."""

    def __init__(self, cap: int, error: str = "execution reverted: out of gas") -> None:
        self.cap, self.error, self.sizes = cap, error, []
        self.accounts_per_call: dict[str, int] = {}

    def read(self, start: int, stop: int) -> list[int]:
        self.sizes.append(stop - start)
        if stop - start > self.cap:
            raise ContagionError(self.error)
        return [k * k for k in range(start, stop)]


@pytest.mark.parametrize("error", ["execution reverted: out of gas", "EVM error MemoryOOG", "execution reverted"])
def test_batches_are_halved_while_the_node_runs_out_of_gas_and_the_size_is_learnt(error):
    node = Node(cap=5, error=error)
    answers = in_batches(node, "0xcode", 23, 16, node.read)
    assert answers is not None and [v for a in answers for v in a] == [k * k for k in range(23)]
    assert node.sizes == [16, 8, 4, 4, 4, 4, 4, 3]
    assert node.accounts_per_call == {"0xcode": 4}
    node.sizes.clear()          # the next read starts from the size learnt, for that code only
    in_batches(node, "0xcode", 9, 16, node.read)
    in_batches(node, "0xother", 3, 16, node.read)
    assert node.sizes == [4, 4, 1, 3]


def test_a_node_without_the_learnt_sizes_and_a_call_of_one_account():
    node = Node(cap=1)
    answers = in_batches(node.read, "0xcode", 3, 2, node.read)     # a plain function: nothing is learnt on it
    assert answers == [[0], [1], [4]] and node.sizes == [2, 1, 1, 1]
    none = Node(cap=0)
    with pytest.raises(ContagionError, match="out of gas"):         # one account too many: the node's error
        in_batches(none, "0xcode", 3, 2, none.read)


def test_other_errors_and_refusals():
    other = Node(cap=5, error="bad address")
    with pytest.raises(ContagionError, match="bad address"):
        in_batches(other, "0xcode", 10, 8, other.read)

    def refused(start: int, stop: int) -> list[int]:
        raise LensUnavailable

    assert in_batches(Node(cap=5), "0xcode", 10, 8, refused) is None
    assert in_batches(Node(cap=5), "0xcode", 0, 8, refused) == []


def test_a_check_that_fails_is_not_taken_for_gas():
    """An answer ``check`` refuses raises as it is, even when its words look like the node's gas
    errors: only a failed call is sent again smaller."""
    node = Node(cap=5)
    checked = []

    def check(start: int, stop: int, answer: list[int]) -> None:
        checked.append((start, stop))
        if start >= 8:
            raise ContagionError("reverted: a short answer")

    with pytest.raises(ContagionError, match="short answer"):
        in_batches(node, "0xcode", 12, 4, node.read, check)
    assert checked == [(0, 4), (4, 8), (8, 12)] and node.sizes == [4, 4, 4]


def test_read_rows_checks_the_row_count_and_joins_the_batches():
    def encode_rows(rows: list[list[int]]) -> bytes:      # (uint256, uint256[][]) as a lens answers
        words = [7, 64, len(rows)]
        offsets, body = [], []
        at = 32 * len(rows)
        for row in rows:
            offsets.append(at)
            body += [len(row), *row]
            at += 32 * (1 + len(row))
        return b"".join(w.to_bytes(32, "big") for w in words + offsets + body)

    def lens(code: str, calldata: bytes) -> bytes:
        accounts = calldata.decode().split(",")
        if len(accounts) > 3:
            raise ContagionError("execution reverted")
        return encode_rows([[int(a), 2 * int(a)] if a != "0" else [] for a in accounts])

    accounts = [str(k) for k in range(8)]
    rows = read_rows(lens, "0xcode", lambda batch: ",".join(batch).encode(), accounts, reads_per_account=1)
    assert rows == [[]] + [[k, 2 * k] for k in range(1, 8)]

    def short(code: str, calldata: bytes) -> bytes:
        return encode_rows([[1]])

    with pytest.raises(ContagionError, match="returned 1 rows for 2 accounts"):
        read_rows(short, "0xcode", lambda batch: b"", ["a", "b"], reads_per_account=1)
