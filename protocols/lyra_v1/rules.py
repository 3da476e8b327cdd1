"""Lyra V1 option rules, vectorised over the snapshot's ``options`` rows (numpy, float64).

Mirrors, with units in quote (USD) per base unless said otherwise:
- :func:`min_collateral`: ``OptionGreekCache.getMinCollateral`` (Black-Scholes at the shocked spot and the
  fixed shock vol of ``getShockVol``; not market IV);
- :func:`liquidatable`: ``OptionToken.canLiquidate`` (an ACTIVE short whose collateral < min collateral);
- :func:`buyback_price`: ``OptionGreekCache.getPriceForForceClose`` for a liquidation (GWAV vol ×
  ``liquidateVolShock``, or ``liquidatePostCutoffVolShock`` after the trading cut-off; floored at parity +
  ``liquidateSpotMin`` × spot), at each strike's own GWAV vol;
- :func:`buyback_total_cost`: ``OptionMarketPricer.getTradeResult`` on that price: the premium plus the
  option-price, spot-price, vega-utilisation and variance fees (the liquidation's ``totalCost``);
- :func:`liquidation_fees`: ``OptionToken.getLiquidationFees`` (penalty split: LPs, liquidator, security module);
- :func:`gamma_by_strike`, :func:`rehedge_flow`: the pool's greeks from ``protocols.lyra_v1.blackscholes``
  (gamma is not cached on chain); the hedger targets ``getGlobalNetDelta() - lpLockedBase``
  (``ShortPoolHedger.getCappedExpectedHedge``);
- :func:`lp_token_price`: ``LiquidityPool.getTokenPrice`` after a spot or vol move (the LP token is collateral
  elsewhere: IV reaches it through the value of the users' net options);
- :class:`VolSpiral`: how base IV and skew move (see its docstring).

Sign convention (Lyra's): exposure = users' long − users' short contracts; ``net delta`` = Σ exposure × delta
is the delta the pool has sold and hedges by holding; the pool's own option delta and gamma are the negatives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from protocols.base import LendingBook, OptionLiquidation, OptionMarginRules
from protocols.lyra_v1 import blackscholes as bs
from protocols.lyra_v1 import params as P

LONG_CALL, LONG_PUT, SHORT_CALL_BASE, SHORT_CALL_QUOTE, SHORT_PUT_QUOTE = range(5)


def _f(value: int) -> float:
    return value / P.UNIT


@dataclass(frozen=True)
class LyraParams:
    """The market parameters the rules use, as floats (fractions, seconds, quote)."""

    min_static_quote: float = _f(P.MIN_COLLATERAL_PARAMS["minStaticQuoteCollateral"])
    min_static_base: float = _f(P.MIN_COLLATERAL_PARAMS["minStaticBaseCollateral"])
    shock_vol_a: float = _f(P.MIN_COLLATERAL_PARAMS["shockVolA"])
    shock_vol_point_a: float = float(P.MIN_COLLATERAL_PARAMS["shockVolPointA"])
    shock_vol_b: float = _f(P.MIN_COLLATERAL_PARAMS["shockVolB"])
    shock_vol_point_b: float = float(P.MIN_COLLATERAL_PARAMS["shockVolPointB"])
    call_spot_shock: float = _f(P.MIN_COLLATERAL_PARAMS["callSpotPriceShock"])
    put_spot_shock: float = _f(P.MIN_COLLATERAL_PARAMS["putSpotPriceShock"])
    rate_and_carry: float = _f(P.GREEK_CACHE_PARAMS["rateAndCarry"])
    liquidate_vol_shock: float = _f(P.FORCE_CLOSE_PARAMS["liquidateVolShock"])
    liquidate_post_cutoff_vol_shock: float = _f(P.FORCE_CLOSE_PARAMS["liquidatePostCutoffVolShock"])
    liquidate_spot_min: float = _f(P.FORCE_CLOSE_PARAMS["liquidateSpotMin"])
    trading_cutoff: float = float(P.TRADE_LIMIT_PARAMS["tradingCutoff"])
    penalty_ratio: float = _f(P.PARTIAL_COLLATERAL_PARAMS["penaltyRatio"])
    liquidator_fee_ratio: float = _f(P.PARTIAL_COLLATERAL_PARAMS["liquidatorFeeRatio"])
    sm_fee_ratio: float = _f(P.PARTIAL_COLLATERAL_PARAMS["smFeeRatio"])
    min_liquidation_fee: float = _f(P.PARTIAL_COLLATERAL_PARAMS["minLiquidationFee"])
    standard_size: float = _f(P.PRICING_PARAMS["standardSize"])
    skew_adjustment_factor: float = _f(P.PRICING_PARAMS["skewAdjustmentFactor"])
    hedge_cap: float = float("inf")
    option_price_fee_coefficient: float = _f(P.PRICING_PARAMS["optionPriceFeeCoefficient"])
    option_price_fee_1x_point: float = float(P.PRICING_PARAMS["optionPriceFee1xPoint"])
    option_price_fee_2x_point: float = float(P.PRICING_PARAMS["optionPriceFee2xPoint"])
    spot_price_fee_coefficient: float = _f(P.PRICING_PARAMS["spotPriceFeeCoefficient"])
    spot_price_fee_1x_point: float = float(P.PRICING_PARAMS["spotPriceFee1xPoint"])
    spot_price_fee_2x_point: float = float(P.PRICING_PARAMS["spotPriceFee2xPoint"])
    vega_fee_coefficient: float = _f(P.PRICING_PARAMS["vegaFeeCoefficient"])
    force_close_variance_fee_coefficient: float = _f(P.VARIANCE_FEE_PARAMS["forceCloseVarianceFeeCoefficient"])
    variance_skew_adjustment_coefficient: float = _f(P.VARIANCE_FEE_PARAMS["skewAdjustmentCoefficient"])
    variance_reference_skew: float = _f(P.VARIANCE_FEE_PARAMS["referenceSkew"])
    variance_minimum_static_skew_adjustment: float = _f(P.VARIANCE_FEE_PARAMS["minimumStaticSkewAdjustment"])
    variance_vega_coefficient: float = _f(P.VARIANCE_FEE_PARAMS["vegaCoefficient"])
    variance_minimum_static_vega: float = _f(P.VARIANCE_FEE_PARAMS["minimumStaticVega"])
    variance_iv_variance_coefficient: float = _f(P.VARIANCE_FEE_PARAMS["ivVarianceCoefficient"])
    variance_minimum_static_iv_variance: float = _f(P.VARIANCE_FEE_PARAMS["minimumStaticIvVariance"])

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LyraParams:
        known = {k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def shock_vol(tte_sec: np.ndarray, p: LyraParams) -> np.ndarray:
    """``OptionGreekCache.getShockVol``: A up to point A, B from point B, linear in between."""
    t = np.asarray(tte_sec, dtype=np.float64)
    between = p.shock_vol_a - (p.shock_vol_a - p.shock_vol_b) * (t - p.shock_vol_point_a) / (
        p.shock_vol_point_b - p.shock_vol_point_a)
    return np.where(t <= p.shock_vol_point_a, p.shock_vol_a, np.where(t >= p.shock_vol_point_b, p.shock_vol_b, between))


def min_collateral(option_type: np.ndarray, strike: np.ndarray, tte_sec: np.ndarray, spot: np.ndarray,
                   amount: np.ndarray, p: LyraParams = LyraParams()) -> np.ndarray:
    """``OptionGreekCache.getMinCollateral``: minimum collateral of a short, in its collateral's units
    (base for SHORT_CALL_BASE, quote otherwise); 0 for a zero amount; inf for longs (never liquidatable
    by this rule is handled in :func:`liquidatable`)."""
    option_type = np.asarray(option_type)
    amount = np.asarray(amount, dtype=np.float64)
    strike = np.asarray(strike, dtype=np.float64)
    tte = np.maximum(np.asarray(tte_sec, dtype=np.float64), 0.0)
    is_put = option_type == SHORT_PUT_QUOTE
    shock_price = np.asarray(spot, dtype=np.float64) * np.where(is_put, p.put_spot_shock, p.call_spot_shock)
    call, put = bs.option_prices(tte, shock_vol(tte, p), shock_price, strike, p.rate_and_carry)
    base_call = option_type == SHORT_CALL_BASE
    vol_collat = np.where(base_call, call * amount / shock_price, np.where(is_put, put, call) * amount)
    static = np.where(base_call, p.min_static_base, p.min_static_quote)
    full = np.where(base_call, amount, np.where(is_put, amount * strike, np.inf))
    out = np.minimum(np.maximum(vol_collat, static), full)
    return np.where(amount == 0, 0.0, out)


def liquidatable(option_type: np.ndarray, strike: np.ndarray, tte_sec: np.ndarray, spot: np.ndarray,
                 amount: np.ndarray, collateral: np.ndarray, p: LyraParams = LyraParams()) -> np.ndarray:
    """``OptionToken.canLiquidate``: a short whose collateral is below :func:`min_collateral` (and not expired:
    ``liquidatePosition`` reverts on an expired board)."""
    is_short = np.asarray(option_type) >= SHORT_CALL_BASE
    live = np.asarray(tte_sec) > 0
    need = min_collateral(option_type, strike, tte_sec, spot, amount, p)
    return is_short & live & (np.asarray(collateral, dtype=np.float64) < need)


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
    Updates ``state`` with the trade's skew and vega. ``strike``: the reader's strike row."""
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
                           + float(strike.get("board_iv_variance", 0.0)) * p.variance_iv_variance_coefficient)
                        * amount)
    return premium + option_fee + spot_fee + vega_fee + variance_fee


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


