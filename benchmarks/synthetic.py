"""Seeded synthetic snapshots for the engine benchmark and property tests: Aave-V3-shaped markets.

The rows are in the format the real Aave V3 reader writes (``markets.params`` with ``reserve_id``,
``liquidation_protocol_fee_bps``, ``emode_categories``, ``version``; ``accounts.params`` with
``collateral_off``), so :class:`protocols.aave_v3.rules.AaveV3Rules` builds its books from them and
the benchmark exercises the real rule. Asset 0 is a USD stablecoin, the numeraire every venue
quotes in (it has no venue); every other asset trades in one constant-product pool whose depth is a
multiple (``depth_multiple``) of the collateral held in it. Health factors are drawn from 1 + a
lognormal (median ``1 + hf_median_excess``), so shocks liquidate a realistic tail.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analyzer.model import Snapshot

PROTOCOL = "aave-v3"


def _address(kind: int, i: int) -> str:
    return "0x" + f"{kind:02x}" + f"{i:038x}"


def synthetic_snapshot(n_positions: int = 10_000, n_markets: int = 4, n_assets: int = 50, seed: int = 0, *,
                       depth_multiple: float = 2.0, hf_median_excess: float = 0.4, receipt: bool = False,
                       hedger_gamma: float = 0.0, bonus: float | None = None) -> Snapshot:
    """A snapshot of ``n_markets`` Aave-like markets over ``n_assets`` assets with about
    ``n_positions`` position rows (three per account: two collaterals, one debt).

    ``receipt``: add a receipt token of asset 1 in market 0, held as collateral by some accounts of
    the other markets. ``hedger_gamma``: add an option pool on asset 1 with this net gamma (base
    units per USD; negative = short gamma). ``bonus``: one liquidation bonus for every asset (default:
    drawn per asset in 4-10%).
    """
    rng = np.random.default_rng(seed)
    n_assets = max(n_assets, 2)
    price = np.concatenate([[1.0], np.exp(rng.uniform(np.log(0.5), np.log(50_000.0), n_assets - 1))])
    addresses = [_address(1, i) for i in range(n_assets)]
    symbols = ["USDC"] + [f"TKN{i}" for i in range(1, n_assets)]
    assets = pd.DataFrame({"address": addresses, "symbol": symbols, "decimals": 18, "price_usd": price,
                           "receipt_of": "", "iv": np.where(np.arange(n_assets) == 1, 0.6, np.nan)})
    if receipt:
        assets.loc[len(assets)] = {"address": _address(2, 1), "symbol": "aTKN1", "decimals": 18,
                                   "price_usd": price[1], "receipt_of": f"{PROTOCOL}:{addresses[1]}", "iv": np.nan}
    n_cols = len(assets)
    markets_t, market_names = [], [_address(3, k) for k in range(n_markets)]
    lt = np.round(rng.uniform(0.65, 0.86, n_cols), 4)
    lt[0] = 0.87
    bonus = np.round(rng.uniform(0.04, 0.10, n_cols), 4) if bonus is None else np.full(n_cols, float(bonus))
    for market in market_names:
        for j in range(n_cols):
            markets_t.append({
                "protocol": PROTOCOL, "market": market, "asset": assets["address"][j],
                "oracle_price_usd": assets["price_usd"][j], "ltv": lt[j] - 0.05, "liquidation_threshold": lt[j],
                "liquidation_bonus": bonus[j], "close_factor": 0.5, "protocol_fee": 0.1, "category": 0,
                "isolated": False, "borrowable": True, "collateral_enabled": True,
                "params": json.dumps({"reserve_id": j, "liquidation_protocol_fee_bps": 1000, "emode_categories": {},
                                      "version": "3.0"}, sort_keys=True)})
    n_accounts = max(n_positions // 3, 1)
    market_of = rng.integers(0, n_markets, n_accounts)
    coll_a = rng.integers(1, n_assets, n_accounts)
    coll_b = rng.integers(0, n_assets, n_accounts)
    coll_b = np.where(coll_b == coll_a, 0, coll_b)
    if receipt:
        use_receipt = (market_of != 0) & (rng.random(n_accounts) < 0.2)
        coll_b = np.where(use_receipt, n_cols - 1, coll_b)
    debt_asset = np.where(rng.random(n_accounts) < 0.8, 0, rng.integers(1, n_assets, n_accounts))
    debt_asset = np.where((debt_asset == coll_a) | (debt_asset == coll_b), 0, debt_asset)
    value_a = np.exp(rng.normal(np.log(20_000.0), 1.5, n_accounts))
    value_b = value_a * rng.uniform(0.0, 1.0, n_accounts)
    cprice = assets["price_usd"].to_numpy()
    hf = 1.0 + np.exp(rng.normal(np.log(hf_median_excess), 0.8, n_accounts))
    debt_value = (value_a * lt[coll_a] + value_b * lt[coll_b]) / hf
    accounts = np.array([_address(4, i) for i in range(n_accounts)], dtype=object)
    asset_col = assets["address"].to_numpy(object)
    rows = {"protocol": PROTOCOL,
            "market": np.tile(np.array(market_names, dtype=object)[market_of], 3),
            "account": np.tile(accounts, 3),
            "asset": np.concatenate([asset_col[coll_a], asset_col[coll_b], asset_col[debt_asset]]),
            "side": np.repeat(np.array(["collateral", "collateral", "debt"], dtype=object), n_accounts),
            "amount": np.concatenate([value_a / cprice[coll_a], value_b / cprice[coll_b],
                                      debt_value / cprice[debt_asset]])}
    positions = pd.DataFrame(rows)
    positions["raw"] = "0"
    accounts_t = pd.DataFrame({"protocol": PROTOCOL, "market": np.array(market_names, dtype=object)[market_of],
                               "account": accounts, "category": 0, "params": json.dumps({"collateral_off": []})})
    held = np.zeros(n_cols)
    np.add.at(held, coll_a, value_a / cprice[coll_a])
    np.add.at(held, coll_b, value_b / cprice[coll_b])
    venues = [{"protocol": "synthetic", "venue": _address(5, j), "asset": addresses[j], "quote_asset": addresses[0],
               "model": "constant_product",
               "params": json.dumps({"reserve_asset": depth_multiple * max(held[j], 1.0),
                                     "reserve_quote": depth_multiple * max(held[j], 1.0) * price[j], "fee": 0.003})}
              for j in range(1, n_assets)]
    hedgers = []
    if hedger_gamma:
        hedgers = [{"protocol": "synthetic-options", "market": _address(6, 0), "asset": addresses[1], "net_delta": 0.0,
                    "net_gamma": hedger_gamma, "net_vega": 0.0, "hedge_position": 0.0}]
    return Snapshot(meta={"chain_id": 31337, "block_number": 1, "block_timestamp": 1_700_000_000,
                          "synthetic": {"seed": seed, "n_positions": n_positions, "n_markets": n_markets,
                                        "n_assets": n_assets}},
                    assets=assets, markets=markets_t, accounts=accounts_t, positions=positions, venues=venues,
                    hedgers=hedgers)
