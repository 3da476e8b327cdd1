"""The scan's bulk encodings against the libraries they stand in for: EIP-55 checksums and Keccak-256
(analyzer.checksum) against eth-utils / eth-hash, lens call arguments against eth-abi."""

from __future__ import annotations

import random

import numpy as np
import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from analyzer.checksum import checksum, checksum_many, keccak256_rows, remember, remember_hex_column
from analyzer.lens import decode_rows, encode_arguments


@pytest.mark.parametrize("count", [1, 7, 300, 2_000])
def test_checksums_of_many_addresses_equal_eth_utils(count):
    draw = random.Random(count)
    raw = [bytes(draw.getrandbits(8) for _ in range(20)) for _ in range(count)]
    expected = [to_checksum_address(a) for a in raw]
    assert checksum_many(raw) == expected
    assert checksum_many(["0x" + a.hex() for a in raw]) == expected
    assert checksum_many([a.hex().upper() for a in raw]) == expected


def test_remembered_checksums_answer_every_form():
    address = bytes(range(1, 21))
    remember([address])
    expected = to_checksum_address(address)
    assert checksum(address) == checksum("0x" + address.hex()) == checksum(expected) == expected
    with pytest.raises(ValueError):
        checksum("0x1234")


@pytest.mark.parametrize("count", [3, 1_000])
def test_checksums_of_a_hex_column_equal_eth_utils(count):
    draw = random.Random(count + 1)
    raw = [bytes(draw.getrandbits(8) for _ in range(20)) for _ in range(count)]
    remember(raw[:count // 2])     # some already known, some not
    expected = [to_checksum_address(a) for a in raw]
    assert remember_hex_column(np.array([a.hex().encode() for a in raw], dtype="S40")) == expected
    assert [checksum(a) for a in raw] == [checksum("0x" + a.hex()) for a in raw] == expected


def test_lens_rows_decode_as_eth_abi_encodes_them():
    draw = random.Random(5)
    widths = [0, 1, 63, 64, 65, 127, 128, 129, 200, 256]     # words under and over 64 and 128 bits
    rows = [[draw.getrandbits(draw.choice(widths)) for _ in range(draw.randrange(0, 9))] for _ in range(300)]
    assert decode_rows(encode(["uint256", "uint256[][]"], [12, rows])) == rows
    assert decode_rows(encode(["uint256", "uint256[][]"], [12, []])) == []


@pytest.mark.parametrize("length", [0, 1, 32, 40, 135])
def test_keccak_of_rows_equals_eth_hash(length):
    draw = np.random.default_rng(length)
    rows = draw.integers(0, 256, size=(5, length), dtype=np.uint8)
    digests = keccak256_rows(rows)
    assert [bytes(d) for d in digests] == [keccak(bytes(r)) for r in rows]


def test_lens_arguments_equal_eth_abi():
    draw = random.Random(3)
    addresses = [to_checksum_address(bytes(draw.getrandbits(8) for _ in range(20))) for _ in range(9)]
    words = [0, 1, 2**256 - 1, draw.getrandbits(200)]
    assert encode_arguments(addresses[0], words, addresses[1:4], addresses[4:], []) == encode(
        ["address", "uint256[]", "address[]", "address[]", "uint256[]"], [addresses[0], words, addresses[1:4],
                                                                         addresses[4:], []])
    assert encode_arguments(addresses[0], [], addresses[1:], words) == encode(
        ["address", "address[]", "address[]", "uint256[]"], [addresses[0], [], addresses[1:], words])