def gamma_by_strike(strike: np.ndarray, tte_sec: np.ndarray, vol: np.ndarray, exposure: np.ndarray, spot: float,
                    p: LyraParams = LyraParams()) -> np.ndarray:
    """Per strike, users' net gamma Σ exposure × Γ (base per quote); the pool's is the negative, so a
    positive value is a short-gamma cluster of the pool. ``exposure`` = callExposure + putExposure (call and
    put gamma are equal), ``vol`` = base IV × skew."""
    return np.asarray(exposure, dtype=np.float64) * bs.gamma(tte_sec, vol, spot, strike, p.rate_and_carry)


def position_greeks(option_type: np.ndarray, strike: np.ndarray, tte_sec: np.ndarray, vol: np.ndarray,
                    spot: np.ndarray | float, size: np.ndarray, p: LyraParams = LyraParams()) -> dict[str, np.ndarray]:
    """Per position, the holder's Black-Scholes ``delta`` (base units), ``gamma`` (base per quote) and ``vega``
    (quote per 1.00 of vol), signed: positive for longs, negative for shorts; ``vol`` per row (base IV × skew,
    or the cache's GWAV vol to match the pool's books)."""
    option_type = np.asarray(option_type)
    sign = np.where(option_type <= LONG_PUT, 1.0, -1.0) * np.asarray(size, dtype=np.float64)
    is_call = np.isin(option_type, (LONG_CALL, SHORT_CALL_BASE, SHORT_CALL_QUOTE))
    call_delta, put_delta = bs.delta(tte_sec, vol, spot, strike, p.rate_and_carry)
    return {"delta": sign * np.where(is_call, call_delta, put_delta),
            "gamma": sign * bs.gamma(tte_sec, vol, spot, strike, p.rate_and_carry),
            "vega": sign * bs.vega(tte_sec, vol, spot, strike, p.rate_and_carry)}


