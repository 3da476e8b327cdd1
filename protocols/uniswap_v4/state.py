"""Where a V4 pool's state lives in the PoolManager's storage (v4-core's ``StateLibrary``), read with
``extsload``: ``pools`` is mapping slot 6, a pool's ``Pool.State`` starts at
``keccak256(poolId . 6)``: slot0 (sqrtPriceX96 in bits 0-159, tick 160-183, protocolFee 184-207,
lpFee 208-231), feeGrowthGlobal0/1 (+1, +2), liquidity (+3), ``ticks`` mapping (+4, each
``TickInfo`` starting with liquidityGross in the low and liquidityNet in the high 128 bits),
``tickBitmap`` mapping (+5, int16 word position -> uint256)."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

POOLS_SLOT = 6
LIQUIDITY_OFFSET, TICKS_OFFSET, TICK_BITMAP_OFFSET = 3, 4, 5
MASK_160, MASK_128, MASK_24 = (1 << 160) - 1, (1 << 128) - 1, (1 << 24) - 1


def pool_state_slot(pool_id: str) -> bytes:
    return keccak(bytes.fromhex(pool_id.removeprefix("0x")) + POOLS_SLOT.to_bytes(32, "big"))


def _offset(slot: bytes, offset: int) -> bytes:
    return (int.from_bytes(slot, "big") + offset).to_bytes(32, "big")


def liquidity_slot(pool_id: str) -> bytes:
    return _offset(pool_state_slot(pool_id), LIQUIDITY_OFFSET)


def tick_info_slot(pool_id: str, tick: int) -> bytes:
    return keccak(encode(["int256", "bytes32"], [tick, _offset(pool_state_slot(pool_id), TICKS_OFFSET)]))


def bitmap_word_slot(pool_id: str, word_pos: int) -> bytes:
    return keccak(encode(["int256", "bytes32"], [word_pos, _offset(pool_state_slot(pool_id), TICK_BITMAP_OFFSET)]))


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def decode_slot0(word: int) -> dict[str, int]:
    """StateLibrary.getSlot0: sqrtPriceX96, tick, protocolFee, lpFee."""
    return {"sqrt_price_x96": word & MASK_160, "tick": _signed((word >> 160) & MASK_24, 24),
            "protocol_fee": (word >> 184) & MASK_24, "lp_fee": (word >> 208) & MASK_24}


def liquidity_net(word: int) -> int:
    """TickInfo's liquidityNet: the high 128 bits of its first slot, signed."""
    return _signed(word >> 128, 128)
