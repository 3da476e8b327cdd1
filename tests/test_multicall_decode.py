"""A call's answer decodes exactly as eth-abi's strict decoder decodes it: the same values, of the
same Python types, and the same exception for an answer eth-abi refuses. Static outputs (uintN,
intN, address, bool, bytesN, tuples and fixed arrays of them) are read word by word without
eth-abi; everything else, and anything unusual in a static answer, is eth-abi's."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from hexbytes import HexBytes

import analyzer.multicall as multicall_module
from analyzer.multicall import Call, _decode_result

TARGET = "0x" + "11" * 20
STATIC_LEAVES = ["uint256", "uint8", "uint16", "uint24", "uint40", "uint64", "uint128", "uint160", "uint248",
                 "int256", "int8", "int16", "int24", "int56", "int128", "int248",
                 "address", "bool", "bytes1", "bytes4", "bytes20", "bytes31", "bytes32"]
DYNAMIC_LEAVES = ["bytes", "string"]


def random_type(rng: random.Random, depth: int = 0, dynamic: bool = False) -> str:
    """A random ABI type: a static leaf, a tuple, a fixed array; with ``dynamic`` also bytes,
    string and T[] now and then."""
    roll = rng.random()
    if depth >= 3 or roll < 0.55:
        kind = rng.choice(DYNAMIC_LEAVES) if dynamic and rng.random() < 0.15 else rng.choice(STATIC_LEAVES)
    elif roll < 0.8:
        kind = "(" + ",".join(random_type(rng, depth + 1, dynamic) for _ in range(rng.randint(1, 4))) + ")"
    else:
        kind = random_type(rng, depth + 1, dynamic)
    if depth < 3 and rng.random() < 0.15:
        kind += "[]" if dynamic and rng.random() < 0.4 else f"[{rng.randint(1, 3)}]"
    return kind


def split_outer_array(kind: str) -> tuple[str, str | None]:
    """``"(a,b)[2]"`` -> ``("(a,b)", "2")``; ``"uint8[]"`` -> ``("uint8", "")``; no array -> None."""
    if not kind.endswith("]"):
        return kind, None
    open_at = kind.rindex("[")
    return kind[:open_at], kind[open_at + 1:-1]


def tuple_components(kind: str) -> list[str]:
    parts, depth, start = [], 0, 1
    for i, char in enumerate(kind[:-1]):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 1:
            parts.append(kind[start:i])
            start = i + 1
    return [*parts, kind[start:-1]]


def random_value(rng: random.Random, kind: str) -> Any:
    """A random value eth-abi can encode as ``kind``, edges (0, the extremes) often."""
    item, size = split_outer_array(kind)
    if size is not None:
        return [random_value(rng, item) for _ in range(int(size) if size else rng.randint(0, 3))]
    if kind.startswith("("):
        return tuple(random_value(rng, c) for c in tuple_components(kind))
    if kind.startswith("uint"):
        bits = int(kind[4:])
        return rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits), rng.getrandbits(rng.randint(1, bits))])
    if kind.startswith("int"):
        half = 1 << (int(kind[3:]) - 1)
        return rng.choice([0, -1, half - 1, -half, rng.randrange(-half, half),
                           rng.randrange(max(-half, -256), min(half, 256))])
    if kind == "address":
        return "0x" + rng.randbytes(20).hex()
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "string":
        return "".join(rng.choice("aé€😀 z") for _ in range(rng.randint(0, 40)))
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 70))
    return rng.randbytes(int(kind[5:]))


def types_of(value: Any) -> Any:
    """The value's Python types, nested as the value is."""
    return tuple(types_of(v) for v in value) if isinstance(value, tuple) else type(value)


def eth_abi_outcome(outputs: list[str], data: Any) -> tuple:
    """What eth-abi's decode gives, as Call.decode shapes it: ("ok", value, types) or ("raises",
    exception type, message)."""
    try:
        values = abi_decode(outputs, data)
    except Exception as exc:
        return ("raises", type(exc), str(exc))
    value = values[0] if len(values) == 1 else values
    return ("ok", value, types_of(value))