def net_delta(strike, tte_sec, vol, call_exposure, put_exposure, spot, p: LyraParams = LyraParams()) -> float:
    """``OptionGreekCache`` net delta Σ (callExposure × callDelta + putExposure × putDelta), base units."""
    call_delta, put_delta = bs.delta(tte_sec, vol, spot, strike, p.rate_and_carry)
    return float(np.sum(np.asarray(call_exposure) * call_delta + np.asarray(put_exposure) * put_delta))


def rehedge_flow(strike, tte_sec, vol, call_exposure, put_exposure, spot: float, spot_change: float,
                 iv_change: float = 0.0, p: LyraParams = LyraParams()) -> float:
    """Base units the hedger buys (> 0) or sells (< 0) to move its hedge from the net delta at (spot, vol) to
    the net delta at (spot + spot_change, vol + iv_change): full revaluation, not a Taylor step. With users
    net long gamma (the pool short gamma) a fall gives a sale. Capped at ``hedge_cap`` in absolute size."""
    before = net_delta(strike, tte_sec, vol, call_exposure, put_exposure, spot, p)
    after = net_delta(strike, tte_sec, np.maximum(np.asarray(vol) + iv_change, 1e-4), call_exposure,
                      put_exposure, spot + spot_change, p)
    return float(np.clip(after - before, -p.hedge_cap, p.hedge_cap))


