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
from operator import itemgetter
from typing import Any

import numpy as np
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, ParseError
from eth_abi.grammar import ABIType, BasicType, TupleType
from eth_abi.grammar import parse as parse_abi_type
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3

from analyzer.chain import require_anvil, rpc
from analyzer.errors import ContagionError
from analyzer.rpc import RetryingProvider

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


def _encode_call(signature: str, args: tuple) -> bytes:
    selector, inputs, _ = parse_signature(signature)
    return selector + abi_encode(list(inputs), list(args))


# a scan asks the same calls again at each block (a pool's every tickBitmap word): encoded once
_encode_known_call = lru_cache(maxsize=1 << 16)(_encode_call)
checksum_address = lru_cache(maxsize=1 << 14)(to_checksum_address)


@dataclass(frozen=True)
class Call:
    """One contract read: target, signature with outputs, arguments."""

    target: str
    signature: str
    args: tuple = ()

    @property
    def calldata(self) -> bytes:
        try:
            hash(self.args)
        except TypeError:          # a list argument: not cached
            return _encode_call(self.signature, self.args)
        return _encode_known_call(self.signature, self.args)

    def decode(self, data: bytes) -> Any:
        """The decoded answer: a single value for one output, else a tuple; exactly what
        ``eth_abi.decode`` gives (or raises)."""
        return _answer_decoder(self.signature)(data)


@lru_cache(maxsize=1 << 12)
def _answer_decoder(signature: str) -> Callable[[bytes], Any]:
    """What :meth:`Call.decode` does for ``signature``, compiled once. Where every output is
    static, its words are read directly (eth-abi took most of the time of reading Aave's reserves,
    market data and oracles); eth-abi decodes any other answer (a dynamic output) and any answer
    a word reader finds unusual (short, a padding byte it refuses), so an answer decodes or
    fails exactly as eth-abi has it."""
    outputs = list(parse_signature(signature)[2])

    def through_eth_abi(data: bytes) -> Any:
        values = abi_decode(outputs, data)
        return values[0] if len(values) == 1 else values

    readers: list[Callable[[bytes], Any]] = []
    try:
        shape = tuple(_layout(parse_abi_type(kind), readers) for kind in outputs)
    except (ValueError, ParseError):
        return _dynamic_answer(outputs, through_eth_abi)
    words = tuple((_WORD * i, read) for i, read in enumerate(readers))
    build = _builder(shape[0], 0) if len(shape) == 1 else _builder(shape, 0)
    if shape == (None,):    # one word (a balance, an address, a decimals): read without the list
        return _one_word_answer(readers[0], through_eth_abi)

    def answer(data: bytes) -> Any:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray)):
                return through_eth_abi(data)
            data = bytes(data)         # HexBytes: a bytesN value is plain bytes, as eth-abi's
        if len(data) < _WORD * len(words):
            return through_eth_abi(data)
        try:
            return build([read(data[at:at + _WORD]) for at, read in words])
        except _Unusual:
            return through_eth_abi(data)
    return answer


def _one_word_answer(read: Callable[[bytes], Any], through_eth_abi: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """:func:`_answer_decoder`'s answer for one output of one word."""
    def answer(data: bytes) -> Any:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray)):
                return through_eth_abi(data)
            data = bytes(data)
        if len(data) < _WORD:
            return through_eth_abi(data)
        try:
            return read(data[:_WORD])
        except _Unusual:
            return through_eth_abi(data)
    return answer


