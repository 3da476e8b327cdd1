"""Batched reads through Multicall3: how every reader reads.

A :class:`Call` names its target and a full signature with outputs, e.g.
``Call(pool, "getUserAccountData(address)(uint256,uint256,uint256,uint256,uint256,uint256)", (user,))``.
:func:`multicall` sends any number of them as ``aggregate3`` batches pinned to one block, keeps
each call's own failure (a reverting call is returned as failed, the batch goes on), and decodes
the answers with eth-abi.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3

from analyzer.chain import require_anvil, rpc
from analyzer.errors import ContagionError

MULTICALL3_ADDRESS = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3 = "aggregate3((address,bool,bytes)[])((bool,bytes)[])"
BLOCK_RETRIES = 8


def split_types(text: str) -> tuple[str, ...]:
    """Split a comma list of ABI types at the top level: ``"(a,b)[],c"`` -> ``("(a,b)[]", "c")``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return tuple(parts)


def _closing(text: str, open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses in {text!r}")


@lru_cache(maxsize=4096)
def parse_signature(signature: str) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """``"f(address)(uint256,bool)"`` -> (selector, input types, output types)."""
    signature = signature.replace(" ", "")
    open_in = signature.index("(")
    close_in = _closing(signature, open_in)
    name, inputs = signature[:open_in], split_types(signature[open_in + 1:close_in])
    rest = signature[close_in + 1:]
    outputs = split_types(rest[1:_closing(rest, 0)]) if rest else ()
    selector = function_signature_to_4byte_selector(f"{name}({','.join(inputs)})")
    return selector, inputs, outputs


@dataclass(frozen=True)
class Call:
    """One contract read: target, signature with outputs, arguments."""

    target: str
    signature: str
    args: tuple = ()

    @property
    def calldata(self) -> bytes:
        selector, inputs, _ = parse_signature(self.signature)
        return selector + abi_encode(list(inputs), list(self.args))

    def decode(self, data: bytes) -> Any:
        """The decoded answer: a single value for one output, else a tuple."""
        _, _, outputs = parse_signature(self.signature)
        values = abi_decode(list(outputs), data)
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class CallResult:
    success: bool
    value: Any = None

    def unwrap(self, what: str = "call") -> Any:
        if not self.success:
            raise ContagionError(f"{what} reverted")
        return self.value


def _decode_result(call: Call, success: bool, data: bytes) -> CallResult:
    if not success:
        return CallResult(False, None)
    try:
        return CallResult(True, call.decode(data))
    except (DecodingError, ValueError, OverflowError):
        # e.g. a call to an address without code "succeeds" with empty data
        return CallResult(False, None)


def multicall(
    w3: Web3,
    calls: Sequence[Call],
    *,
    block: int,
    chunk_size: int = 250,
    address: str = MULTICALL3_ADDRESS,
    send: Callable[[dict, int], bytes] | None = None,
) -> list[CallResult]:
    """Run ``calls`` through Multicall3 ``aggregate3`` at ``block``; one result per call, in order.

    ``chunk_size`` bounds the calls per ``eth_call``. ``send`` replaces the raw ``eth_call``
    (scan passes one with retries and call counting).
    """
    if not isinstance(block, int) or block < 0:
        raise ContagionError(f"multicall needs a block number, got {block!r}")
    selector, inputs, outputs = parse_signature(AGGREGATE3)
    send = send or (lambda tx, blk: bytes(w3.eth.call(tx, block_identifier=blk)))
    results: list[CallResult] = []
    target = to_checksum_address(address)
    # every batch also asks Multicall3 its block number: a node (or a proxy, a load balancer)
    # that answers from another block than the one asked is caught and asked again
    block_check = Call(target, "getBlockNumber()(uint256)")
    for start in range(0, len(calls), chunk_size):
        chunk = [block_check, *calls[start:start + chunk_size]]
        payload = [(to_checksum_address(c.target), True, c.calldata) for c in chunk]
        data = selector + abi_encode(list(inputs), [payload])
        for _attempt in range(BLOCK_RETRIES):
            raw = send({"to": target, "data": "0x" + data.hex()}, block)
            try:
                (answers,) = abi_decode(list(outputs), raw)
            except (DecodingError, ValueError) as exc:
                raise ContagionError(f"Multicall3 at {address} answered something undecodable ({exc})") from None
            if len(answers) != len(chunk):
                raise ContagionError(f"Multicall3 returned {len(answers)} results for {len(chunk)} calls")
            answered = _decode_result(block_check, bool(answers[0][0]), bytes(answers[0][1]))
            if answered.success and answered.value == block:
                break
        else:
            raise ContagionError(f"the node keeps answering for block {answered.value}, not the block asked ({block})")
        results.extend(_decode_result(c, ok, bytes(ret)) for c, (ok, ret) in zip(chunk[1:], answers[1:], strict=True))
    return results


def single_call(w3: Web3, call: Call, *, block: int) -> CallResult:
    """The same call as a plain ``eth_call`` (used to check multicall, and for one-off reads)."""
    try:
        raw = bytes(w3.eth.call({"to": to_checksum_address(call.target), "data": "0x" + call.calldata.hex()},
                                block_identifier=block))
    except Exception:  # a revert: web3 raises ContractLogicError or an RPC error
        return CallResult(False, None)
    return _decode_result(call, True, raw)


def ensure_multicall3(w3: Web3) -> str:
    """Make sure Multicall3 answers at the canonical address; on anvil, install ours if absent."""
    if len(w3.eth.get_code(MULTICALL3_ADDRESS)) > 0:
        return MULTICALL3_ADDRESS
    require_anvil(w3)
    from analyzer.devnet.solc import fixture_artifact

    rpc(w3, "anvil_setCode", [MULTICALL3_ADDRESS, fixture_artifact("multicall", "Multicall3")["deployedBytecode"]])
    return MULTICALL3_ADDRESS


def calls_for(target: str, signature: str, args_list: Iterable[tuple]) -> list[Call]:
    """The same read for many argument tuples (e.g. one per account)."""
    return [Call(target, signature, tuple(args)) for args in args_list]