def option_value(strike, tte_sec, vol, call_exposure, put_exposure, spot: float,
                 p: LyraParams = LyraParams()) -> float:
    """``OptionGreekCache.getGlobalOptionValue``: Σ callExposure × call + putExposure × put (quote), the value
    of the users' net options, a debt of the pool."""
    call, put = bs.option_prices(tte_sec, vol, spot, strike, p.rate_and_carry)
    return float(np.sum(np.asarray(call_exposure) * call + np.asarray(put_exposure) * put))


def lp_token_price(pool: dict[str, float], strike, tte_sec, vol, call_exposure, put_exposure, spot: float,
                   p: LyraParams = LyraParams()) -> float:
    """``LiquidityPool.getTokenPrice`` (quote per LP token) at ``spot`` and ``vol`` with the hedge as it stands:
    NAV = quote + base × spot + hedger value (long base × spot + short collateral − short × spot, floored at 0,
    ``ShortPoolHedger.getHedgingLiquidity``) − outstanding settlements − queued deposits − :func:`option_value`,
    over the token supply (``getTotalTokenSupply``). On chain the option value uses the greek cache's vol,
    GWAV(base IV, 1 day) × GWAV(skew, 3 days): an IV shock reaches the LP token price as the GWAV catches up."""
    hedger = pool["hedger_long"] * spot + max(pool["hedger_short_collateral"] - pool["hedger_short"] * spot, 0.0)
    nav = (pool["quote_balance"] + pool["base_balance"] * spot + hedger - pool["outstanding_settlements"]
           - pool["queued_deposits"] - option_value(strike, tte_sec, vol, call_exposure, put_exposure, spot, p))
    return nav / pool["token_supply"] if pool["token_supply"] > 0 else 1.0


@dataclass(frozen=True)
class VolSpiral:
    """How Lyra's vols respond to a spot move and to option flow (the documented vol-spiral rule).

    - spot: every board's base IV moves by ``-spot_vol_beta × ln(S1/S0)`` (vol points per unit log-return:
      with 0.5, a -20% move adds 0.11), a market assumption, not a contract rule; the keepers that set
      ``setBoardBaseIv`` are modelled this way.
    - voluntary trades (``OptionMarketPricer.ivImpactForTrade``): base IV moves by ``amount / standardSize / 100``
      and the strike's skew by that × ``skewAdjustmentFactor``, up for buys, down for sells;
    - forced buy-backs (liquidations, force closes): ``updateCacheAndGetTradeResult`` keeps the base IV and moves
      the skew only, up by the same ``amount / standardSize / 100 × skewAdjustmentFactor``; the next
      liquidation's GWAV vol follows it as the GWAV catches up.
    """

    spot_vol_beta: float = 0.5
    min_base_iv: float = 0.01

    def step(self, base_iv: np.ndarray, skew: np.ndarray, spot_before: float, spot_after: float,
             voluntary_buys: np.ndarray, forced_buys: np.ndarray, p: LyraParams = LyraParams()
             ) -> tuple[np.ndarray, np.ndarray]:
        """New (base_iv, skew) per strike row; ``voluntary_buys`` net contracts users bought (negative: sold),
        ``forced_buys`` contracts bought back by liquidations, both per strike row."""
        move = np.asarray(voluntary_buys, dtype=np.float64) / p.standard_size / 100.0
        forced = np.asarray(forced_buys, dtype=np.float64) / p.standard_size / 100.0
        new_base = np.asarray(base_iv) - self.spot_vol_beta * np.log(spot_after / spot_before) + move
        new_skew = np.asarray(skew) + (move + forced) * p.skew_adjustment_factor
        return np.maximum(new_base, self.min_base_iv), new_skew


