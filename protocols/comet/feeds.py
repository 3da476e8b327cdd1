"""Comet's price feeds answered from their answer at the scan's block, for the lens's ``eth_call``.

``isLiquidatable`` (read for every borrower) prices the base and each collateral the account has
through ``getPrice(feed)``: ``latestRoundData()`` on the feed (Comet.sol; a Chainlink proxy and
its aggregator, or an adapter over other feeds), several calls and storage reads per price, the
same answer for every account at one block. So each feed's answer is read once per reader (one
Multicall3 request for all of a market's feeds; a feed that allows only some callers answers
every allowed caller the same), and for the lens's calls the feed's code is replaced by :func:`constant_code`, which returns those
bytes to ``latestRoundData()`` and reverts on anything else. A call the constant cannot answer
reverts the lens call: the reader then reads without the constants (:func:`guarded`, a warning
says so), as a feed whose answer could not be read is left as it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from eth_utils import function_signature_to_4byte_selector

from analyzer.errors import ContagionError
from analyzer.multicall import Call

log = logging.getLogger(__name__)

LATEST_ROUND_DATA = function_signature_to_4byte_selector("latestRoundData()")


def constant_code(selector: bytes, answer: bytes) -> str:
    """Runtime code that returns ``answer`` to a call of exactly ``selector`` (no arguments) and
    reverts otherwise."""
    if len(selector) != 4 or len(answer) > 0xFFFF:
        raise ValueError("a 4-byte selector and an answer under 64 KiB")
    size = len(answer).to_bytes(2, "big")
    code = (bytes([0x60, 0x00, 0x35, 0x60, 0xE0, 0x1C, 0x63]) + selector     # calldataload(0) >> 224 == selector
            + bytes([0x14, 0x36, 0x60, 0x04, 0x14, 0x16, 0x60, 24, 0x57])      # and calldatasize == 4: jump
            + bytes([0x60, 0x00, 0x80, 0xFD])                                   # else revert(0, 0)
            + bytes([0x5B, 0x61]) + size + bytes([0x61, 0x00, 40, 0x60, 0x00, 0x39])   # codecopy(0, 40, size)
            + bytes([0x61]) + size + bytes([0x60, 0x00, 0xF3]))                 # return(0, size)
    assert len(code) == 40
    return "0x" + (code + answer).hex()


@dataclass(frozen=True)
class RawCall(Call):
    """A Multicall3 read whose answer is the bytes returned, as they are."""

    def decode(self, data: bytes) -> Any:
        return bytes(data)


def feed_codes(reader) -> dict[str, str]:
    """Per feed of the reader's market state (base and collaterals): its constant code; {} when
    constants are off for the reader (one was refused before)."""
    known = getattr(reader, "_feed_codes", None)
    if known is not None:
        return known
    state = reader._lens_state
    unique = list(dict.fromkeys([state["base_feed"], *(a["feed"] for a in state["assets"])]))
    answers = reader.ctx.multicall([RawCall(feed, "latestRoundData()(bytes)") for feed in unique])
    # a feed that does not answer here (or answers nothing) is left as it is
    codes = {feed: constant_code(LATEST_ROUND_DATA, got.value) for feed, got in zip(unique, answers, strict=True)
             if got.success and got.value}
    reader._feed_codes = codes
    return codes


def guarded(reader, lens):
    """``lens`` for the reader's calls with constant feeds: a call that reverts with them is asked
    again with the feeds as they are; if that answers, the constants were at fault: they are off
    for the reader (a warning says so) and that answer is taken; if it fails too (out of gas shows
    as a revert), the first error stands and the batch is split as usual."""

    def call(code: str, calldata: bytes, codes=None) -> bytes:
        codes = codes if getattr(reader, "_feed_codes", None) else None
        if not codes:
            return lens(code, calldata)
        try:
            return lens(code, calldata, codes)
        except ContagionError as exc:
            if "revert" not in str(exc).lower():
                raise
            try:
                answer = lens(code, calldata)
            except ContagionError:
                raise exc from None
            reader._feed_codes = {}
            log.warning("comet %s: the lens with constant price feeds reverted where the feeds answer (%s): "
                        "reading with the feeds as they are", reader.comet, str(exc)[:120])
            return answer
    call.accounts_per_call = getattr(lens, "accounts_per_call", {})  # type: ignore[attr-defined]  # shared
    return call
