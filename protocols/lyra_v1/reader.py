"""Reads Lyra V1 markets at one block through Multicall3.

Per market (address book entry ``markets[i]``, the shape of ``OptionMarketViewer.addMarket``): spot
(``SynthetixAdapter.getSpotPriceForMarket``), live boards (``OptionMarket.getLiveBoards``,
``getBoardStrikes``, ``getStrikeAndBoard``: expiry, base IV, strikes with skew and open interest), the
greek cache (``OptionGreekCache.getGlobalCache``, ``getStrikeCache``, ``getIvGWAV`` / ``getSkewGWAV`` over the
force-close GWAV periods), parameters (``getMinCollatParams``, ``getForceCloseParams``, ``getGreekCacheParams``,
``OptionToken.getPartialCollatParams``, ``OptionMarketPricer.getPricingParams``), the pool
(``LiquidityPool.getLiquidity(spot)``, ``getTokenPrice``, ``lockedCollateral``) and the hedger
(``ShortPoolHedger.getCurrentHedgedNetDelta``, ``getPoolHedgerParams``). Positions come from
``OptionToken.getOwnerPositions(owner)``, owners from the OptionToken's ERC-721 ``Transfer`` events.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from eth_utils import keccak, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.multicall import Call
from protocols.base import Reader, Rows
from protocols.lyra_v1 import rules as R

WAD = 10**18
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
POSITION = "(uint256,uint256,uint8,uint256,uint256,uint8)"
STRIKE = "(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint256)"
BOARD = "(uint256,uint256,uint256,bool,uint256[])"
GREEKS = "(int256,int256,uint256,uint256,uint256)"
KIND_SIDE = {0: ("call", "long"), 1: ("put", "long"), 2: ("call", "short"), 3: ("call", "short"), 4: ("put", "short")}
ACTIVE = 1  # OptionToken.PositionState
MIN_COLLAT_FIELDS = ("min_static_quote", "min_static_base", "shock_vol_a", "shock_vol_point_a", "shock_vol_b",
                     "shock_vol_point_b", "call_spot_shock", "put_spot_shock")
SECONDS_FIELDS = {"shock_vol_point_a", "shock_vol_point_b"}


def _wad(value: int) -> float:
    return int(value) / WAD


def _lyra_params(params_raw, fc, gcp, pcp, pricing, hedger_params, variance, exchange) -> dict[str, Any]:
    """A market's risk and fee parameters (the ``params`` of :meth:`LyraReader.market_state`) from the
    answers of getMinCollatParams, getForceCloseParams, getGreekCacheParams, getPartialCollatParams,
    getPricingParams, getPoolHedgerParams, getVarianceFeeParams and getExchangeParams."""
    min_collat = {name: (int(v) if name in SECONDS_FIELDS else _wad(v))
                  for name, v in zip(MIN_COLLAT_FIELDS, params_raw, strict=True)}
    lyra_params = {**min_collat, "rate_and_carry": _wad(gcp[9]), "liquidate_vol_shock": _wad(fc[6]),
                   "liquidate_post_cutoff_vol_shock": _wad(fc[7]), "liquidate_spot_min": _wad(fc[9]),
                   "penalty_ratio": _wad(pcp[0]), "liquidator_fee_ratio": _wad(pcp[1]),
                   "sm_fee_ratio": _wad(pcp[2]), "min_liquidation_fee": _wad(pcp[3]),
                   "standard_size": _wad(pricing[7]), "skew_adjustment_factor": _wad(pricing[8]),
                   "hedge_cap": _wad(hedger_params[1]),
                   # OptionMarketPricer.getTradeResult's fees on a liquidation's buy-back
                   "option_price_fee_coefficient": _wad(pricing[0]), "option_price_fee_1x_point": int(pricing[1]),
                   "option_price_fee_2x_point": int(pricing[2]), "spot_price_fee_coefficient": _wad(pricing[3]),
                   "spot_price_fee_1x_point": int(pricing[4]), "spot_price_fee_2x_point": int(pricing[5]),
                   "vega_fee_coefficient": _wad(pricing[6]),
                   "force_close_variance_fee_coefficient": _wad(variance[1]),
                   "variance_skew_adjustment_coefficient": _wad(variance[2]),
                   "variance_reference_skew": _wad(variance[3]),
                   "variance_minimum_static_skew_adjustment": _wad(variance[4]),
                   "variance_vega_coefficient": _wad(variance[5]), "variance_minimum_static_vega": _wad(variance[6]),
                   "variance_iv_variance_coefficient": _wad(variance[7]),
                   "variance_minimum_static_iv_variance": _wad(variance[8]),
                   # SynthetixAdapter.estimateExchangeToExactQuote: a base-collateralised buy-back in base
                   "base_quote_fee_rate": _wad(exchange[4])}
    return lyra_params


def _strike_rows(flat, strikes, caches, skew_gwav, nav_skew_gwav, boards_at) -> list[dict[str, Any]]:
    """One row per strike id of ``flat`` (getStrikeAndBoard, getStrikeCache and the skew GWAVs of each),
    with its board's figures from ``boards_at`` (board id -> IV GWAVs, cache time, IV variance)."""
    strike_rows = []
    for sid, (strike, board), cache_row, skew_g, nav_skew_g in zip(flat, strikes, caches, skew_gwav, nav_skew_gwav,
                                                                    strict=True):
        greeks, at = cache_row[4], boards_at[board[0]]
        strike_rows.append({
            "strike_id": sid, "board_id": board[0], "expiry": board[1], "base_iv": _wad(board[2]),
            "frozen": board[3], "strike": _wad(strike[1]), "skew": _wad(strike[2]),
            "long_call": _wad(strike[3]), "short_call_base": _wad(strike[4]), "short_call_quote": _wad(strike[5]),
            "long_put": _wad(strike[6]), "short_put": _wad(strike[7]),
            "call_exposure": _wad(cache_row[5]), "put_exposure": _wad(cache_row[6]),
            "cached_call_delta": _wad(greeks[0]), "cached_put_delta": _wad(greeks[1]),
            "cached_std_vega": _wad(greeks[2]), "gwav_vol": _wad(at["iv_gwav"] * skew_g // WAD),
            "nav_vol": _wad(at["nav_iv_gwav"] * nav_skew_g // WAD),
            "cache_updated_at": at["updated_at"],
            "board_iv_variance": at["iv_variance"], "variance_iv_gwav": _wad(at["variance_iv_gwav"])})
    return strike_rows


class LyraReader(Reader):
    protocol = "lyra-v1"
    book_keys = ("synthetixAdapter", "markets")

    def _read(self, calls: Sequence[Call], what: str) -> list[Any]:
        results = self.ctx.multicall(list(calls))
        return [r.unwrap(f"lyra-v1 {what} ({c.signature.split('(')[0]} on {c.target})") for c, r in
                zip(calls, results, strict=True)]

    # ---- markets ----
    def market_state(self, m: dict[str, Any]) -> dict[str, Any]:
        """Everything about one market at the block, as plain numbers (the ``markets.params`` JSON)."""
        adapter = self.deployment["synthetixAdapter"]
        spot_raw, boards, cache, params_raw = self._read([
            Call(adapter, "getSpotPriceForMarket(address)(uint256)", (m["optionMarket"],)),
            Call(m["optionMarket"], "getLiveBoards()(uint256[])"),
            Call(m["greekCache"], "getGlobalCache()(uint256,uint256,uint256,uint256,uint256,(int256,int256,int256))"),
            Call(m["greekCache"], "getMinCollatParams()((uint256,uint256,uint256,uint256,uint256,uint256,uint256,"
                                  "uint256))")], "market")
        (fc, gcp, pcp, pricing, hedged, hedger_params, liquidity, token_price, locked, lp_supply) = self._read([
            Call(m["greekCache"], "getForceCloseParams()((uint256,uint256,uint256,uint256,uint256,uint256,uint256,"
                                  "uint256,uint256,uint256))"),
            Call(m["greekCache"], "getGreekCacheParams()((uint256,uint256,uint256,uint256,uint256,uint256,uint256,"
                                  "uint256,uint256,int256))"),
            Call(m["optionToken"], "getPartialCollatParams()((uint256,uint256,uint256,uint256))"),
            Call(m["optionMarketPricer"], "getPricingParams()((uint256,uint256,uint256,uint256,uint256,uint256,"
                                          "uint256,uint256,uint256))"),
            Call(m["poolHedger"], "getCurrentHedgedNetDelta()(int256)"),
            Call(m["poolHedger"], "getPoolHedgerParams()((uint256,uint256))"),
            Call(m["liquidityPool"], "getLiquidity(uint256)((uint256,uint256,uint256,uint256,uint256,uint256))",
                 (spot_raw,)),
            Call(m["liquidityPool"], "getTokenPrice()(uint256)"),
            Call(m["liquidityPool"], "lockedCollateral()(uint256,uint256)"),
            Call(m["liquidityToken"], "totalSupply()(uint256)")], "market")
        (variance, exchange) = self._read([
            Call(m["optionMarketPricer"], "getVarianceFeeParams()((uint256,uint256,uint256,uint256,uint256,uint256,"
                                          "uint256,uint256,uint256))"),
            Call(adapter, "getExchangeParams(address)((uint256,bytes32,bytes32,uint256,uint256))",
                 (m["optionMarket"],))], "market")
        pool_value = self._read([
            Call(m["quoteAsset"], "balanceOf(address)(uint256)", (m["liquidityPool"],)),
            Call(m["baseAsset"], "balanceOf(address)(uint256)", (m["liquidityPool"],)),
            Call(m["baseAsset"], "balanceOf(address)(uint256)", (m["poolHedger"],)),
            Call(m["poolHedger"], "getShortPosition()(uint256,uint256)"),
            Call(m["liquidityPool"], "totalOutstandingSettlements()(uint256)"),
            Call(m["liquidityPool"], "totalQueuedDeposits()(uint256)"),
            Call(m["liquidityPool"], "getTotalTokenSupply()(uint256)")], "pool value")
        strike_ids = self._read([Call(m["optionMarket"], "getBoardStrikes(uint256)(uint256[])", (b,)) for b in boards],
                                "boards")
        flat = [s for ids in strike_ids for s in ids]
        strikes = self._read([Call(m["optionMarket"], f"getStrikeAndBoard(uint256)({STRIKE},{BOARD})", (s,))
                              for s in flat], "strikes")
        caches = self._read([Call(m["greekCache"], f"getStrikeCache(uint256)((uint256,uint256,uint256,uint256,"
                                                   f"{GREEKS},int256,int256,uint256))", (s,)) for s in flat], "strikes")
        # two GWAV windows: force closes / liquidations (getForceCloseParams) and the cached greeks and NAV
        # (getGreekCacheParams.optionValue*GWAVPeriod, used by _updateBoardCachedGreeks)
        gwav = self._read([Call(m["greekCache"], "getIvGWAV(uint256,uint256)(uint256)", (b, period))
                           for period in (fc[0], gcp[5]) for b in boards]
                          + [Call(m["greekCache"], "getSkewGWAV(uint256,uint256)(uint256)", (s, period))
                             for period in (fc[1], gcp[6]) for s in flat], "gwav")
        board_caches = self._read([Call(m["greekCache"], "getOptionBoardCache(uint256)((uint256,uint256[],uint256,"
                                                         "uint256,(int256,int256,int256),uint256,uint256,uint256,"
                                                         "uint256))", (b,)) for b in boards], "board caches")
        cache_updated_at = {b: int(c[5]) for b, c in zip(boards, board_caches, strict=True)}
        iv_variance = {b: _wad(c[8]) for b, c in zip(boards, board_caches, strict=True)}
        # the board IV's GWAV the variance fee measures the IV against (_updateBoardIvVariance): an IV move
        # set now leaves it behind, so ivVariance = |this - new base IV|
        variance_gwav = dict(zip(boards, self._read([Call(m["greekCache"], "getIvGWAV(uint256,uint256)(uint256)",
                                                          (b, gcp[3])) for b in boards], "variance gwav"), strict=True))
        nb, ns = len(boards), len(flat)
        iv_gwav = dict(zip(boards, gwav[:nb], strict=True))
        nav_iv_gwav = dict(zip(boards, gwav[nb:2 * nb], strict=True))
        skew_gwav, nav_skew_gwav = gwav[2 * nb:2 * nb + ns], gwav[2 * nb + ns:]
        lyra_params = _lyra_params(params_raw, fc, gcp, pcp, pricing, hedger_params, variance, exchange)
        boards_at = {b: {"iv_gwav": iv_gwav[b], "nav_iv_gwav": nav_iv_gwav[b], "updated_at": cache_updated_at[b],
                         "iv_variance": iv_variance[b], "variance_iv_gwav": variance_gwav[b]} for b in boards}
        strike_rows = _strike_rows(flat, strikes, caches, skew_gwav, nav_skew_gwav, boards_at)
        names = ("free", "burnable", "used_collat", "pending_delta", "used_delta", "nav")
        return {
            "spot": _wad(spot_raw), "spot_raw": str(spot_raw), "base_asset": to_checksum_address(m["baseAsset"]),
            "quote_asset": to_checksum_address(m["quoteAsset"]), "liquidity_token": m["liquidityToken"],
            "net_delta": _wad(cache[5][0]), "net_delta_raw": str(cache[5][0]), "net_std_vega": _wad(cache[5][1]),
            "net_option_value": _wad(cache[5][2]), "cache_min_updated_at": cache[0],
            "hedged_net_delta": _wad(hedged), "lp_locked_quote": _wad(locked[0]), "lp_locked_base": _wad(locked[1]),
            "liquidity": {n: _wad(v) for n, v in zip(names, liquidity, strict=True)},
            "lp_token_price": _wad(token_price), "lp_token_supply": _wad(lp_supply),
            "pool": {"quote_balance": _wad(pool_value[0]), "base_balance": _wad(pool_value[1]),
                     "hedger_long": _wad(pool_value[2]), "hedger_short": _wad(pool_value[3][0]),
                     "hedger_short_collateral": _wad(pool_value[3][1]),
                     "outstanding_settlements": _wad(pool_value[4]), "queued_deposits": _wad(pool_value[5]),
                     "token_supply": _wad(pool_value[6])},
            "params": lyra_params, "strikes": strike_rows, "boards": [int(b) for b in boards]}

    def read_markets(self) -> Rows:
        rows: dict[str, list[dict]] = {"assets": [], "markets": [], "hedgers": []}
        now = self.ctx.w3.eth.get_block(self.ctx.block)["timestamp"]
        underlying = self.deployment.get("underlying_token")
        for m in self.deployment["markets"]:
            state = self.market_state(m)
            strikes = state["strikes"]
            vol = np.array([s["nav_vol"] for s in strikes])  # the vol of the cached greeks
            tte = np.array([s["expiry"] - now for s in strikes], dtype=np.float64)
            exposure = np.array([s["call_exposure"] + s["put_exposure"] for s in strikes])
            p = R.LyraParams.from_json(state["params"])
            gamma = R.gamma_by_strike(np.array([s["strike"] for s in strikes]), tte, vol, exposure, state["spot"], p)
            vega = exposure * R.bs.vega(tte, vol, state["spot"], np.array([s["strike"] for s in strikes]),
                                        p.rate_and_carry)
            for s, g in zip(strikes, gamma, strict=True):
                s["net_gamma"] = float(g)
            atm = min(strikes, key=lambda s: (s["expiry"], abs(s["strike"] - state["spot"]))) if strikes else None
            market_asset = to_checksum_address(underlying) if underlying else state["base_asset"]
            atm_iv = atm["base_iv"] * atm["skew"] if atm else np.nan
            if underlying:
                # the token the lending protocols hold, whose feed drives this market's spot; a lending
                # reader's row for it (scanned first) wins the merge
                (decimals,) = self._read([Call(market_asset, "decimals()(uint8)")], "underlying")
                rows["assets"].append({"address": market_asset, "symbol": self.deployment.get("underlying", ""),
                                       "decimals": int(decimals), "price_usd": state["spot"], "iv": atm_iv})
            rows["assets"] += [
                {"address": state["quote_asset"], "symbol": "sUSD", "decimals": 18, "price_usd": 1.0},
                {"address": state["base_asset"], "symbol": self.deployment.get("market_key", "sBASE"), "decimals": 18,
                 "price_usd": state["spot"], "iv": atm_iv},
                {"address": to_checksum_address(state["liquidity_token"]), "symbol": "LyraELPT", "decimals": 18,
                 "price_usd": state["lp_token_price"], "receipt_of": f"lyra-v1:{state['quote_asset']}"}]
            rows["markets"].append({
                "protocol": self.protocol, "market": to_checksum_address(m["optionMarket"]), "asset": market_asset,
                "oracle_price_usd": state["spot"], "liquidation_bonus": state["params"]["penalty_ratio"],
                "protocol_fee": state["params"]["sm_fee_ratio"], "collateral_enabled": False,
                "params": json.dumps(state, sort_keys=True)})
            rows["hedgers"].append({
                "protocol": self.protocol, "market": to_checksum_address(m["optionMarket"]), "asset": market_asset,
                # the engine's convention: the pool's own delta and gamma (negatives of the users' net exposure)
                "net_delta": -state["net_delta"], "net_gamma": -float(gamma.sum()),
                "net_vega": -float(vega.sum()), "hedge_position": state["hedged_net_delta"]})
        return rows

    # ---- accounts ----
    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        owners: set[str] = set()
        for m in self.deployment["markets"]:
            for log in self.ctx.get_logs(m["optionToken"], [TRANSFER_TOPIC], from_block, to_block):
                topic = log["topics"][2]
                raw = topic.hex() if hasattr(topic, "hex") else str(topic)
                owners.add(to_checksum_address("0x" + raw.removeprefix("0x")[-40:]))
        owners.discard("0x" + "00" * 20)
        owners.discard(to_checksum_address("0x" + "00" * 20))
        return sorted(owners)

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        rows: dict[str, list[dict]] = {"options": []}
        for m in self.deployment["markets"]:
            answers = self._read([Call(m["optionToken"], f"getOwnerPositions(address)({POSITION}[])", (a,))
                                  for a in accounts], "positions")
            held = [(a, pos) for a, positions in zip(accounts, answers, strict=True) for pos in positions
                    if pos[5] == ACTIVE]
            strike_ids = sorted({pos[1] for _, pos in held})
            strikes = self._read([Call(m["optionMarket"], f"getStrikeAndBoard(uint256)({STRIKE},{BOARD})", (s,))
                                  for s in strike_ids], "strikes")
            strike_of = dict(zip(strike_ids, strikes, strict=True))
            base, quote = to_checksum_address(m["baseAsset"]), to_checksum_address(m["quoteAsset"])
            for account, (pid, sid, kind, amount, collateral, _state) in held:
                if kind not in KIND_SIDE:
                    raise ContagionError(f"lyra-v1 position {pid}: unknown option type {kind}")
                name, side = KIND_SIDE[kind]
                strike, board = strike_of[sid]
                rows["options"].append({
                    "protocol": self.protocol, "market": to_checksum_address(m["optionMarket"]),
                    "account": to_checksum_address(account), "position_id": int(pid), "kind": name,
                    "strike": _wad(strike[1]), "expiry": int(board[1]), "size": _wad(amount), "side": side,
                    "collateral_asset": base if kind == R.SHORT_CALL_BASE else (quote if side == "short" else ""),
                    "collateral": _wad(collateral), "raw_size": str(amount), "raw_collateral": str(collateral)})
        return rows
