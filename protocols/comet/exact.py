"""Comet's integer arithmetic in Python ints: the exact check path of the rules.

Each function mirrors one function of compound-finance/comet ``contracts/Comet.sol`` /
``CometCore.sol`` (the mainnet cUSDCv3 implementation) with the same truncation, so a prediction
can be compared with the chain to the wei. Units: base and collateral amounts in token wei,
prices with 8 decimals (Chainlink), factors scaled 1e18, indices scaled 1e15.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FACTOR_SCALE = 10**18
BASE_INDEX_SCALE = 10**15


def _div_trunc(a: int, b: int) -> int:
    """Solidity's signed division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def present_value(principal: int, supply_index: int, borrow_index: int) -> int:
    """CometCore.presentValue: signed base balance (wei) of a signed principal."""
    if principal >= 0:
        return principal * supply_index // BASE_INDEX_SCALE
    return -((-principal) * borrow_index // BASE_INDEX_SCALE)


def principal_value(balance: int, supply_index: int, borrow_index: int) -> int:
    """CometCore.principalValue: supply rounded down, borrow rounded up."""
    if balance >= 0:
        return balance * BASE_INDEX_SCALE // supply_index
    return -((-balance * BASE_INDEX_SCALE + borrow_index - 1) // borrow_index)


def repay_and_supply(old_principal: int, new_principal: int) -> tuple[int, int]:
    """Comet.repayAndSupplyAmount: the principal change split into (repay, supply)."""
    if new_principal < old_principal:
        return 0, 0
    if new_principal <= 0:
        return new_principal - old_principal, 0
    if old_principal >= 0:
        return 0, new_principal - old_principal
    return -old_principal, new_principal


def kinked_rate(utilization: int, kink: int, base: int, low: int, high: int) -> int:
    """Comet.getSupplyRate / getBorrowRate (per second, 1e18)."""
    if utilization <= kink:
        return base + low * utilization // FACTOR_SCALE
    return base + low * kink // FACTOR_SCALE + high * (utilization - kink) // FACTOR_SCALE


def accrued_index(index: int, rate_per_second: int, elapsed_s: int) -> int:
    """Comet.accruedInterestIndices for one index."""
    return index + index * (rate_per_second * elapsed_s) // FACTOR_SCALE


@dataclass
class CometState:
    """What absorb reads and writes: totals (indices already accrued to the absorb's timestamp),
    the base token held by the Comet, prices and per-asset factors, accounts' positions."""

    supply_index: int
    borrow_index: int
    total_supply_base: int          # principal
    total_borrow_base: int          # principal
    base_balance: int               # ERC20 balance of the Comet, wei
    base_price: int                 # 8 decimals
    base_scale: int
    asset_scale: list[int]          # per collateral offset
    asset_price: list[int]          # 8 decimals, per collateral offset
    liquidate_collateral_factor: list[int]
    liquidation_factor: list[int]
    principal: dict[str, int] = field(default_factory=dict)
    collateral: dict[str, list[int]] = field(default_factory=dict)   # account -> raw per offset

    def reserves(self) -> int:
        """Comet.getReserves: balance - supplied + borrowed (base wei, may be negative)."""
        supplied = self.total_supply_base * self.supply_index // BASE_INDEX_SCALE
        borrowed = self.total_borrow_base * self.borrow_index // BASE_INDEX_SCALE
        return self.base_balance - supplied + borrowed

    def is_liquidatable(self, account: str) -> bool:
        """Comet.isLiquidatable, including its early exit once liquidity turns non-negative."""
        principal = self.principal.get(account, 0)
        if principal >= 0:
            return False
        liquidity = _div_trunc(present_value(principal, self.supply_index, self.borrow_index) * self.base_price,
                               self.base_scale)
        for i, amount in enumerate(self.collateral.get(account, [])):
            if amount == 0:
                continue
            if liquidity >= 0:
                return False
            value = amount * self.asset_price[i] // self.asset_scale[i]
            liquidity += value * self.liquidate_collateral_factor[i] // FACTOR_SCALE
        return liquidity < 0

    def absorb(self, account: str) -> int:
        """Comet.absorbInternal on this state; returns basePaidOut (wei). Raises ValueError when
        the account is not liquidatable (the contract reverts NotLiquidatable)."""
        if not self.is_liquidatable(account):
            raise ValueError(f"{account} is not liquidatable")
        old_principal = self.principal[account]
        old_balance = present_value(old_principal, self.supply_index, self.borrow_index)
        delta_value = 0
        for i, amount in enumerate(self.collateral.get(account, [])):
            value = amount * self.asset_price[i] // self.asset_scale[i]
            delta_value += value * self.liquidation_factor[i] // FACTOR_SCALE
        self.collateral[account] = [0] * len(self.asset_scale)
        new_balance = max(old_balance + delta_value * self.base_scale // self.base_price, 0)
        new_principal = principal_value(new_balance, self.supply_index, self.borrow_index)
        self.principal[account] = new_principal
        repay, supply = repay_and_supply(old_principal, new_principal)
        self.total_supply_base += supply
        self.total_borrow_base -= repay
        return new_balance - old_balance


def quote_collateral(base_amount: int, asset_price: int, base_price: int, asset_scale: int, base_scale: int,
                     liquidation_factor: int, store_front_price_factor: int) -> int:
    """Comet.quoteCollateral: collateral wei sold for ``base_amount`` base wei at the store-front
    price ``price * (1 - storeFrontPriceFactor * (1 - liquidationFactor))``."""
    discount = store_front_price_factor * (FACTOR_SCALE - liquidation_factor) // FACTOR_SCALE
    discounted = asset_price * (FACTOR_SCALE - discount) // FACTOR_SCALE
    return base_price * base_amount * asset_scale // discounted // base_scale
