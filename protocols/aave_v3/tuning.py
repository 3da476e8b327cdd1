"""Aave V3 risk parameters as governance sets them: a reserve's liquidation threshold, LTV and
liquidation bonus, all three through ``PoolConfigurator.configureReserveAsCollateral(asset, ltv,
liquidationThreshold, liquidationBonus)`` (aave-v3-origin ``PoolConfigurator.sol``), in whole
basis points, which requires ``ltv <= liquidationThreshold``, ``liquidationBonus > 100%`` and
``liquidationThreshold × liquidationBonus <= 100%`` (percentMul).

Steps are those of Aave's risk-steward proposals: 50 bps for thresholds and bonuses. A threshold
cut moves the LTV down by the same amount (the borrowing buffer between them is kept, and the
configurator's ``ltv <= liquidationThreshold`` holds). E-mode categories keep their own parameters
(``setEModeCategory``) and are not re-tuned here. Supply and borrow caps (whole tokens, 0 = none,
``PoolConfigurator.setSupplyCap`` / ``setBorrowCap``) are listed only with the cap analysis on
(:mod:`analyzer.recommend.caps`: a cap liquidates nobody today, it bounds the book the stress hits).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.recommend.caps import CAP_COLUMN, apply_caps, cap_parameters
from protocols.base import ParameterChange, ParameterTuning, TunableParameter, changes_by_market_asset

PROTOCOL = "aave-v3"
STEP_BPS = 50                 # a risk steward's threshold / bonus step
MAX_THRESHOLD_CUT_BPS = 2500  # a search goes no further than 25 points below today's threshold
MAX_BONUS_CUT_BPS = 250       # ... and no more than 2.5 points below today's bonus,
MIN_BONUS_BPS = 200           # nor under 2%, below which keepers do not cover a DEX sale and gas
PERCENTAGE_FACTOR = 10_000


def new_config(ltv_bps: int, threshold_bps: int, bonus_bps: int, changes: Sequence[ParameterChange]
               ) -> tuple[int, int, int]:
    """(ltv, liquidationThreshold, liquidationBonus) in bps after ``changes`` of one reserve, with the
    bonus as the configurator stores it (10500 = 5%). Raises ContagionError where the configurator
    would revert."""
    for change in changes:
        bps = int(round(change.value * 1e4))
        if change.parameter == "liquidation_threshold":
            ltv_bps, threshold_bps = max(ltv_bps - (threshold_bps - bps), 0), bps
        elif change.parameter == "ltv":
            ltv_bps = bps
        elif change.parameter == "liquidation_bonus":
            bonus_bps = PERCENTAGE_FACTOR + bps
        else:
            raise ContagionError(f"aave-v3: {change.parameter} is not a parameter this tuning sets")
    ok = ltv_bps <= threshold_bps and (threshold_bps == 0 or (
        bonus_bps > PERCENTAGE_FACTOR and (threshold_bps * bonus_bps + 5_000) // PERCENTAGE_FACTOR <= PERCENTAGE_FACTOR))
    if not ok:
        raise ContagionError(f"aave-v3: ltv {ltv_bps}, threshold {threshold_bps}, bonus {bonus_bps} bps: "
                             "PoolConfigurator.configureReserveAsCollateral would revert (InvalidReserveParams)")
    return ltv_bps, threshold_bps, bonus_bps


def _bps(value: float) -> int:
    return int(round(float(value) * 1e4))


class AaveV3Tuning(ParameterTuning):
    protocol = PROTOCOL

    def parameters(self, snapshot: Snapshot) -> list[TunableParameter]:
        mk = snapshot.markets
        mk = mk[(mk["protocol"] == PROTOCOL) & mk["collateral_enabled"].astype(bool) & (mk["liquidation_threshold"] > 0)]
        pos = snapshot.positions
        held = set(zip(pos.loc[(pos["protocol"] == PROTOCOL) & (pos["side"] == "collateral"), "market"],
                       pos.loc[(pos["protocol"] == PROTOCOL) & (pos["side"] == "collateral"), "asset"], strict=True))
        out = []
        for r in mk.itertuples(index=False):
            if (r.market, r.asset) not in held:
                continue
            lt, bonus = float(r.liquidation_threshold), float(r.liquidation_bonus)
            out.append(TunableParameter(str(r.market), str(r.asset), "liquidation_threshold", lt, STEP_BPS / 1e4,
                                        max(lt - MAX_THRESHOLD_CUT_BPS / 1e4, STEP_BPS / 1e4), lt, margin=True))
            out.append(TunableParameter(str(r.market), str(r.asset), "liquidation_bonus", bonus, STEP_BPS / 1e4,
                                        min(bonus, max(bonus - MAX_BONUS_CUT_BPS / 1e4, MIN_BONUS_BPS / 1e4)), bonus))
        return out + cap_parameters(snapshot, PROTOCOL)

    def apply(self, snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
        snapshot = apply_caps(snapshot, PROTOCOL, changes)
        mine = [c for c in changes if c.protocol == PROTOCOL and c.parameter not in CAP_COLUMN]
        if not mine:
            return snapshot
        markets = snapshot.markets.copy()
        for (market, asset), group in changes_by_market_asset(mine).items():
            row = (markets["protocol"] == PROTOCOL) & (markets["market"] == market) & (markets["asset"] == asset)
            if not row.any():
                raise ContagionError(f"aave-v3: no reserve {asset} in market {market}")
            current = markets.loc[row].iloc[0]
            ltv, lt, bonus = new_config(_bps(current["ltv"]), _bps(current["liquidation_threshold"]),
                                        PERCENTAGE_FACTOR + _bps(current["liquidation_bonus"]), group)
            markets.loc[row, ["ltv", "liquidation_threshold", "liquidation_bonus"]] = \
                [ltv / 1e4, lt / 1e4, (bonus - PERCENTAGE_FACTOR) / 1e4]
        out = copy.copy(snapshot)         # the other tables are shared, not validated again
        out.meta, out.markets = dict(snapshot.meta), markets
        return out

    def configure(self, w3, deployment: dict[str, Any], changes: Sequence[ParameterChange]) -> None:
        """As a risk admin: the ACL admin (``PoolAddressesProvider.getACLAdmin``) impersonated,
        granted the risk-admin role when it holds neither it nor pool admin."""
        from analyzer.chain import require_anvil
        from analyzer.cheats import read, send_as

        require_anvil(w3)
        mine = [c for c in changes if c.protocol == PROTOCOL]
        if not mine:
            return
        pool = to_checksum_address(deployment["pool"])
        provider = read(w3, pool, "ADDRESSES_PROVIDER()(address)")
        configurator = read(w3, provider, "getPoolConfigurator()(address)")
        acl, admin = read(w3, provider, "getACLManager()(address)"), read(w3, provider, "getACLAdmin()(address)")
        if not read(w3, acl, "isRiskAdmin(address)(bool)", admin) and not read(w3, acl, "isPoolAdmin(address)(bool)", admin):
            send_as(w3, admin, acl, "addRiskAdmin(address)", admin, what="ACLManager.addRiskAdmin")
        for (market, asset), group in changes_by_market_asset(mine).items():
            if to_checksum_address(market) != pool:
                raise ContagionError(f"aave-v3: a change for market {market}, but the deployment's pool is {pool}")
            caps = [c for c in group if c.parameter in CAP_COLUMN]
            for cap in caps:
                setter = "setSupplyCap" if cap.parameter == "supply_cap" else "setBorrowCap"
                send_as(w3, admin, configurator, f"{setter}(address,uint256)", to_checksum_address(asset),
                        int(cap.value), what=f"PoolConfigurator.{setter}({asset})")
            group = [c for c in group if c.parameter not in CAP_COLUMN]
            if not group:
                continue
            data = int(read(w3, pool, "getConfiguration(address)(uint256)", to_checksum_address(asset)))
            ltv, lt, bonus = new_config(data & 0xFFFF, (data >> 16) & 0xFFFF, (data >> 32) & 0xFFFF, group)
            send_as(w3, admin, configurator, "configureReserveAsCollateral(address,uint256,uint256,uint256)",
                    to_checksum_address(asset), ltv, lt, bonus,
                    what=f"PoolConfigurator.configureReserveAsCollateral({asset})")
