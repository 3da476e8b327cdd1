"""EIP-55 checksummed addresses, many at once.

``eth_utils.to_checksum_address`` costs tens of microseconds an address (a keccak object per call and
its input checks): a scan of 10^5 accounts met in 10^6 logs spent seconds there. Here Keccak-256
(the Keccak-f[1600] permutation of the Keccak reference, FIPS 202 section 3 with the original
Keccak padding ``0x01 ... 0x80`` Ethereum uses) runs over a whole column of 40-character inputs as
numpy lanes, one permutation for all of them (a few addresses: eth-hash's
Keccak, as eth-utils), and :func:`checksum` remembers every answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from eth_hash.auto import keccak

RATE_BYTES = 136    # Keccak-256: capacity 512 bits
ROUND_CONSTANTS = np.array([
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000, 0x000000000000808B,
    0x0000000080000001, 0x8000000080008081, 0x8000000000008009, 0x000000000000008A, 0x0000000000000088,
    0x0000000080008009, 0x000000008000000A, 0x000000008000808B, 0x800000000000008B, 0x8000000000008089,
    0x8000000000008003, 0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008], dtype=np.uint64)
# rotation offsets r[x][y] of the rho step
ROTATIONS = ((0, 36, 3, 41, 18), (1, 44, 10, 45, 2), (62, 6, 43, 15, 61), (28, 55, 25, 21, 56), (27, 20, 39, 8, 14))
MAX_CACHED = 1 << 21
BATCH = 16_384
FEW = 256
_CHECKSUMMED: dict[str | bytes, str] = {}
_BY_DIGITS: dict[bytes, str] = {}      # 40 lower-case hex digits -> checksummed (remember_hex_column)


# lane i = x + 5 * y: its rotation (rho) and where the pi step moves it
SHIFTS = {x + 5 * y: (np.uint64(ROTATIONS[x][y]), np.uint64((64 - ROTATIONS[x][y]) % 64)) for x in range(5) for y in range(5)}
MOVED_TO = {x + 5 * y: y + 5 * ((2 * x + 3 * y) % 5) for x in range(5) for y in range(5)}
ONE, SIXTY_THREE = np.uint64(1), np.uint64(63)


def _permute(state: list[np.ndarray]) -> list[np.ndarray]:
    """Keccak-f[1600] on lanes ``state[x + 5 * y]`` (each an array: one lane per message), in place:
    every step writes into arrays made once (a new array per operation cost a third more)."""
    count = len(state[0])
    columns = [np.empty(count, np.uint64) for _ in range(5)]
    moved = [np.empty(count, np.uint64) for _ in range(25)]
    mix, spare = np.empty(count, np.uint64), np.empty(count, np.uint64)
    xor, shl, shr, both = np.bitwise_xor, np.left_shift, np.right_shift, np.bitwise_and
    for constant in ROUND_CONSTANTS:
        for x in range(5):      # theta: the parity of each column
            xor(state[x], state[x + 5], out=columns[x])
            for y in (2, 3, 4):
                xor(columns[x], state[x + 5 * y], out=columns[x])
        for x in range(5):      # theta's mix into each lane, then rho (rotate) and pi (move)
            right = columns[(x + 1) % 5]
            shl(right, ONE, out=mix)
            shr(right, SIXTY_THREE, out=spare)
            np.bitwise_or(mix, spare, out=mix)
            xor(mix, columns[(x - 1) % 5], out=mix)
            for y in range(5):
                lane, target = state[x + 5 * y], moved[MOVED_TO[x + 5 * y]]
                xor(lane, mix, out=lane)
                left, back = SHIFTS[x + 5 * y]
                if left:
                    shl(lane, left, out=target)
                    shr(lane, back, out=spare)
                    np.bitwise_or(target, spare, out=target)
                else:
                    target[...] = lane
        for y in range(5):      # chi
            for x in range(5):
                out = state[x + 5 * y]
                np.invert(moved[(x + 1) % 5 + 5 * y], out=out)
                both(out, moved[(x + 2) % 5 + 5 * y], out=out)
                xor(out, moved[x + 5 * y], out=out)
        xor(state[0], constant, out=state[0])     # iota
    return state


def keccak256_rows(messages: np.ndarray) -> np.ndarray:
    """Keccak-256 of each row of ``messages`` (uint8, shape (n, length), length < 136): (n, 32) uint8."""
    count, length = messages.shape
    if length >= RATE_BYTES:
        raise ValueError(f"keccak256_rows hashes messages under {RATE_BYTES} bytes, not {length}")
    block = np.zeros((count, RATE_BYTES), dtype=np.uint8)
    block[:, :length] = messages
    block[:, length] ^= 0x01
    block[:, RATE_BYTES - 1] ^= 0x80
    lanes = block.view("<u8")      # 17 little-endian lanes a message
    state = [np.ascontiguousarray(lanes[:, i]) if i < RATE_BYTES // 8 else np.zeros(count, dtype=np.uint64)
             for i in range(25)]
    state = _permute(state)
    return np.stack(state[:4], axis=1).astype("<u8").view(np.uint8).reshape(count, 32)


def _lower_hex(address: str | bytes) -> bytes:
    if isinstance(address, bytes | bytearray):
        if len(address) != 20:
            raise ValueError(f"an address is 20 bytes, not {len(address)}")
        return bytes(address).hex().encode()
    text = address[2:] if address[:2] in ("0x", "0X") else address
    if len(text) != 40:
        raise ValueError(f"{address!r} is not a 20-byte hex address")
    int(text, 16)       # not hex: ValueError
    return text.lower().encode()


def checksum_many(addresses: Iterable[str | bytes]) -> list[str]:
    """EIP-55 checksummed ``0x`` addresses of 20-byte values or hex strings (any case, with or
    without ``0x``); a character of the address is upper case where the matching nibble of
    ``keccak256(lower-case hex)`` is 8 or more."""
    text = [_lower_hex(a) for a in addresses]
    if not text:
        return []
    return _checksum_chars(np.frombuffer(b"".join(text), dtype=np.uint8).reshape(len(text), 40))


def _checksum_chars(chars: np.ndarray) -> list[str]:
    """Checksummed ``0x`` addresses of rows of 40 lower-case hex digits (uint8, shape (n, 40))."""
    count = len(chars)
    if count < FEW:     # a permutation of numpy lanes costs milliseconds, whatever their number
        digest = np.frombuffer(b"".join(keccak(row.tobytes()) for row in chars), dtype=np.uint8).reshape(count, 32)
    else:               # in slices that keep the lanes in cache
        digest = np.concatenate([keccak256_rows(chars[i:i + BATCH]) for i in range(0, count, BATCH)])
    # a nibble of 8 or more: the high bit of each 4 (bits 7 and 3 of each of the first 20 bytes)
    high = np.unpackbits(digest[:, :20], axis=1)[:, ::4]
    text = np.empty((count, 42), dtype=np.uint8)
    text[:, :2] = np.frombuffer(b"0x", dtype=np.uint8)
    text[:, 2:] = chars ^ ((high & (chars >= ord("a"))) << 5)      # a letter's 0x20 bit off: upper case
    joined = text.tobytes().decode()
    return [joined[42 * i:42 * i + 42] for i in range(count)]


def remember_hex_column(digits: np.ndarray) -> list[str]:
    """Checksummed ``0x`` addresses of a column of lower-case hex digits (numpy ``S40``): those not
    yet met in a column hashed in one batch without a Python step per address, and remembered by
    their digits and in the checksummed form (what readers pass :func:`checksum` again)."""
    if not len(digits):
        return []
    keys = np.ascontiguousarray(digits.astype("S40")).tolist()
    found = list(map(_BY_DIGITS.get, keys))
    missing = [i for i, known in enumerate(found) if known is None] if None in found else []
    if not missing:
        return found  # type: ignore[return-value]  # every entry known
    whole = len(missing) == len(keys)
    done = _checksum_chars(np.frombuffer(b"".join(keys if whole else [keys[i] for i in missing]),
                                         dtype=np.uint8).reshape(len(missing), 40))
    if len(_CHECKSUMMED) + len(done) > MAX_CACHED or len(_BY_DIGITS) + len(done) > MAX_CACHED:
        _CHECKSUMMED.clear()
        _BY_DIGITS.clear()
    _BY_DIGITS.update(zip(keys if whole else [keys[i] for i in missing], done, strict=True))
    _CHECKSUMMED.update(zip(done, done, strict=True))
    if whole:
        return done
    for i, address in zip(missing, done, strict=True):
        found[i] = address
    return found  # type: ignore[return-value]  # every entry filled above


def remember(addresses: Iterable[str | bytes]) -> None:
    """Checksum every address not yet known, in one batch (callers then :func:`checksum` each)."""
    todo = list({a for a in addresses if a not in _CHECKSUMMED})
    if not todo:
        return
    if len(_CHECKSUMMED) + len(todo) > MAX_CACHED:
        _CHECKSUMMED.clear()
    done = checksum_many(todo)
    _CHECKSUMMED.update(zip(todo, done, strict=True))
    _CHECKSUMMED.update(zip(done, done, strict=True))     # a checksummed address is its own answer


def checksum(address: str | bytes) -> str:
    """The checksummed form of ``address`` (20 bytes or hex text), remembered."""
    known = _CHECKSUMMED.get(address)
    if known is None:
        remember([address])
        known = _CHECKSUMMED[address]
    return known
