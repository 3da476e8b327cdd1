"""Lens reads: our read-only contract placed for the duration of one ``eth_call`` (a state override).

A protocol's lens (``fixtures/contracts/lens/``, one contract per protocol) returns
``(uint256 blockNumber, uint256[][] rows)``: the block it ran at and one row of words per account.
The runtime code is never deployed: each call carries it as a state override of
:data:`LENS_ADDRESS` (geth, erigon, reth, nethermind and anvil take the override as the third
``eth_call`` parameter). A node that refuses overrides is detected once by :func:`probe`, and the
scan falls back to Multicall3. Calls are sized by a budget of reads per call and halved when the
node runs out of gas; an answer for another block than the one asked is asked again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
from eth_utils import keccak, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.rpc import PrunedStateError, RpcClient

LENS_ADDRESS = to_checksum_address(keccak(text="defi-contagion/scan-lens")[-20:])
# NUMBER PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN: answers the block number it runs at
PROBE_CODE = "0x4360005260206000f3"
CALL_GAS = 45_000_000          # under geth's and erigon's default eth_call gas cap (50M)
READS_PER_CALL = 4_000         # contract reads per eth_call to start from (a few thousand gas each)
# out of gas in a sub-call shows as a plain revert of the lens, and out of gas for memory as
# anvil's "MemoryOOG": all mean "fewer accounts per call"
SMALLER_CALL = ("gas", "revert", "oog")
BLOCK_RETRIES = 8

T = TypeVar("T")
LensCall = Callable[..., bytes]
"""``lens(runtime_code, calldata, codes=None) -> returned bytes`` at the scan's block; ``codes``:
{address: runtime code} placed beside the lens for the call (contracts whose storage the lens
reads through code of ours: :mod:`protocols.compound_v2.borrows`)."""


def probe(client: RpcClient, block: int) -> bool:
    """Whether the node runs an ``eth_call`` with a code override (answers the block it ran at)."""
    try:
        answer = client.request("eth_call", [{"to": LENS_ADDRESS, "data": "0x"}, hex(block),
                                             {LENS_ADDRESS: {"code": PROBE_CODE}}])
    except PrunedStateError:
        raise
    except ContagionError:
        return False
    return isinstance(answer, str) and answer.startswith("0x") and len(answer) > 2 and int(answer, 16) == block


class LensUnavailable(Exception):
    """The node does not run an eth_call with a state override."""


def lens_caller(client: RpcClient, block: int, on_refusal: Callable[[], None] = lambda: None) -> LensCall:
    """``lens(code, calldata)`` at ``block``; the node is probed at the first call (a scan that reads
    everything from its cache asks nothing), and a refusal raises :class:`LensUnavailable`."""
    state: dict[str, bool] = {}
    lock = threading.Lock()

    def call(code: str, calldata: bytes, codes: Mapping[str, str] | None = None) -> bytes:
        with lock:
            if "ok" not in state:
                state["ok"] = probe(client, block)
                if not state["ok"]:
                    on_refusal()
        if not state["ok"]:
            raise LensUnavailable
        tx = {"to": LENS_ADDRESS, "data": "0x" + calldata.hex(), "gas": hex(CALL_GAS)}
        overrides = {address: {"code": other} for address, other in (codes or {}).items()}
        overrides[LENS_ADDRESS] = {"code": code}
        for _attempt in range(BLOCK_RETRIES):
            answer = client.request("eth_call", [tx, hex(block), overrides])
            raw = bytes.fromhex(answer[2:]) if isinstance(answer, str) and answer.startswith("0x") else b""
            if len(raw) < 64:
                raise ContagionError(f"the scan lens answered {len(raw)} bytes, not a block and rows")
            answered = int.from_bytes(raw[:32], "big")
            if answered == block:
                return raw
        raise ContagionError(f"the node keeps answering for block {answered}, not the block asked ({block})")
    call.accounts_per_call = {}  # type: ignore[attr-defined]  # by lens code: the batch size the node's gas cap was found to take
    return call


def _word(value: int | str) -> bytes:
    """An address (hex text) or a uint256 as one ABI word."""
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
    return value.to_bytes(32, "big")


def encode_arguments(*arguments: int | str | Sequence[int | str]) -> bytes:
    """ABI arguments of a lens call, each an address or uint256 (one word) or an array of them
    (``address[]`` / ``uint256[]``): what ``eth_abi.encode`` gives, without its per-value checks
    (which cost more than the node's work for thousands of accounts)."""
    heads, tails, offset = [], [], 32 * len(arguments)
    for argument in arguments:
        if isinstance(argument, int | str):
            heads.append(_word(argument))
            continue
        texts = [v for v in argument if isinstance(v, str)]
        if len(texts) == len(argument):     # addresses: one hex text, decoded at once
            body = bytes.fromhex("".join("0" * 24 + (v[2:] if v[:2] in ("0x", "0X") else v) for v in texts))
        elif not texts:                     # uint256s (masks, ids)
            body = b"".join([v.to_bytes(32, "big") for v in argument])  # type: ignore[union-attr]
        else:
            body = b"".join(_word(v) for v in argument)
        tail = len(argument).to_bytes(32, "big") + body
        heads.append(offset.to_bytes(32, "big"))
        tails.append(tail)
        offset += len(tail)
    return b"".join(heads + tails)


def decode_rows(raw: bytes) -> list[list[int]]:
    """``(uint256, uint256[][])`` ABI-decoded without eth-abi (which is too slow for 10^5 rows): every
    word of the answer that fits 64 bits (most: counts, offsets, flags, indexes) converted by numpy
    at once, those that fit 128 bits (balances) as their two 64-bit halves joined at once, the
    wider ones one by one; each row a slice of that one list."""
    if len(raw) % 32:
        raise ContagionError(f"the scan lens answered {len(raw)} bytes, not whole ABI words")
    lanes = np.frombuffer(raw, dtype=">u8").reshape(-1, 4)
    wide = np.flatnonzero(lanes[:, :3].any(axis=1))
    values = lanes[:, 3].astype(object)     # Python integers
    halves = ~lanes[wide, :2].any(axis=1)
    values[wide[halves]] = (lanes[wide[halves], 2].astype(object) << 64) | values[wide[halves]]
    word = int.from_bytes
    for k in wide[~halves].tolist():
        values[k] = word(raw[32 * k:32 * k + 32], "big")
    words: list[int] = values.tolist()
    head = words[1] // 32                                   # the outer array's word
    count = words[head]
    base = head + 1
    rows = []
    for at in range(base, base + count):
        start = base + words[at] // 32
        rows.append(words[start + 1:start + 1 + words[start]])
    return rows


def in_batches(lens: LensCall, code: str, count: int, first_size: int, read: Callable[[int, int], T],
               check: Callable[[int, int, T], None] = lambda start, stop, answer: None) -> list[T] | None:
    """``read(start, stop)`` over consecutive slices of ``range(count)``, each answer ``check``ed,
    in as few calls as the node's gas cap allows: slices of ``first_size`` (or the size learnt for
    ``code`` before, on ``lens.accounts_per_call``), halved (and the size learnt) while the node
    runs out of gas; None when the node refuses state overrides."""
    learnt = getattr(lens, "accounts_per_call", {})
    size = learnt.get(code) or first_size
    answers: list[T] = []
    start = 0
    while start < count:
        stop = min(count, start + size)
        try:
            answer = read(start, stop)
        except LensUnavailable:
            return None
        except ContagionError as exc:
            if not any(k in str(exc).lower() for k in SMALLER_CALL) or size == 1:
                raise
            size = learnt[code] = max(1, size // 2)
            continue
        check(start, stop, answer)
        answers.append(answer)
        start = stop
    return answers


def read_rows(lens: LensCall, code: str, encode: Callable[[Sequence[str]], bytes], accounts: Sequence[str],
              reads_per_account: int, codes: Mapping[str, str] | None = None) -> list[list[int]] | None:
    """One row per account, in as few calls as the node's gas cap allows (``codes``: as
    :data:`LensCall`); None when the node refuses state overrides (the reader then reads through
    Multicall3)."""
    def read(start: int, stop: int) -> list[list[int]]:
        batch = list(accounts[start:stop])
        return decode_rows(lens(code, encode(batch), codes) if codes else lens(code, encode(batch)))

    def check(start: int, stop: int, got: list[list[int]]) -> None:
        if len(got) != stop - start:
            raise ContagionError(f"the scan lens returned {len(got)} rows for {stop - start} accounts")

    batches = in_batches(lens, code, len(accounts), max(1, READS_PER_CALL // max(1, reads_per_account)), read, check)
    return None if batches is None else [row for rows in batches for row in rows]


def masks(holdings: dict[str, list[str]] | None, accounts: Sequence[str], reads: Sequence[str]) -> list[int]:
    """Per account, bit i set where ``reads[i]`` (an aToken, a cToken, a collateral asset) is among
    the holdings discovery saw for the account (:attr:`protocols.base.Reader.holdings`); no masks
    (read everything) when the holdings are unknown or there are more reads than bits in a word."""
    if holdings is None or len(reads) > 256:
        return []
    bit = {address.lower(): 1 << i for i, address in enumerate(reads)}
    spelled: dict[str, int] = {}      # each holding as discovery spells it -> its bit (0: not read)
    out = []
    for account in accounts:
        mask = 0
        for holding in holdings.get(account, ()):
            one = spelled.get(holding)
            if one is None:
                one = spelled[holding] = bit.get(holding.lower(), 0)
            mask |= one
        out.append(mask)
    return out


def to_int256(word: int) -> int:
    """A two's complement word as a signed integer."""
    return word - (1 << 256) if word >> 255 else word