def call_outcome(outputs: list[str], data: Any) -> tuple:
    try:
        value = Call(TARGET, f"f()({','.join(outputs)})").decode(data)
    except Exception as exc:
        return ("raises", type(exc), str(exc))
    return ("ok", value, types_of(value))


@pytest.fixture
def eth_abi_asked(monkeypatch) -> list:
    """The outputs eth-abi is asked to decode, one entry per answer."""
    asked: list = []

    def counting(outputs, data):
        asked.append(outputs)
        return abi_decode(outputs, data)

    monkeypatch.setattr(multicall_module, "abi_decode", counting)
    return asked


def test_static_outputs_are_read_without_eth_abi(monkeypatch):
    """Well-formed answers to random static signatures (flat, nested tuples, fixed arrays) decode
    as eth-abi decodes them, and eth-abi is not asked."""
    rng = random.Random(11)
    cases = []
    for _ in range(1500):
        outputs = [random_type(rng) for _ in range(rng.randint(1, 5))]
        values = [random_value(rng, kind) for kind in outputs]
        data = abi_encode(outputs, values)
        cases.append((outputs, data, eth_abi_outcome(outputs, data)))

    def no_eth_abi(*args, **kwargs):
        raise AssertionError("a static answer went to eth-abi")

    monkeypatch.setattr(multicall_module, "abi_decode", no_eth_abi)
    for outputs, data, expected in cases:
        assert expected[0] == "ok"
        assert call_outcome(outputs, data) == expected, (outputs, data.hex())


def test_outputs_with_dynamic_types_decode_as_eth_abi_does(eth_abi_asked):
    rng = random.Random(12)
    for _ in range(1500):
        outputs = [random_type(rng, dynamic=True) for _ in range(rng.randint(1, 4))]
        values = [random_value(rng, kind) for kind in outputs]
        data = abi_encode(outputs, values)
        expected = eth_abi_outcome(outputs, data)
        assert expected[0] == "ok"
        assert call_outcome(outputs, data) == expected, (outputs, data.hex())
    assert len(eth_abi_asked) > 300      # the mix did exercise eth-abi's side


