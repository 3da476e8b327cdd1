"""Compound V2's integer math, exactly: the check path beside the float64 rule.

Each function mirrors a contract function to the wei with Python integers (numpy object arrays
where it is per account), truncating after every Exp product or quotient as Compound's
ExponentialNoError does. Mantissas are 1e18-scaled; oracle prices are 1e(36 − underlying
decimals); cToken balances are raw 8-decimal units; borrow balances raw underlying units.
"""

from __future__ import annotations

import numpy as np

from protocols.compound_v2.constants import MANTISSA


def tokens_to_denomination(factor_mantissa: np.ndarray, exchange_rate_mantissa: np.ndarray,
                           price_mantissa: np.ndarray, weight_order: str = "factor_first") -> np.ndarray:
    """USD mantissa per cToken unit × 1e18, weighted by ``factor``.

    ``factor_first``: ``mul_(mul_(collateralFactor, exchangeRate), oraclePrice)`` (Compound);
    ``price_first``: ``mul_(weight, mul_(exchangeRate, oraclePrice))`` (Venus isolated pools).
    """
    if weight_order == "price_first":
        return factor_mantissa * (exchange_rate_mantissa * price_mantissa // MANTISSA) // MANTISSA
    return (factor_mantissa * exchange_rate_mantissa // MANTISSA) * price_mantissa // MANTISSA


def account_liquidity(ctoken_balance: np.ndarray, borrow_balance: np.ndarray, entered: np.ndarray,
                      factor_mantissa: np.ndarray, exchange_rate_mantissa: np.ndarray,
                      price_mantissa: np.ndarray, weight_order: str = "factor_first") -> tuple[np.ndarray, np.ndarray]:
    """``Comptroller.getAccountLiquidity`` for ``n`` accounts × ``m`` markets: (liquidity, shortfall).

    Σ over entered markets of truncate(tokensToDenom × cTokenBalance) against Σ truncate(price ×
    borrowBalance), both in USD mantissa (1e18 = $1). Object arrays of Python ints, exact.
    ``factor_mantissa`` is the collateral factor (Compound) or the liquidation threshold (forks
    whose liquidity check uses it).
    """
    denom = tokens_to_denomination(_ints(factor_mantissa), _ints(exchange_rate_mantissa), _ints(price_mantissa),
                                   weight_order)
    member = np.asarray(entered, dtype=bool)
    collateral = np.where(member, denom[None, :] * _ints(ctoken_balance) // MANTISSA, 0).sum(axis=1)
    borrows = np.where(member, _ints(price_mantissa)[None, :] * _ints(borrow_balance) // MANTISSA, 0).sum(axis=1)
    collateral = np.asarray(collateral, dtype=object).reshape(-1)
    borrows = np.asarray(borrows, dtype=object).reshape(-1)
    liquidity = np.array([c - b if c > b else 0 for c, b in zip(collateral, borrows, strict=True)], dtype=object)
    shortfall = np.array([b - c if b >= c else 0 for c, b in zip(collateral, borrows, strict=True)], dtype=object)
    return liquidity, shortfall


def total_collateral(ctoken_balance: np.ndarray, entered: np.ndarray, exchange_rate_mantissa: np.ndarray,
                     price_mantissa: np.ndarray) -> np.ndarray:
    """Venus isolated pools' ``snapshot.totalCollateral``: Σ entered truncate(mul_(er, price) × balance),
    USD mantissa, compared with ``minLiquidatableCollateral``."""
    per_token = _ints(exchange_rate_mantissa) * _ints(price_mantissa) // MANTISSA
    member = np.asarray(entered, dtype=bool)
    return np.asarray(np.where(member, per_token[None, :] * _ints(ctoken_balance) // MANTISSA, 0).sum(axis=1),
                      dtype=object).reshape(-1)


def seize_tokens(repay_amount: int, incentive_mantissa: int, price_borrowed_mantissa: int,
                 price_collateral_mantissa: int, exchange_rate_mantissa: int) -> int:
    """``Comptroller.liquidateCalculateSeizeTokens``: cTokens of collateral seized for ``repay_amount``."""
    numerator = incentive_mantissa * price_borrowed_mantissa // MANTISSA
    denominator = price_collateral_mantissa * exchange_rate_mantissa // MANTISSA
    ratio = numerator * MANTISSA // denominator
    return ratio * repay_amount // MANTISSA


def max_repay_for_balance(ctoken_balance: int, incentive_mantissa: int, price_borrowed_mantissa: int,
                          price_collateral_mantissa: int, exchange_rate_mantissa: int) -> int:
    """The largest repay whose ``seize_tokens`` still fits ``ctoken_balance`` (else LIQUIDATE_SEIZE_TOO_MUCH)."""
    numerator = incentive_mantissa * price_borrowed_mantissa // MANTISSA
    denominator = price_collateral_mantissa * exchange_rate_mantissa // MANTISSA
    ratio = numerator * MANTISSA // denominator
    return ((ctoken_balance + 1) * MANTISSA - 1) // ratio


def max_close(close_factor_mantissa: int, borrow_balance: int) -> int:
    """``mul_ScalarTruncate(closeFactor, borrowBalance)``: the most one liquidateBorrow may repay."""
    return close_factor_mantissa * borrow_balance // MANTISSA


def protocol_seize_tokens(seize: int, protocol_seize_share_mantissa: int, incentive_mantissa: int | None = None) -> int:
    """The protocol's share of ``seize`` cTokens; the liquidator gets the rest.

    Compound ``CToken.seizeInternal``: ``mul_(seize, share)``; Venus isolated pools
    ``VToken._seize`` (``incentive_mantissa`` given): ``div_(mul_(seize, share), incentive)``.
    """
    share = seize * protocol_seize_share_mantissa // MANTISSA
    return share if incentive_mantissa is None else share * MANTISSA // incentive_mantissa


def _ints(values) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    return np.vectorize(int, otypes=[object])(array) if array.size else array
