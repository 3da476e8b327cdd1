"""``Pool.getUserAccountData`` in the contract's own integer math, from a snapshot's raw integers.

Mirrors ``GenericLogic.calculateUserAccountData`` of each release (see :mod:`.profiles`):

- collateral in base currency: ``balance × price / 10^decimals`` floored, per reserve;
- debt in base currency: the same, floored up to 3.4, ``MathUtils.mulDivCeil`` from 3.5;
- 3.0-3.4: ``avgLT = Σ value·LT / Σ value`` (integer division), HF =
  ``wadDiv(percentMul(totalCollateral, avgLT), totalDebt)``; 3.5+: HF = ``wadDiv(Σ value·LT,
  totalDebt) / 100_00``. ``percentMul`` and ``wadDiv`` round half up (``PercentageMath``,
  ``WadRayMath``); HF is ``type(uint256).max`` without debt.

Per account in Python integers: a check of the reader and of the float rule to the last unit (not
the engine's hot path).
"""

from __future__ import annotations

import json

from protocols.aave_v3.emodes import in_bitmap
from protocols.aave_v3.profiles import profile
from protocols.aave_v3.reader import decode_configuration

WAD = 10**18
MAX_UINT = 2**256 - 1


def _percent_mul(value: int, bps: int) -> int:
    return (value * bps + 5_000) // 10_000


def _wad_div(a: int, b: int) -> int:
    return (a * WAD + b // 2) // b


def user_account_data(snapshot, market: str) -> dict[str, tuple[int, int, int]]:
    """account -> (totalCollateralBase, totalDebtBase, healthFactor wad) for every account of ``market``."""
    mk = snapshot.markets[(snapshot.markets["protocol"] == "aave-v3") & (snapshot.markets["market"] == market)]
    reserves = {}
    categories: dict = {}
    version = None
    for asset, raw_params in zip(mk["asset"], mk["params"], strict=True):
        p = json.loads(raw_params)
        config = decode_configuration(int(p["configuration"]))
        reserves[asset] = (int(p["price_raw"]), 10 ** int(p["decimals"]), config["liquidation_threshold"],
                           int(p["reserve_id"]), config["emode_category"])
        categories, version = p["emode_categories"], p["version"]
    rule = profile(version, f"aave-v3 market {market}")
    accounts = snapshot.accounts[(snapshot.accounts["protocol"] == "aave-v3") & (snapshot.accounts["market"] == market)]
    positions = snapshot.positions[(snapshot.positions["protocol"] == "aave-v3") & (snapshot.positions["market"] == market)]
    held: dict[str, list] = {}
    for account, asset, side, raw in zip(positions["account"], positions["asset"], positions["side"],
                                         positions["raw"], strict=True):
        held.setdefault(account, []).append((asset, side, int(raw)))
    out = {}
    for account, category, raw_params in zip(accounts["account"], accounts["category"], accounts["params"], strict=True):
        off = set(json.loads(raw_params).get("collateral_off", []))
        e = categories.get(str(int(category))) if category else None
        coll_total = debt_total = weighted = 0
        for asset, side, raw in held.get(account, []):
            price, unit, reserve_lt, reserve_id, reserve_category = reserves[asset]
            if side == "debt":
                debt_total += -(-raw * price // unit) if rule.debt_rounds_up else raw * price // unit
                continue
            if asset in off or (rule.collateral_needs_reserve_threshold and reserve_lt == 0):
                continue
            value = raw * price // unit
            member = e is not None and (in_bitmap(e["collateral_bitmap"], reserve_id) if "collateral_bitmap" in e
                                        else reserve_category == int(category))
            coll_total += value
            weighted += value * (e["liquidation_threshold"] if member and e is not None else reserve_lt)
        if debt_total == 0:
            hf = MAX_UINT
        elif rule.floor_average_threshold:
            average = weighted // coll_total if coll_total else 0
            hf = _wad_div(_percent_mul(coll_total, average), debt_total)
        else:
            hf = _wad_div(weighted, debt_total) // 10_000
        out[account] = (coll_total, debt_total, hf)
    return out