def _dynamic_answer(outputs: list[str], through_eth_abi: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """The decoder of one dynamic output a market read asks often (a token's ``string`` symbol, an
    ``address[]`` list of reserves or markets, a ``uint256[]``): read directly where the answer has
    the one shape eth-abi's encoder gives it (the offset 32, then the length, then the words, padded
    with zeros), eth-abi's for any other answer and any other type. Decoding 85 such answers through
    eth-abi took a tenth of a second per rescan's market reads."""
    kind = outputs[0] if len(outputs) == 1 else ""
    item = None
    if kind.endswith("[]") and kind.count("[") == 1:
        try:
            leaf = parse_abi_type(kind[:-2])
        except (ValueError, ParseError):
            return through_eth_abi
        item = _word_reader(leaf) if isinstance(leaf, BasicType) and not leaf.arrlist else None
        if item is None:
            return through_eth_abi
    elif kind not in ("string", "bytes"):
        return through_eth_abi
    text = kind == "string"

    def answer(data: bytes) -> Any:
        if type(data) is not bytes or len(data) < 2 * _WORD or data[:_WORD] != _OFFSET_WORD or any(data[_WORD:56]):
            return through_eth_abi(data)
        length = int.from_bytes(data[56:64], "big")
        if item is not None:
            if len(data) < 2 * _WORD + _WORD * length:
                return through_eth_abi(data)
            try:
                return tuple([item(data[at:at + _WORD]) for at in range(2 * _WORD, 2 * _WORD + _WORD * length, _WORD)])
            except _Unusual:
                return through_eth_abi(data)
        end = 2 * _WORD + length
        padded = end + (-length % _WORD)
        if len(data) < padded or data.count(0, end, padded) != padded - end:
            return through_eth_abi(data)
        value = data[2 * _WORD:end]
        if not text:
            return value
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return through_eth_abi(data)
    return answer


class _Unusual(Exception):
    """A word eth-abi's strict decoder may refuse: eth-abi decodes the answer (and raises)."""


_WORD = 32
_ZERO_WORD = bytes(_WORD)
_TRUE_WORD = (1).to_bytes(_WORD, "big")
_OFFSET_WORD = _WORD.to_bytes(_WORD, "big")     # the head of one dynamic value: its data follows at once


def _uint_reader(bits: int) -> Callable[[bytes], int]:
    def read(word: bytes) -> int:
        value = int.from_bytes(word, "big")
        if value >> bits:           # eth-abi: non-empty padding
            raise _Unusual
        return value
    return read


def _int_reader(bits: int) -> Callable[[bytes], int]:
    half = 1 << (bits - 1)

    def read(word: bytes) -> int:
        # the word sign-extends an intN exactly when its 256-bit value is within intN's range
        value = int.from_bytes(word, "big", signed=True)
        if not -half <= value < half:
            raise _Unusual
        return value
    return read


def _bytes_reader(size: int) -> Callable[[bytes], bytes]:
    padding = bytes(_WORD - size)

    def read(word: bytes) -> bytes:
        if word[size:] != padding:
            raise _Unusual
        return word[:size]
    return read


def _address(word: bytes) -> str:
    if word[:12] != _ZERO_WORD[:12]:
        raise _Unusual
    return "0x" + word[12:].hex()   # lower case, as eth-abi


def _bool(word: bytes) -> bool:
    if word == _ZERO_WORD:
        return False
    if word == _TRUE_WORD:
        return True
    raise _Unusual


def _word_reader(abi_type: BasicType) -> Callable[[bytes], Any] | None:
    """What reads one word of ``abi_type`` (uintN, intN, address, bool, bytesN), None for any other
    type (eth-abi's: dynamic, fixed-point, an alias such as ``uint``, an invalid size)."""
    base, sub = abi_type.base, abi_type.sub
    if base in ("uint", "int") and isinstance(sub, int) and 8 <= sub <= 256 and sub % 8 == 0:
        return _uint_reader(sub) if base == "uint" else _int_reader(sub)
    if base == "bytes" and isinstance(sub, int) and 1 <= sub <= 32:
        return _bytes_reader(sub)
    if sub is None:
        return {"address": _address, "bool": _bool}.get(base)
    return None


_Shape = tuple[Any, ...] | None     # None: one word; a tuple: a tuple or fixed array of shapes


def _layout(abi_type: ABIType, readers: list) -> _Shape:
    """Append to ``readers`` one reader per word of a static ``abi_type``, in order (its ABI
    encoding is those words, no offsets), and return how its values nest; ValueError where the
    type is dynamic or one :func:`_word_reader` leaves to eth-abi."""
    if abi_type.arrlist:
        dims = abi_type.arrlist[-1]
        if len(dims) != 1 or dims[0] < 1:
            raise ValueError(f"{abi_type.to_type_str()} is dynamic")
        return tuple(_layout(abi_type.item_type, readers) for _ in range(dims[0]))
    if isinstance(abi_type, TupleType):
        return tuple(_layout(c, readers) for c in abi_type.components)
    reader = _word_reader(abi_type)
    if reader is None:
        raise ValueError(f"{abi_type.to_type_str()} is left to eth-abi")
    readers.append(reader)
    return None


def _builder(shape: _Shape, first: int) -> Callable[[list], Any]:
    """From the flat list of word values, the value of ``shape`` whose first word is ``first``."""
    if shape is None:
        return itemgetter(first)
    if all(s is None for s in shape):
        end = first + len(shape)
        return lambda values: tuple(values[first:end])
    parts, at = [], first
    for s in shape:
        parts.append(_builder(s, at))
        at += _word_count(s)
    return lambda values: tuple([part(values) for part in parts])


def _word_count(shape: _Shape) -> int:
    return 1 if shape is None else sum(_word_count(s) for s in shape)


@dataclass(frozen=True)
class CallResult:
    success: bool
    value: Any = None

    def unwrap(self, what: str = "call") -> Any:
        if not self.success:
            raise ContagionError(f"{what} reverted")
        return self.value


_FAILED = CallResult(False, None)     # immutable: every failed call's result


def _decode_result(call: Call, success: bool, data: bytes) -> CallResult:
    if not success:
        return _FAILED
    try:
        return CallResult(True, _answer_decoder(call.signature)(data))
    except (DecodingError, ValueError, OverflowError):
        # e.g. a call to an address without code "succeeds" with empty data
        return _FAILED


def _word(value: int) -> bytes:
    return value.to_bytes(_WORD, "big")


def aggregate3_arguments(calls: Sequence[tuple[str, bytes]]) -> bytes:
    """The ABI encoding of ``aggregate3``'s one argument, ``(address target, bool allowFailure,
    bytes callData)[]`` with every ``allowFailure`` true, for (checksummed target, calldata) pairs:
    an offset to the array; its length; one offset per element (from the first one's); each
    element's address, flag, offset of its bytes (three words in), length and data zero-padded
    to whole words. Written out because eth-abi's generic encoder was most of a scan's Python time;
    ``tests/test_multicall.py`` checks it against eth-abi."""
    tails = [_aggregate3_element(target, data) for target, data in calls]
    heads, offset = [], _WORD * len(calls)
    for tail in tails:
        heads.append(_word(offset))
        offset += len(tail)
    return b"".join((_word(_WORD), _word(len(calls)), *heads, *tails))


@lru_cache(maxsize=1 << 16)
def _aggregate3_element(target: str, data: bytes) -> bytes:
    """One element of :func:`aggregate3_arguments`, encoded once: a scan asks the same calls of
    its markets and oracles at every block."""
    return b"".join((bytes.fromhex(target[2:]).rjust(_WORD, b"\0"), _word(1), _word(3 * _WORD), _word(len(data)),
                     data, bytes(-len(data) % _WORD)))


def aggregate3_answers(raw: bytes) -> list[tuple[bool, bytes]]:
    """``aggregate3``'s answer, ``(bool success, bytes returnData)[]``, decoded as strictly as
    eth-abi does (offsets and lengths inside the answer, flags 0 or 1, zero padding); ValueError
    for anything else. Its offsets and lengths are read at once with numpy where every one is a
    whole number of words inside the answer (as eth-abi's encoder writes them), else word by word."""
    raw = bytes(raw)
    regular = _regular_answers(raw)
    return regular if regular is not None else _answers_word_by_word(raw)


def _regular_answers(raw: bytes) -> list[tuple[bool, bytes]] | None:
    """:func:`aggregate3_answers` of an answer whose every offset is word-aligned and every word read
    fits the answer, its checks made on arrays; None for any other answer (read word by word, which
    accepts or refuses it)."""
    size = len(raw)
    if size % _WORD or size < 2 * _WORD:
        return None
    lanes = np.frombuffer(raw, dtype=">u8").reshape(-1, 4)
    fits: np.ndarray = ~lanes[:, :3].any(axis=1)     # the word's value is its last 64 bits
    value = lanes[:, 3]
    words = len(value)

    def at(index: np.ndarray) -> np.ndarray | None:
        """The values of the words at ``index``, where each fits within the answer's size."""
        if not len(index):
            return index
        if index.max() >= words or not fits[index].all() or value[index].max() > size:
            return None
        return value[index].astype(np.int64)

    head = at(np.zeros(1, dtype=np.int64))
    if head is None or head[0] % _WORD or (count_at := head[0] // _WORD) >= words:
        return None
    count = at(np.array([count_at]))
    base = count_at + 1
    if count is None or count[0] > words - base:
        return None
    offsets = at(np.arange(base, base + count[0]))
    if offsets is None or (offsets % _WORD).any():
        return None
    element = base + offsets // _WORD
    flags, inner = at(element), at(element + 1)
    if flags is None or inner is None or (flags > 1).any() or (inner % _WORD).any():
        return None
    length = at(element + inner // _WORD)
    if length is None:
        return None
    start = (element + inner // _WORD + 1) * _WORD
    end = start + length
    padded = end + (-length % _WORD)
    if len(padded) and padded.max() > size:
        return None
    ragged = np.flatnonzero(length % _WORD).tolist()
    if any(raw.count(0, e, p) != p - e for e, p in zip(end[ragged].tolist(), padded[ragged].tolist(), strict=True)):
        return None
    return [(flag == 1, raw[s:e]) for flag, s, e in zip(flags.tolist(), start.tolist(), end.tolist(), strict=True)]


def _answers_word_by_word(raw: bytes) -> list[tuple[bool, bytes]]:
    """:func:`aggregate3_answers` of any answer, each offset and length read and checked in turn."""

    def word(at: int) -> int:
        if at < 0 or at + _WORD > len(raw):
            raise ValueError(f"a pointer or length past the end of the {len(raw)}-byte answer")
        return int.from_bytes(raw[at:at + _WORD], "big")

    start = word(0)
    count, base = word(start), start + _WORD
    if count > (len(raw) - base) // _WORD:
        raise ValueError(f"{count} results cannot fit in a {len(raw)}-byte answer")
    answers = []
    for i in range(count):
        element = base + word(base + i * _WORD)
        flag, at = word(element), element + word(element + _WORD)
        length = word(at)
        end = at + _WORD + length
        padded = end + (-length % _WORD)
        if flag > 1 or padded > len(raw) or any(raw[end:padded]):
            raise ValueError(f"result {i} is not a (bool, bytes) pair")
        answers.append((flag == 1, raw[at + _WORD:end]))
    return answers


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
    selector = parse_signature(AGGREGATE3)[0]
    send = send or (lambda tx, blk: eth_call(w3, tx, blk))
    results: list[CallResult] = []
    target = checksum_address(address)
    # every batch also asks Multicall3 its block number: a node (or a proxy, a load balancer)
    # that answers from another block than the one asked is caught and asked again
    block_check = Call(target, "getBlockNumber()(uint256)")
    for start in range(0, len(calls), chunk_size):
        chunk = [block_check, *calls[start:start + chunk_size]]
        data = selector + aggregate3_arguments([(checksum_address(c.target), c.calldata) for c in chunk])
        for _attempt in range(BLOCK_RETRIES):
            raw = send({"to": target, "data": "0x" + data.hex()}, block)
            try:
                answers = aggregate3_answers(raw)
            except ValueError as exc:
                raise ContagionError(f"Multicall3 at {address} answered something undecodable ({exc})") from None
            if len(answers) != len(chunk):
                raise ContagionError(f"Multicall3 returned {len(answers)} results for {len(chunk)} calls")
            answered = _decode_result(block_check, *answers[0])
            if answered.success and answered.value == block:
                break
        else:
            raise ContagionError(f"the node keeps answering for block {answered.value}, not the block asked ({block})")
        results.extend(_decode_result(c, ok, ret) for c, (ok, ret) in zip(chunk[1:], answers[1:], strict=True))
    return results


def _answer_through_provider(w3: Web3, tx: dict, block: int | str) -> dict | None:
    """The node's JSON-RPC answer to ``eth_call``, asked through the provider at once where it is
    ours (a scan's :class:`analyzer.rpc.RetryingProvider`: the same retries), not web3's middleware
    and formatters (following a mainnet-scale scan's oracle paths took a third less CPU); None for
    any other provider."""
    if isinstance(w3.provider, RetryingProvider):
        tag = hex(block) if isinstance(block, int) else block     # a number or "latest"
        return w3.provider.make_request("eth_call", [tx, tag])
    return None


def _result_bytes(answer: dict | None) -> bytes | None:
    result = None if answer is None else answer.get("result")
    if isinstance(result, str) and result.startswith("0x"):
        return bytes.fromhex(result[2:])
    return None


def eth_call(w3: Web3, tx: dict, block: int | str) -> bytes:
    """``w3.eth.call(tx, block)``'s bytes. An error answer (a revert) is asked again through web3,
    to raise what web3 raises."""
    raw = _result_bytes(_answer_through_provider(w3, tx, block))
    return raw if raw is not None else bytes(w3.eth.call(tx, block_identifier=block))


def single_call(w3: Web3, call: Call, *, block: int | str) -> CallResult:
    """The same call as a plain ``eth_call`` (used to check multicall, and for one-off reads). A
    revert is a failed result, from the node's first answer (not asked again)."""
    tx = {"to": to_checksum_address(call.target), "data": "0x" + call.calldata.hex()}
    try:
        answer = _answer_through_provider(w3, tx, block)
        raw = _result_bytes(answer) if answer is not None else bytes(w3.eth.call(tx, block_identifier=block))
    except ContagionError:      # the node cannot answer at all (e.g. no state at the block)
        raise
    except Exception:  # a revert: web3 raises ContractLogicError or an RPC error
        return CallResult(False, None)
    if raw is None:    # the provider's answer was an error object: a revert
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
