"""Morpho Blue's integer math, as the contract computes it (the check path of the exact tests).

Sources (``@morpho-org/morpho-blue`` 1.0.0): ``libraries/MathLib.sol`` (``wMulDown``,
``mulDivUp``, ``wTaylorCompounded``), ``libraries/SharesMathLib.sol`` (virtual shares 1e6,
virtual assets 1), ``libraries/periphery/MorphoBalancesLib.sol`` (``expectedMarketBalances``),
``Morpho.sol`` (``_isHealthy``, ``liquidate``). All amounts are raw integers.

Example: a market with 1,000 USDC borrowed as 1e15 shares; 10 shares owe
``to_assets_up(10, 1_000_000_000, 10**15)`` = 1 wei (rounded up, against the borrower).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.morpho_blue.contracts import (
    LIQUIDATION_CURSOR,
    MAX_LIQUIDATION_INCENTIVE_FACTOR,
    ORACLE_PRICE_SCALE,
    VIRTUAL_ASSETS,
    VIRTUAL_SHARES,
    WAD,
)


def mul_div_down(x: int, y: int, d: int) -> int:
    return x * y // d


def mul_div_up(x: int, y: int, d: int) -> int:
    return (x * y + d - 1) // d


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def taylor_compounded(rate: int, seconds: int) -> int:
    """MathLib.wTaylorCompounded: e^(rate·t) − 1 to third order, in WAD."""
    first = rate * seconds
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return first + second + third


@dataclass(frozen=True)
class MarketTotals:
    """``Morpho.market(id)``: the six fields, raw."""

    total_supply_assets: int
    total_supply_shares: int
    total_borrow_assets: int
    total_borrow_shares: int
    last_update: int
    fee: int

    def accrued(self, borrow_rate: int, timestamp: int) -> MarketTotals:
        """MorphoBalancesLib.expectedMarketBalances: interest to ``timestamp`` at ``borrow_rate``
        (per second, WAD; the IRM's ``borrowRateView``), fee shares for the fee recipient."""
        elapsed = timestamp - self.last_update
        if elapsed <= 0 or self.total_borrow_assets == 0 or borrow_rate == 0:
            return self
        interest = mul_div_down(self.total_borrow_assets, taylor_compounded(borrow_rate, elapsed), WAD)
        supply_assets = self.total_supply_assets + interest
        supply_shares = self.total_supply_shares
        if self.fee:
            fee_amount = mul_div_down(interest, self.fee, WAD)
            supply_shares += to_shares_down(fee_amount, supply_assets - fee_amount, supply_shares)
        return MarketTotals(supply_assets, supply_shares, self.total_borrow_assets + interest,
                            self.total_borrow_shares, timestamp, self.fee)


def borrowed_assets(borrow_shares: int, market: MarketTotals) -> int:
    """A position's debt: its borrow shares rounded up (MorphoBalancesLib.expectedBorrowAssets)."""
    return to_assets_up(borrow_shares, market.total_borrow_assets, market.total_borrow_shares)


def supplied_assets(supply_shares: int, market: MarketTotals) -> int:
    return to_assets_down(supply_shares, market.total_supply_assets, market.total_supply_shares)


def max_borrow(collateral: int, price: int, lltv: int) -> int:
    """Morpho._isHealthy: collateral.mulDivDown(price, ORACLE_PRICE_SCALE).wMulDown(lltv)."""
    return mul_div_down(mul_div_down(collateral, price, ORACLE_PRICE_SCALE), lltv, WAD)


def is_healthy(borrow_shares: int, collateral: int, market: MarketTotals, price: int, lltv: int) -> bool:
    if borrow_shares == 0:
        return True
    return max_borrow(collateral, price, lltv) >= borrowed_assets(borrow_shares, market)


def liquidation_incentive_factor(lltv: int) -> int:
    """min(1.15, 1 / (1 − 0.3 · (1 − LLTV))) in WAD, as Morpho.liquidate rounds it."""
    return min(MAX_LIQUIDATION_INCENTIVE_FACTOR,
               mul_div_down(WAD, WAD, WAD - mul_div_down(LIQUIDATION_CURSOR, WAD - lltv, WAD)))


@dataclass(frozen=True)
class LiquidationOutcome:
    seized_assets: int
    repaid_shares: int
    repaid_assets: int
    bad_debt_assets: int
    bad_debt_shares: int
    market_after: MarketTotals


def liquidate(market: MarketTotals, borrow_shares: int, collateral: int, price: int, lltv: int,
              seized_assets: int = 0, repaid_shares: int = 0) -> LiquidationOutcome:
    """Morpho.liquidate on an accrued market: exactly one of ``seized_assets`` / ``repaid_shares``
    is given; bad debt is realised when the position's collateral reaches zero."""
    if (seized_assets == 0) == (repaid_shares == 0):
        raise ValueError("exactly one of seized_assets and repaid_shares must be non-zero")
    lif = liquidation_incentive_factor(lltv)
    tba, tbs = market.total_borrow_assets, market.total_borrow_shares
    if seized_assets:
        quoted = mul_div_up(seized_assets, price, ORACLE_PRICE_SCALE)
        repaid_shares = to_shares_up(mul_div_up(quoted, WAD, lif), tba, tbs)
    else:
        seized_assets = mul_div_down(mul_div_down(to_assets_down(repaid_shares, tba, tbs), lif, WAD),
                                     ORACLE_PRICE_SCALE, price)
    repaid_assets = to_assets_up(repaid_shares, tba, tbs)
    shares_left = borrow_shares - repaid_shares
    tbs_after, tba_after = tbs - repaid_shares, max(tba - repaid_assets, 0)
    tsa_after = market.total_supply_assets
    bad_assets = bad_shares = 0
    if collateral - seized_assets == 0:
        bad_shares = shares_left
        bad_assets = min(tba_after, to_assets_up(bad_shares, tba_after, tbs_after))
        tba_after, tsa_after, tbs_after = tba_after - bad_assets, tsa_after - bad_assets, tbs_after - bad_shares
    after = MarketTotals(tsa_after, market.total_supply_shares, tba_after, tbs_after, market.last_update, market.fee)
    return LiquidationOutcome(seized_assets, repaid_shares, repaid_assets, bad_assets, bad_shares, after)


def max_seizable(borrow_shares: int, collateral: int, market: MarketTotals, price: int, lltv: int) -> tuple[int, int]:
    """The largest liquidation of an unhealthy position: ``(seized_assets, repaid_shares)`` with one
    of them zero. Repaying every share seizes ``debt × LIF / price``; when that exceeds the
    collateral, all collateral is seized instead (and the rest of the debt becomes bad debt)."""
    lif = liquidation_incentive_factor(lltv)
    seized_for_all = mul_div_down(mul_div_down(to_assets_down(borrow_shares, market.total_borrow_assets,
                                                              market.total_borrow_shares), lif, WAD),
                                  ORACLE_PRICE_SCALE, price)
    if seized_for_all <= collateral:
        return 0, borrow_shares
    quoted = mul_div_up(collateral, price, ORACLE_PRICE_SCALE)
    if to_shares_up(mul_div_up(quoted, WAD, lif), market.total_borrow_assets, market.total_borrow_shares) > borrow_shares:
        return 0, borrow_shares     # rounding up would repay more shares than the position has
    return collateral, 0