def damaged(rng: random.Random, data: bytes) -> bytes:
    """The answer cut short, longer, or with a word's bytes changed (in its padding or its value):
    a bit past an address or a uintN, a bool of 2, an intN not sign-extended, dirty bytesN padding."""
    roll = rng.random()
    if roll < 0.15 or not data:
        return data[:rng.randrange(len(data) + 1)]
    if roll < 0.25:
        return data + rng.randbytes(rng.randint(1, 64))
    word = bytearray(data)
    at = rng.randrange(len(data) // 32) * 32
    for _ in range(rng.randint(1, 3)):
        spot = at + rng.choice([0, 1, 11, 12, 30, 31, rng.randrange(32)])
        word[spot] = rng.choice([1, 2, 0x80, 0xFF, rng.randrange(256)])
    if rng.random() < 0.2:
        word[at:at + 32] = rng.choice([b"\xff" * 32, b"\x80" + bytes(31), bytes(31) + b"\x02", rng.randbytes(32)])
    return bytes(word)


def test_a_damaged_answer_gives_what_eth_abi_gives():
    """Short, long, dirty padding, out-of-range bool or int: the same value or the same exception
    (type and message) as eth-abi, and a failed CallResult wherever eth-abi refuses."""
    rng = random.Random(13)
    refused = 0
    for _ in range(4000):
        outputs = [random_type(rng, dynamic=rng.random() < 0.2) for _ in range(rng.randint(1, 4))]
        data = damaged(rng, abi_encode(outputs, [random_value(rng, kind) for kind in outputs]))
        expected = eth_abi_outcome(outputs, data)
        assert call_outcome(outputs, data) == expected, (outputs, data.hex())
        result = _decode_result(Call(TARGET, f"f()({','.join(outputs)})"), True, data)
        assert (result.success, result.value) == ((True, expected[1]) if expected[0] == "ok" else (False, None))
        refused += expected[0] == "raises"
    assert refused > 1000


@pytest.mark.parametrize("word,outputs", [
    (bytes(31) + b"\x02", ["bool"]),
    (b"\x01" + bytes(31), ["address"]),
    (bytes(30) + b"\x01\x00", ["uint8"]),
    (b"\xff" * 31 + b"\x7f", ["int8"]),          # 127 with a negative number's padding
    (bytes(31) + b"\x80", ["int8"]),              # -128 without its padding
    (b"ab" + bytes(29) + b"\x01", ["bytes2"]),
    (bytes(31) + b"\x01", ["uint256", "bool"]),   # one word for two
    (b"", ["(uint8,address)"]),
])
def test_each_kind_of_damage_is_refused_as_eth_abi_refuses_it(word, outputs):
    expected = eth_abi_outcome(outputs, word)
    assert expected[0] == "raises"
    assert call_outcome(outputs, word) == expected


@pytest.mark.parametrize("outputs", [["uint7"], ["uint"], ["int"], ["bytes33"], ["fixed128x18"], ["function"],
                                     ["uint256[0]"], ["byte"], []])
def test_types_left_to_eth_abi_decode_as_eth_abi_does(outputs, eth_abi_asked):
    """Aliases, invalid sizes, fixed-point and odd arrays: eth-abi decodes (or refuses) them."""
    data = bytes(31) + b"\x05" + bytes(32)
    assert call_outcome(outputs, data) == eth_abi_outcome(outputs, data)
    assert eth_abi_asked == ([outputs] if outputs else [])


def test_any_bytes_type_is_decoded_as_plain_bytes():
    """web3 hands HexBytes; a bytesN value is plain bytes either way, as eth-abi returns it."""
    outputs = ["bytes4", "(uint8,bytes32)"]
    data = abi_encode(outputs, [b"abcd", (7, b"x" * 32)])
    for given in (data, HexBytes(data), bytearray(data)):
        assert call_outcome(outputs, given) == eth_abi_outcome(outputs, given)
        assert type(Call(TARGET, "f()(bytes4)").decode(given)) is bytes
    assert call_outcome(outputs, data.hex()) == eth_abi_outcome(outputs, data.hex())   # not bytes: eth-abi's TypeError


ONE_DYNAMIC = ["string", "bytes", "address[]", "uint256[]", "uint8[]", "int24[]", "bool[]", "bytes32[]"]


def test_one_dynamic_output_is_read_without_eth_abi(monkeypatch):
    """A symbol (``string``), a list of reserves (``address[]``), of amounts (``uint256[]``): each
    well-formed answer decodes as eth-abi decodes it, without asking eth-abi."""
    rng = random.Random(14)
    cases = []
    for _ in range(600):
        kind = rng.choice(ONE_DYNAMIC)
        data = abi_encode([kind], [random_value(rng, kind)])
        cases.append((kind, data, eth_abi_outcome([kind], data)))

    def no_eth_abi(*args, **kwargs):
        raise AssertionError("a well-formed answer of one dynamic output went to eth-abi")

    monkeypatch.setattr(multicall_module, "abi_decode", no_eth_abi)
    for kind, data, expected in cases:
        assert expected[0] == "ok"
        assert call_outcome([kind], data) == expected, (kind, data.hex())


def test_one_dynamic_output_damaged_gives_what_eth_abi_gives():
    """Cut short, longer, a moved offset, a length past the end, dirty padding, bytes that are not
    UTF-8: the same value or the same exception as eth-abi."""
    rng = random.Random(15)
    refused = 0
    for _ in range(3000):
        kind = rng.choice(ONE_DYNAMIC)
        data = damaged(rng, abi_encode([kind], [random_value(rng, kind)]))
        if rng.random() < 0.2 and len(data) >= 64:      # a length or an offset of its own
            spot = rng.choice([0, 32])
            data = data[:spot] + rng.choice([0, 1, 31, 33, 64, len(data), 2**64]).to_bytes(32, "big") + data[spot + 32:]
        expected = eth_abi_outcome([kind], data)
        assert call_outcome([kind], data) == expected, (kind, data.hex())
        refused += expected[0] == "raises"
    assert refused > 500