@dataclass
class LyraOptionRules(OptionMarginRules):
    """The option rules over a snapshot: the engine's option-margin capability (:class:`OptionMarginRules`).

    Build with ``LyraOptionRules.from_snapshot(snapshot)`` (or call ``books(snapshot)``, which loads the Lyra
    markets and returns no lending books, so code that walks every plugin's lending rules passes over it).
    Per market, ``markets[market]`` is the reader's ``markets.params`` JSON: ``spot``, ``strikes`` (id, board,
    expiry, base_iv, skew, exposures, ``nav_vol`` = the cached greeks' GWAV vol, ``gwav_vol`` = the
    liquidation GWAV vol, ``net_gamma``), ``pool`` (balances for :func:`lp_token_price`), ``params``
    (:class:`LyraParams` as ``lyra_params``).

    - ``option_type(options)``: OptionMarket.OptionType per row;
    - ``liquidatable_rows(options, spot_usd, now)``: ``canLiquidate`` per row;
    - ``option_liquidations(options, spot_usd, iv, now)``: liquidated, collateral sold, buy-back USD per row.
    """

    protocol = "lyra-v1"
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_snapshot(cls, snapshot: Any) -> LyraOptionRules:
        rules = cls()
        rules.load(snapshot)
        return rules

    def load(self, snapshot: Any) -> None:
        rows = snapshot.markets[snapshot.markets["protocol"] == self.protocol]
        for market, text in zip(rows["market"], rows["params"], strict=True):
            data = json.loads(text or "{}")
            data["lyra_params"] = LyraParams.from_json(data.get("params", {}))
            self.markets[str(market)] = data

    def option_type(self, options: pd.DataFrame) -> np.ndarray:
        """OptionMarket.OptionType per row, from kind, side and collateral asset."""
        base = np.array([self._market(m).get("base_asset", "") for m in options["market"]], dtype=object)
        is_call = (options["kind"] == "call").to_numpy(bool)
        is_long = (options["side"] == "long").to_numpy(bool)
        base_collat = options["collateral_asset"].to_numpy(object) == base
        short_call = np.where(base_collat, SHORT_CALL_BASE, SHORT_CALL_QUOTE)
        return np.where(is_long, np.where(is_call, LONG_CALL, LONG_PUT), np.where(is_call, short_call, SHORT_PUT_QUOTE))

    def _market(self, market: str) -> dict[str, Any]:
        if market not in self.markets:
            raise ContagionError(f"lyra-v1 rules: option market {market} is not loaded "
                                 "(build the rules with LyraOptionRules.from_snapshot(snapshot))")
        return self.markets[market]

    def _params(self, options: pd.DataFrame) -> LyraParams:
        found = {self._market(m)["lyra_params"] for m in set(options["market"])}
        if len(found) > 1:
            raise ContagionError("lyra-v1 rules: call option_liquidations one market at a time")
        return found.pop() if found else LyraParams()

    def liquidatable_rows(self, options: pd.DataFrame, spot_usd: np.ndarray | float, now: int) -> np.ndarray:
        """``(r,)`` bool: ``OptionToken.canLiquidate`` of each row at ``spot_usd`` and time ``now``."""
        p = self._params(options)
        return liquidatable(self.option_type(options), options["strike"].to_numpy(float),
                            options["expiry"].to_numpy(np.int64) - now, np.broadcast_to(spot_usd, len(options)),
                            options["size"].to_numpy(float), options["collateral"].to_numpy(float), p)

    def option_liquidations(self, options: pd.DataFrame, spot_usd: np.ndarray, iv: np.ndarray,
                            now: int) -> OptionLiquidation:
        """The engine hook (:meth:`OptionMarginRules.option_liquidations`): shorts liquidated at per-row spot;
        the buy-back is ``liquidatePosition``'s total cost: ``getPriceForForceClose`` at the strike's own
        GWAV vol (board IV GWAV × strike skew GWAV, as read: a cascade of minutes does not move a 12-hour
        GWAV, so the engine's ``iv`` does not enter) times the liquidation vol shock, plus the AMM's fees
        (:func:`buyback_total_cost`), liquidations applied in row order. Collateral sold = the buy-back
        plus the penalty, in collateral units; value_usd = the buy-back in USD (``lpPremiums``)."""
        p = self._params(options)
        kind = self.option_type(options)
        spot = np.asarray(spot_usd, dtype=np.float64)
        tte = options["expiry"].to_numpy(np.int64) - now
        hit = self.liquidatable_rows(options, spot, now)
        size = options["size"].to_numpy(float)
        strike_rows = [self._strike(m, e, k) for m, e, k in zip(options["market"], options["expiry"],
                                                                   options["strike"], strict=True)]
        gwav = np.array([r.get("gwav_vol", np.nan) if r is not None else np.nan for r in strike_rows], dtype=float)
        gwav = np.where(np.isfinite(gwav), gwav, np.asarray(iv, dtype=float))
        price = buyback_price(kind, options["strike"].to_numpy(float), tte, spot, gwav, p)
        post_cutoff = np.maximum(tte, 0) < p.trading_cutoff
        vol_shock = np.where(post_cutoff, p.liquidate_post_cutoff_vol_shock, p.liquidate_vol_shock)
        cost_quote = price * size
        markets = list(options["market"])
        states: dict[str, BuybackState] = {}
        for i in np.flatnonzero(hit):         # liquidations this round: a handful, in order
            if strike_rows[i] is None or not set(strike_rows[i]) >= FEE_INPUTS:
                continue          # a strike the reader did not describe: the premium alone
            market = self._market(markets[i])
            state = states.setdefault(markets[i], BuybackState({}, float(market.get("net_std_vega", 0.0))))
            nav = float((market.get("liquidity") or {}).get("nav", 0.0))
            cost_quote[i] = buyback_total_cost(cost_quote[i], size[i], float(spot[i]), float(max(tte[i], 0)),
                                               strike_rows[i], float(gwav[i] * vol_shock[i]), nav, state, p)
        base = kind == SHORT_CALL_BASE
        cost = np.where(base, cost_quote / spot, cost_quote)
        fees = liquidation_fees(cost, options["collateral"].to_numpy(float),
                                np.where(base, p.min_liquidation_fee / spot, p.min_liquidation_fee),
                                np.where(base, spot, 1.0), p)
        sold = np.where(hit, fees["lp_premiums"] + fees["lp_fee"] + fees["liquidator_fee"] + fees["sm_fee"], 0.0)
        return OptionLiquidation(hit, sold, np.where(hit, cost_quote, 0.0))

    def _strike(self, market: str, expiry: int, strike: float) -> dict[str, Any] | None:
        """The reader's strike row of ``market`` with this expiry and strike price (None when not read)."""
        for row in self._market(market).get("strikes", []):
            if int(row["expiry"]) == int(expiry) and abs(float(row["strike"]) - float(strike)) <= 1e-9 * max(strike, 1):
                return row
        return None

    # ---- Lyra has no lending books (the other lending methods are the empty book's) ----
    def books(self, snapshot: Any) -> list[LendingBook]:
        self.load(snapshot)
        return []
