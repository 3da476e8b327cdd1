"""Compound V2 risk parameters as governance sets them: a market's collateral factor, through
``Comptroller._setCollateralFactor(cToken, newCollateralFactorMantissa)`` (admin only; refused with
an error code, not a revert, above 0.9e18 or without an oracle price). In Compound's own profile
the collateral factor is also the liquidation threshold (liquidity = Σ collateral × factor), so a
cut both limits borrowing and makes accounts liquidatable; forks with a separate threshold
(Venus isolated pools) have their liquidation threshold tuned instead: ``Comptroller.setCollateralFactor(
vToken, newCollateralFactorMantissa, newLiquidationThresholdMantissa)`` as the pool's ``owner()``
(allowed by its AccessControlManager; refused above 1e18 or below the collateral factor, which a cut
below it therefore lowers to the new threshold). Steps of 100 bps, as Compound's and Venus'
proposals move factors.
With the cap analysis on (:mod:`analyzer.recommend.caps`), each market's caps too, through the
fork's own setters (:class:`protocols.compound_v2.profiles.ForkProfile`): Compound's borrow cap
(``Comptroller._setMarketBorrowCaps(cTokens, newBorrowCaps)``, as the ``admin()``); Venus isolated
pools' supply and borrow caps (``setMarketSupplyCaps`` / ``setMarketBorrowCaps``, as the pool's
``owner()``, which its AccessControlManager must allow); in the underlying's smallest units, set on
every cToken of the underlying and read back from ``supplyCaps`` / ``borrowCaps(cToken)``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from eth_utils import to_checksum_address

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.recommend.caps import CAP_COLUMN, apply_caps, cap_parameters
from protocols.base import ParameterChange, ParameterTuning, TunableParameter
from protocols.compound_v2.constants import NATIVE_ASSET, PROTOCOL
from protocols.compound_v2.profiles import ForkProfile, profile

STEP = 0.01
MAX_CUT = 0.25
MANTISSA = 10**18
COLLATERAL_FACTOR_MAX = 0.9       # Comptroller.collateralFactorMaxMantissa


def _mantissa(value: float) -> int:
    return int(round(value * 1e4)) * 10**14        # whole bps, as the search steps


class CompoundV2Tuning(ParameterTuning):
    protocol = PROTOCOL

    def parameters(self, snapshot: Snapshot) -> list[TunableParameter]:
        mk = snapshot.markets[(snapshot.markets["protocol"] == PROTOCOL) & snapshot.markets["collateral_enabled"].astype(bool)]
        pos = snapshot.positions
        mine = pos[(pos["protocol"] == PROTOCOL) & (pos["side"] == "collateral")]
        held = set(zip(mine["market"], mine["asset"], strict=True))
        out = []
        for (market, asset), rows in mk.groupby(["market", "asset"], sort=True):
            profiles = {json.loads(text or "{}").get("profile", "compound") for text in rows["params"]}
            factors = set(rows["ltv"].astype(float))
            # an underlying listed twice (a legacy cToken beside its successor) is one parameter when
            # both markets share the factor, as governance sets them; left alone when they differ
            if (market, asset) not in held or len(profiles) != 1 or len(factors) != 1:
                continue
            fork = profiles.pop()
            if fork == "compound":
                cf = factors.pop()
                out.append(TunableParameter(str(market), str(asset), "collateral_factor", cf, STEP,
                                            round(max(cf - MAX_CUT, STEP), 6), cf, margin=True))
            elif fork == "venus-isolated" and rows["liquidation_threshold"].nunique() == 1:
                lt = float(rows["liquidation_threshold"].iloc[0])
                out.append(TunableParameter(str(market), str(asset), "liquidation_threshold", lt, STEP,
                                            round(max(lt - MAX_CUT, STEP), 6), lt, margin=True))
        return out + cap_parameters(snapshot, PROTOCOL)

    def apply(self, snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
        snapshot = apply_caps(snapshot, PROTOCOL, [c for c in changes if c.parameter in CAP_COLUMN])
        mine = [c for c in changes if c.protocol == PROTOCOL and c.parameter not in CAP_COLUMN]
        if not mine:
            return snapshot
        markets = snapshot.markets.copy()
        for change in mine:
            if change.parameter not in ("collateral_factor", "liquidation_threshold"):
                raise ContagionError(f"compound-v2: {change.parameter} is not a parameter this tuning sets")
            row = (markets["protocol"] == PROTOCOL) & (markets["market"] == change.market) \
                & (markets["asset"] == change.asset)
            if not row.any():
                raise ContagionError(f"compound-v2: no market for {change.asset} in {change.market}")
            for i in markets.index[row]:        # every cToken of the underlying
                params = json.loads(markets.at[i, "params"] or "{}")
                if change.parameter == "collateral_factor":
                    cf = lt = _check(change.value)
                else:       # Venus isolated pools: the threshold, the collateral factor at most it
                    lt = _check_threshold(change.value)
                    cf = min(int(params["collateral_factor_mantissa"]), lt)
                params["collateral_factor_mantissa"], params["liquidation_threshold_mantissa"] = str(cf), str(lt)
                markets.at[i, "params"] = json.dumps(params, sort_keys=True)
                markets.loc[i, ["ltv", "liquidation_threshold"]] = [cf / MANTISSA, lt / MANTISSA]
        out = copy.copy(snapshot)
        out.meta, out.markets = dict(snapshot.meta), markets
        return out

    def configure(self, w3, deployment: dict[str, Any], changes: Sequence[ParameterChange]) -> None:
        """As the Comptroller's governance account (the profile's ``governor_signature``: Compound's
        ``admin()``), impersonated; each change read back from the Comptroller."""
        from analyzer.chain import require_anvil
        from analyzer.cheats import read, send_as
        from protocols.compound_v2.executor import CompoundV2Executor

        require_anvil(w3)
        mine = [c for c in changes if c.protocol == PROTOCOL]
        if not mine:
            return
        fork = profile(deployment.get("profile"))
        comptroller = to_checksum_address(deployment["comptroller"])
        ctokens: dict[str, list[str]] = {}
        for m in CompoundV2Executor(w3, deployment, w3.eth.accounts[0]).by_ctoken.values():
            ctokens.setdefault(m["underlying"].lower(), []).append(m["cToken"])
        admin = str(read(w3, comptroller, fork.governor_signature))
        for change in mine:
            if to_checksum_address(change.market) != comptroller:
                raise ContagionError(f"compound-v2: a change for {change.market}, but the deployment's comptroller is {comptroller}")
            if change.asset.lower() not in ctokens:
                raise ContagionError(f"compound-v2: no cToken of {change.asset} in {comptroller}")
            if change.parameter in CAP_COLUMN:
                _set_caps(w3, comptroller, admin, ctokens[change.asset.lower()], change, fork)
                continue
            if change.parameter == "liquidation_threshold" and fork.name == "venus-isolated":
                _set_threshold(w3, comptroller, admin, ctokens[change.asset.lower()], change, fork)
                continue
            if change.parameter != "collateral_factor" or fork.name != "compound":
                raise ContagionError(f"compound-v2: {change.parameter} of a {fork.name} pool is not a parameter this "
                                     "tuning sets")
            mantissa = _check(change.value)
            for ctoken in ctokens[change.asset.lower()]:
                send_as(w3, admin, comptroller, "_setCollateralFactor(address,uint256)", to_checksum_address(ctoken),
                        mantissa, what=f"Comptroller._setCollateralFactor({ctoken})")
                listed = read(w3, comptroller, "markets(address)(bool,uint256,bool)", to_checksum_address(ctoken))
                assert isinstance(listed, (list, tuple))
                if int(listed[1]) != mantissa:      # an error code, not a revert (Compound's fail())
                    raise ContagionError(f"Comptroller._setCollateralFactor({ctoken}) refused {mantissa}")


def _set_caps(w3, comptroller: str, admin: str, ctokens: list[str], change: ParameterChange,
              fork: ForkProfile) -> None:
    """``change`` (a supply or borrow cap, whole tokens) on every cToken of its underlying, through the
    fork's setter, read back from the Comptroller's ``supplyCaps`` / ``borrowCaps``."""
    from analyzer.cheats import read, send_as

    supply = change.parameter == "supply_cap"
    setter = fork.supply_cap_setter if supply else fork.borrow_cap_setter
    getter = fork.supply_cap_signature if supply else "borrowCaps(address)(uint256)"
    if setter is None or getter is None:
        raise ContagionError(f"compound-v2: a {fork.name} Comptroller has no {change.parameter}")
    native = change.asset.lower() == NATIVE_ASSET.lower()
    decimals = 18 if native else int(read(w3, to_checksum_address(change.asset), "decimals()(uint8)"))
    raw = int(change.value) * 10**decimals
    if raw == (fork.supply_uncapped_raw if supply else fork.borrow_uncapped_raw):
        raise ContagionError(f"compound-v2: a {change.parameter} of {change.value:g} means none on a {fork.name} "
                             "Comptroller")
    cts = [to_checksum_address(c) for c in ctokens]
    what = f"Comptroller.{setter.split('(')[0]}"
    send_as(w3, admin, comptroller, setter, cts, [raw] * len(cts), what=what)
    for ctoken in cts:
        if int(read(w3, comptroller, getter, ctoken)) != raw:
            raise ContagionError(f"{what}: {ctoken}'s cap did not read back as {raw}")


def _set_threshold(w3, comptroller: str, admin: str, ctokens: list[str], change: ParameterChange,
                   fork: ForkProfile) -> None:
    """A Venus isolated pool's liquidation threshold, its collateral factor lowered to it when above,
    through ``setCollateralFactor``; read back from ``markets()``."""
    from analyzer.cheats import read, send_as

    lt = _check_threshold(change.value)
    for ctoken in (to_checksum_address(c) for c in ctokens):
        market = read(w3, comptroller, fork.markets_signature, ctoken)
        assert isinstance(market, (list, tuple)) and fork.liquidation_threshold_index is not None
        cf = min(int(market[fork.collateral_factor_index]), lt)
        send_as(w3, admin, comptroller, "setCollateralFactor(address,uint256,uint256)", ctoken, cf, lt,
                what=f"Comptroller.setCollateralFactor({ctoken})")
        market = read(w3, comptroller, fork.markets_signature, ctoken)
        assert isinstance(market, (list, tuple))
        if (int(market[fork.collateral_factor_index]), int(market[fork.liquidation_threshold_index])) != (cf, lt):
            raise ContagionError(f"Comptroller.setCollateralFactor({ctoken}): did not read back as ({cf}, {lt})")


def _check_threshold(value: float) -> int:
    mantissa = _mantissa(value)
    if not 0 < mantissa <= MANTISSA:
        raise ContagionError(f"compound-v2: liquidation threshold {value} is outside (0, 1] "
                             "(Comptroller.setCollateralFactor: InvalidLiquidationThreshold)")
    return mantissa


def _check(value: float) -> int:
    mantissa = _mantissa(value)
    if not 0 <= mantissa <= int(COLLATERAL_FACTOR_MAX * MANTISSA):
        raise ContagionError(f"compound-v2: collateral factor {value} is outside [0, 0.9] "
                             "(Comptroller._setCollateralFactor: INVALID_COLLATERAL_FACTOR)")
    return mantissa
