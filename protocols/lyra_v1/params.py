"""Lyra V1 parameters: ``dist/test/utils/defaultParams.js`` of ``@lyrafinance/protocol`` 0.1.3-alpha, field by
field, as the integers the contracts take (18-decimal fixed point, seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

UNIT = 10**18
DAY, WEEK, HOUR = 86_400, 604_800, 3_600
MONTH = 30 * DAY
MAX_UINT = 2**256 - 1
SECURITY_MODULE = "0xEfeefEEfeeFEEfeefeEfEEfEeFEefeefEEfeeFeE"  # defaultParams.DEFAULT_SECURITY_MODULE
# OptionMarket.OptionType
OPTION_TYPES = {"long_call": 0, "long_put": 1, "short_call_base": 2, "short_call_quote": 3, "short_put_quote": 4}


def wad(value: float | str) -> int:
    """A decimal as an 18-decimal integer (``toBN`` of the package's scripts)."""
    return int(Decimal(str(value)) * UNIT)


# defaultParams.js (0.1.3-alpha), field by field
OPTION_MARKET_PARAMS = {"maxBoardExpiry": 12 * MONTH, "securityModule": SECURITY_MODULE,
                        "feePortionReserved": wad("0.1"), "staticBaseSettlementFee": wad("0.0075")}
LIQUIDITY_POOL_PARAMS = {
    "minDepositWithdraw": wad(1), "depositDelay": WEEK, "withdrawalDelay": WEEK, "withdrawalFee": wad("0.01"),
    "liquidityCBThreshold": wad("0.01"), "liquidityCBTimeout": 3 * DAY, "ivVarianceCBThreshold": wad("0.1"),
    "skewVarianceCBThreshold": wad("0.35"), "ivVarianceCBTimeout": 12 * HOUR, "skewVarianceCBTimeout": 12 * HOUR,
    "guardianMultisig": "0x" + "00" * 20, "guardianDelay": 2 * WEEK, "boardSettlementCBTimeout": 6 * HOUR,
    "maxFeePaid": wad("0.01")}
POOL_HEDGER_PARAMS = {"interactionDelay": 24 * HOUR, "hedgeCap": MAX_UINT}
SHORT_BUFFER = wad(2)
GREEK_CACHE_PARAMS = {
    "maxStrikesPerBoard": 30, "acceptableSpotPricePercentMove": wad("0.05"), "staleUpdateDuration": 3 * HOUR,
    "varianceIvGWAVPeriod": DAY, "varianceSkewGWAVPeriod": 3 * DAY, "optionValueIvGWAVPeriod": DAY,
    "optionValueSkewGWAVPeriod": 3 * DAY, "gwavSkewFloor": wad("0.5"), "gwavSkewCap": wad(2),
    "rateAndCarry": wad("0.05")}
MIN_COLLATERAL_PARAMS = {
    "minStaticQuoteCollateral": wad(200), "minStaticBaseCollateral": wad("0.2"), "shockVolA": wad("2.5"),
    "shockVolPointA": 2 * WEEK, "shockVolB": wad("1.8"), "shockVolPointB": 8 * WEEK,
    "callSpotPriceShock": wad("1.2"), "putSpotPriceShock": wad("0.8")}
FORCE_CLOSE_PARAMS = {
    "ivGWAVPeriod": 12 * HOUR, "skewGWAVPeriod": 24 * HOUR, "shortVolShock": wad("1.2"),
    "shortPostCutoffVolShock": wad("1.4"), "longVolShock": wad("0.8"), "longPostCutoffVolShock": wad("0.5"),
    "liquidateVolShock": wad("1.3"), "liquidatePostCutoffVolShock": wad("1.6"), "shortSpotMin": wad("0.01"),
    "liquidateSpotMin": wad("0.02")}
PRICING_PARAMS = {
    "optionPriceFeeCoefficient": wad("0.01"), "optionPriceFee1xPoint": 6 * WEEK, "optionPriceFee2xPoint": 16 * WEEK,
    "spotPriceFeeCoefficient": wad("0.01"), "spotPriceFee1xPoint": 6 * WEEK, "spotPriceFee2xPoint": 12 * WEEK,
    "vegaFeeCoefficient": wad(100), "standardSize": wad(5), "skewAdjustmentFactor": wad("0.75")}
TRADE_LIMIT_PARAMS = {
    "minDelta": wad("0.15"), "minForceCloseDelta": wad("0.25"), "tradingCutoff": DAY // 2,
    "minBaseIV": wad("0.35"), "maxBaseIV": wad(2), "minSkew": wad("0.5"), "maxSkew": wad("1.5"),
    "minVol": wad("0.55"), "maxVol": wad(3), "absMinSkew": wad("0.15"), "absMaxSkew": wad(5), "capSkewsToAbs": False}
VARIANCE_FEE_PARAMS = {
    "defaultVarianceFeeCoefficient": wad("0.25"), "forceCloseVarianceFeeCoefficient": wad("0.25"),
    "skewAdjustmentCoefficient": wad(3), "referenceSkew": wad(1), "minimumStaticSkewAdjustment": wad(1),
    "vegaCoefficient": wad("0.01"), "minimumStaticVega": 0, "ivVarianceCoefficient": wad("1.5"),
    "minimumStaticIvVariance": wad(1)}
PARTIAL_COLLATERAL_PARAMS = {"penaltyRatio": wad("0.2"), "liquidatorFeeRatio": wad("0.4"),
                             "smFeeRatio": wad("0.3"), "minLiquidationFee": wad(15)}
FEE_RATE_FOR_BASE, FEE_RATE_FOR_QUOTE = wad("0.0075"), wad("0.005")


def _f(value: int) -> float:
    return value / UNIT


@dataclass(frozen=True)
class LyraParams:
    """The market parameters the rules use, as floats (fractions, seconds, quote)."""

    min_static_quote: float = _f(MIN_COLLATERAL_PARAMS["minStaticQuoteCollateral"])
    min_static_base: float = _f(MIN_COLLATERAL_PARAMS["minStaticBaseCollateral"])
    shock_vol_a: float = _f(MIN_COLLATERAL_PARAMS["shockVolA"])
    shock_vol_point_a: float = float(MIN_COLLATERAL_PARAMS["shockVolPointA"])
    shock_vol_b: float = _f(MIN_COLLATERAL_PARAMS["shockVolB"])
    shock_vol_point_b: float = float(MIN_COLLATERAL_PARAMS["shockVolPointB"])
    call_spot_shock: float = _f(MIN_COLLATERAL_PARAMS["callSpotPriceShock"])
    put_spot_shock: float = _f(MIN_COLLATERAL_PARAMS["putSpotPriceShock"])
    rate_and_carry: float = _f(GREEK_CACHE_PARAMS["rateAndCarry"])
    liquidate_vol_shock: float = _f(FORCE_CLOSE_PARAMS["liquidateVolShock"])
    liquidate_post_cutoff_vol_shock: float = _f(FORCE_CLOSE_PARAMS["liquidatePostCutoffVolShock"])
    liquidate_spot_min: float = _f(FORCE_CLOSE_PARAMS["liquidateSpotMin"])
    trading_cutoff: float = float(TRADE_LIMIT_PARAMS["tradingCutoff"])
    penalty_ratio: float = _f(PARTIAL_COLLATERAL_PARAMS["penaltyRatio"])
    liquidator_fee_ratio: float = _f(PARTIAL_COLLATERAL_PARAMS["liquidatorFeeRatio"])
    sm_fee_ratio: float = _f(PARTIAL_COLLATERAL_PARAMS["smFeeRatio"])
    min_liquidation_fee: float = _f(PARTIAL_COLLATERAL_PARAMS["minLiquidationFee"])
    standard_size: float = _f(PRICING_PARAMS["standardSize"])
    skew_adjustment_factor: float = _f(PRICING_PARAMS["skewAdjustmentFactor"])
    hedge_cap: float = float("inf")
    option_price_fee_coefficient: float = _f(PRICING_PARAMS["optionPriceFeeCoefficient"])
    option_price_fee_1x_point: float = float(PRICING_PARAMS["optionPriceFee1xPoint"])
    option_price_fee_2x_point: float = float(PRICING_PARAMS["optionPriceFee2xPoint"])
    spot_price_fee_coefficient: float = _f(PRICING_PARAMS["spotPriceFeeCoefficient"])
    spot_price_fee_1x_point: float = float(PRICING_PARAMS["spotPriceFee1xPoint"])
    spot_price_fee_2x_point: float = float(PRICING_PARAMS["spotPriceFee2xPoint"])
    vega_fee_coefficient: float = _f(PRICING_PARAMS["vegaFeeCoefficient"])
    force_close_variance_fee_coefficient: float = _f(VARIANCE_FEE_PARAMS["forceCloseVarianceFeeCoefficient"])
    variance_skew_adjustment_coefficient: float = _f(VARIANCE_FEE_PARAMS["skewAdjustmentCoefficient"])
    variance_reference_skew: float = _f(VARIANCE_FEE_PARAMS["referenceSkew"])
    variance_minimum_static_skew_adjustment: float = _f(VARIANCE_FEE_PARAMS["minimumStaticSkewAdjustment"])
    variance_vega_coefficient: float = _f(VARIANCE_FEE_PARAMS["vegaCoefficient"])
    variance_minimum_static_vega: float = _f(VARIANCE_FEE_PARAMS["minimumStaticVega"])
    variance_iv_variance_coefficient: float = _f(VARIANCE_FEE_PARAMS["ivVarianceCoefficient"])
    variance_minimum_static_iv_variance: float = _f(VARIANCE_FEE_PARAMS["minimumStaticIvVariance"])
    base_quote_fee_rate: float = _f(FEE_RATE_FOR_BASE)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LyraParams:
        known = {k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
