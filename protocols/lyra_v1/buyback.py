"""Lyra V1 liquidation buy-backs, as ``OptionMarket.liquidatePosition`` prices and splits them (floats, quote
per base unless said otherwise):

- :func:`buyback_price`: ``OptionGreekCache.getPriceForForceClose`` for a liquidation (GWAV vol ×
  ``liquidateVolShock``, or ``liquidatePostCutoffVolShock`` after the trading cut-off; floored at parity +
  ``liquidateSpotMin`` × spot), at each strike's own GWAV vol;
- :func:`buyback_total_cost`: ``OptionMarketPricer.getTradeResult`` on that price: the premium plus the
  option-price, spot-price, vega-utilisation and variance fees (the liquidation's ``totalCost``), with the
  trade's skew and vega carried to the next one (:class:`BuybackState`);
- :func:`shifted_base_iv`, :func:`board_iv_variance`: a board's IV after an IV move
  (``OptionMarket.setBoardBaseIv``) and the IV variance the variance fee prices;
- :func:`cost_in_collateral`: the total cost in base for a base-collateralised call (Synthetix's exchange fee);
- :func:`liquidation_fees`: ``OptionToken.getLiquidationFees`` (penalty split: LPs, liquidator, security module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.lyra_v1 import blackscholes as bs
from protocols.lyra_v1.params import OPTION_TYPES, LyraParams

SHORT_PUT_QUOTE = OPTION_TYPES["short_put_quote"]


def buyback_price(option_type: np.ndarray, strike: np.ndarray, tte_sec: np.ndarray, spot: np.ndarray,
                  gwav_vol: np.ndarray, p: LyraParams = LyraParams()) -> np.ndarray:
    """``getPriceForForceClose`` for a liquidation: quote per contract the AMM charges to buy a short back."""
    tte = np.maximum(np.asarray(tte_sec, dtype=np.float64), 0.0)
    post_cutoff = tte < p.trading_cutoff
    vol = np.asarray(gwav_vol, dtype=np.float64) * np.where(post_cutoff, p.liquidate_post_cutoff_vol_shock,
                                                            p.liquidate_vol_shock)
    spot = np.asarray(spot, dtype=np.float64)
    call, put = bs.option_prices(tte, vol, spot, strike, p.rate_and_carry)
    is_put = np.asarray(option_type) == SHORT_PUT_QUOTE
    parity = np.where(is_put, np.maximum(strike - spot, 0.0), np.maximum(spot - strike, 0.0))
    return np.maximum(np.where(is_put, put, call), parity + spot * p.liquidate_spot_min)


def time_weighted_fee(tte_sec: np.ndarray, point_a: float, point_b: float, coefficient: float) -> np.ndarray:
    """``OptionMarketPricer.getTimeWeightedFee``: the coefficient up to point A, rising linearly to 2× at B."""
    t = np.asarray(tte_sec, dtype=np.float64)
    return np.where(t <= point_a, coefficient, coefficient * (1.0 + (t - point_a) / (point_b - point_a)))


FEE_INPUTS = frozenset({"strike_id", "skew", "base_iv", "strike", "cached_std_vega"})
"""The reader's strike fields :func:`buyback_total_cost` needs."""

MIN_BASE_IV = 0.01
"""The lowest board base IV an IV move sets (a fall of the underlying's IV below a board's own)."""


def shifted_base_iv(base_iv: float, vol_points: float) -> float:
    """A board's base IV after an IV move of ``vol_points`` (``OptionMarket.setBoardBaseIv``)."""
    return max(float(base_iv) + float(vol_points), MIN_BASE_IV)


def board_iv_variance(strike: dict[str, Any], base_iv: float) -> float:
    """``OptionGreekCache._updateBoardIvVariance`` as a trade (a liquidation too) runs it before pricing:
    |GWAV(board IV, varianceIvGWAVPeriod) − base IV|; the cached value when the GWAV was not read."""
    if "variance_iv_gwav" not in strike:
        return float(strike.get("board_iv_variance", 0.0))
    return abs(float(strike["variance_iv_gwav"]) - base_iv)


@dataclass
class BuybackState:
    """What one liquidation's trade changes for the next (``OptionMarket._doTrade``): each strike's
    skew (``ivImpactForTrade``: a buy moves it up by ``amount / standardSize / 100 × skewAdjustmentFactor``)
    and the users' global net standard vega (``_updateStrikeExposureAndGetPrice``)."""

    skew: dict[int, float]
    users_net_std_vega: float


