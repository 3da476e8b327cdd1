"""Exact integer Uniswap V2 swap math (wei in, wei out), as the pair enforces it.

``UniswapV2Pair.swap`` (@uniswap/v2-core 1.0.1) accepts a swap when, with the input charged
0.3%, ``(balance0·1000 − amountIn0·3)·(balance1·1000 − amountIn1·3) ≥ reserve0·reserve1·1000²``.
Solving it for the largest output of an input gives ``UniswapV2Library.getAmountOut``
(v2-periphery): ``floor(997·in·reserveOut / (1000·reserveIn + 997·in))``; the input a router
charges for an exact output is ``getAmountIn``: ``floor(1000·reserveIn·out / (997·(reserveOut − out))) + 1``.
Both are reproduced here; the pair's check itself is :func:`k_holds`.
"""

from __future__ import annotations

FEE_KEEP = 997          # per mille of the input that counts towards k (UniswapV2Pair.swap)
FEE_BASE = 1000
MAX_RESERVE = (1 << 112) - 1   # reserves are uint112


class SwapMathError(ValueError):
    """A swap the pair would reject (UniswapV2: INSUFFICIENT_LIQUIDITY / INSUFFICIENT_INPUT_AMOUNT)."""


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: the most ``reserve_out`` wei an input of ``amount_in`` buys."""
    if amount_in <= 0:
        raise SwapMathError("INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise SwapMathError("INSUFFICIENT_LIQUIDITY")
    with_fee = amount_in * FEE_KEEP
    return with_fee * reserve_out // (reserve_in * FEE_BASE + with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn: the input a router pays for exactly ``amount_out``."""
    if amount_out <= 0:
        raise SwapMathError("INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or amount_out >= reserve_out:
        raise SwapMathError("INSUFFICIENT_LIQUIDITY")
    return reserve_in * amount_out * FEE_BASE // ((reserve_out - amount_out) * FEE_KEEP) + 1


def k_holds(reserve0: int, reserve1: int, amount0_in: int, amount1_in: int, amount0_out: int,
            amount1_out: int) -> bool:
    """UniswapV2Pair.swap's invariant check for a swap from reserves (balances after the transfers)."""
    balance0 = reserve0 + amount0_in - amount0_out
    balance1 = reserve1 + amount1_in - amount1_out
    if amount0_out >= reserve0 or amount1_out >= reserve1:    # require(amount0Out < _reserve0 && ...)
        return False
    adjusted0 = balance0 * FEE_BASE - amount0_in * 3
    adjusted1 = balance1 * FEE_BASE - amount1_in * 3
    return adjusted0 * adjusted1 >= reserve0 * reserve1 * FEE_BASE ** 2
