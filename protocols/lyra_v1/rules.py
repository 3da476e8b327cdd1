"""Lyra V1 option rules, vectorised over the snapshot's ``options`` rows (numpy, float64).

Mirrors, with units in quote (USD) per base unless said otherwise:
- :func:`min_collateral`: ``OptionGreekCache.getMinCollateral`` (Black-Scholes at the shocked spot and the
  fixed shock vol of ``getShockVol``; not market IV);
- :func:`liquidatable`: ``OptionToken.canLiquidate`` (an ACTIVE short whose collateral < min collateral);
- the liquidation's buy-back and its penalty split (``getPriceForForceClose``, ``getTradeResult``,
  ``getLiquidationFees``): :mod:`protocols.lyra_v1.buyback`, re-exported here;
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
from protocols.lyra_v1.buyback import (  # noqa: F401  (the buy-back's pricing, part of the rules' interface)
    FEE_INPUTS,
    MIN_BASE_IV,
    BuybackState,
    board_iv_variance,
    buyback_price,
    buyback_total_cost,
    cost_in_collateral,
    liquidation_fees,
    shifted_base_iv,
    time_weighted_fee,
)
from protocols.lyra_v1.params import LyraParams

LONG_CALL, LONG_PUT, SHORT_CALL_BASE, SHORT_CALL_QUOTE, SHORT_PUT_QUOTE = range(5)


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
        asset_iv = dict(zip(snapshot.assets["address"], snapshot.assets["iv"], strict=True)) \
            if "iv" in snapshot.assets else {}
        for market, asset, text in zip(rows["market"], rows["asset"], rows["params"], strict=True):
            data = json.loads(text or "{}")
            data["lyra_params"] = LyraParams.from_json(data.get("params", {}))
            # the underlying's IV the engine starts from: its moves are the boards' IV moves
            iv = asset_iv.get(asset)
            data["snapshot_iv"] = float(iv) if iv is not None and np.isfinite(iv) else np.nan
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
                            now: int, carry: Any = None) -> OptionLiquidation:
        """The engine hook (:meth:`OptionMarginRules.option_liquidations`): shorts liquidated at per-row spot,
        in row order, each as ``OptionMarket.liquidatePosition`` prices it:

        - the buy-back price is ``getPriceForForceClose`` at the strike's own GWAV vol (board IV GWAV ×
          strike skew GWAV, as read: a cascade of minutes does not move a 12-hour GWAV, so an IV move does
          not reach it) times the liquidation vol shock;
        - the fees are ``getTradeResult``'s (:func:`buyback_total_cost`) with the board's base IV moved as the
          underlying's ``iv`` moved from the snapshot's (the replay sets it on chain, ``setBoardBaseIv``):
          it enters the variance fee through the vega and the IV variance against the board's GWAV;
        - each buy-back raises its strike's skew and the users' net vega for the next one, within the call
          and, through ``carry`` (a :class:`BuybackState` per market), in the next round;
        - a base-collateralised call pays the cost in base at Synthetix's exchange fee (:func:`cost_in_collateral`);
        - ``OptionToken.getLiquidationFees`` splits the collateral: value_usd = ``lpPremiums`` in USD (the
          buy-back the pool receives: the total cost, or less when the collateral does not cover it);
          collateral sold = lpPremiums plus the penalty, in collateral units."""
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
        states: dict[str, BuybackState] = dict(carry or {})
        for i in np.flatnonzero(hit):         # liquidations this round: a handful, in order
            row = strike_rows[i]
            if row is None or not set(row) >= FEE_INPUTS:
                continue          # a strike the reader did not describe: the premium alone
            market = self._market(markets[i])
            state = states.setdefault(markets[i], BuybackState({}, float(market.get("net_std_vega", 0.0))))
            nav = float((market.get("liquidity") or {}).get("nav", 0.0))
            moved = float(np.asarray(iv, dtype=float)[i]) - market.get("snapshot_iv", np.nan)
            strike = dict(row, base_iv=shifted_base_iv(row["base_iv"], moved if np.isfinite(moved) else 0.0))
            cost_quote[i] = buyback_total_cost(cost_quote[i], size[i], float(spot[i]), float(max(tte[i], 0)),
                                               strike, float(gwav[i] * vol_shock[i]), nav, state, p)
        base = kind == SHORT_CALL_BASE
        fees = liquidation_fees(cost_in_collateral(cost_quote, base, spot, p), options["collateral"].to_numpy(float),
                                np.where(base, p.min_liquidation_fee / spot, p.min_liquidation_fee),
                                np.where(base, spot, 1.0), p)
        sold = np.where(hit, fees["lp_premiums"] + fees["lp_fee"] + fees["liquidator_fee"] + fees["sm_fee"], 0.0)
        premiums_usd = fees["lp_premiums"] * np.where(base, spot, 1.0)
        return OptionLiquidation(hit, sold, np.where(hit, premiums_usd, 0.0), carry=states)

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