def buyback_total_cost(premium: float, amount: float, spot: float, tte_sec: float, strike: dict[str, Any],
                       force_close_vol: float, nav: float, state: BuybackState, p: LyraParams) -> float:
    """``OptionMarketPricer.getTradeResult`` for a liquidation (the AMM sells the option back: a buy):
    ``premium`` + option-price fee + spot-price fee + vega-utilisation fee + variance fee, in quote.
    Updates ``state`` with the trade's skew and vega. ``strike``: the reader's strike row, its
    ``base_iv`` the board's IV now (after any IV move)."""
    sid = int(strike["strike_id"])
    skew = state.skew.get(sid, float(strike["skew"])) + amount / p.standard_size / 100.0 * p.skew_adjustment_factor
    state.skew[sid] = skew
    option_fee = float(time_weighted_fee(tte_sec, p.option_price_fee_1x_point, p.option_price_fee_2x_point,
                                         p.option_price_fee_coefficient)) * premium
    spot_fee = float(time_weighted_fee(tte_sec, p.spot_price_fee_1x_point, p.spot_price_fee_2x_point,
                                       p.spot_price_fee_coefficient)) * spot * amount
    pre = state.users_net_std_vega
    state.users_net_std_vega += amount * float(strike["cached_std_vega"])
    vega_fee = 0.0
    if abs(state.users_net_std_vega) > abs(pre) and nav > 0:      # the trade adds to the AMM's vega
        vega_fee = p.vega_fee_coefficient * force_close_vol * abs(state.users_net_std_vega) / nav * amount
    variance_fee = 0.0
    if p.force_close_variance_fee_coefficient:
        vega = float(bs.vega(tte_sec, float(strike["base_iv"]) * skew, spot, float(strike["strike"]),
                             p.rate_and_carry))
        variance_fee = (p.force_close_variance_fee_coefficient
                        * (p.variance_minimum_static_vega + vega * p.variance_vega_coefficient)
                        * (p.variance_minimum_static_skew_adjustment
                           + abs(skew - p.variance_reference_skew) * p.variance_skew_adjustment_coefficient)
                        * (p.variance_minimum_static_iv_variance
                           + board_iv_variance(strike, float(strike["base_iv"])) * p.variance_iv_variance_coefficient)
                        * amount)
    return premium + option_fee + spot_fee + vega_fee + variance_fee


def cost_in_collateral(cost_quote: np.ndarray, base_collateral: np.ndarray, spot: np.ndarray,
                       p: LyraParams) -> np.ndarray:
    """A buy-back's total cost in the short's collateral (``OptionToken.liquidate``): quote as is; for a
    base-collateralised call the base that buys that much quote on Synthetix
    (``SynthetixAdapter.estimateExchangeToExactQuote``: cost / (1 − baseQuoteFeeRate) / spot)."""
    return np.where(base_collateral, np.asarray(cost_quote) / (1.0 - p.base_quote_fee_rate) / spot, cost_quote)


def liquidation_fees(cost: np.ndarray, collateral: np.ndarray, min_fee: np.ndarray,
                     insolvency_multiplier: np.ndarray, p: LyraParams = LyraParams()) -> dict[str, np.ndarray]:
    """``OptionToken.getLiquidationFees``, in the collateral's units (base for base-collateralised calls, where
    ``cost`` and ``min_fee`` are converted to base and ``insolvency_multiplier`` is the spot).

    Returns ``return_collateral`` (to the owner), ``lp_premiums`` (the buy-back, to the pool), ``lp_fee``,
    ``liquidator_fee``, ``sm_fee`` (security module) and ``insolvent_amount`` (quote the pool absorbs)."""
    cost, collateral = np.asarray(cost, dtype=np.float64), np.asarray(collateral, dtype=np.float64)
    min_fee = np.asarray(min_fee, dtype=np.float64)
    solvent = collateral >= cost + min_fee
    penalty_solvent = np.maximum((collateral - cost) * p.penalty_ratio, min_fee)
    return_collateral = np.where(solvent, collateral - cost - penalty_solvent, 0.0)
    covers_fee = collateral >= min_fee
    penalty = np.where(solvent, penalty_solvent, np.where(covers_fee, min_fee, collateral))
    insolvent = np.where(solvent, 0.0, np.where(covers_fee, cost + min_fee - collateral, cost)
                         * np.asarray(insolvency_multiplier, dtype=np.float64))
    sm_fee = penalty * p.sm_fee_ratio
    liquidator_fee = penalty * p.liquidator_fee_ratio
    return {"return_collateral": return_collateral, "lp_premiums": collateral - penalty - return_collateral,
            "lp_fee": penalty - (sm_fee + liquidator_fee), "liquidator_fee": liquidator_fee, "sm_fee": sm_fee,
            "insolvent_amount": insolvent}
