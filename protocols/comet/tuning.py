"""Comet (Compound III) risk parameters as governance sets them: per collateral asset the
``borrowCollateralFactor``, ``liquidateCollateralFactor`` and ``liquidationFactor``, and the
market's ``storeFrontPriceFactor``, all 1e18-scaled and kept to 4 decimals
(``Comet.sol``/our fixture's ``checkedAssetInfo``; ``storeFrontPriceFactor <= 1e18``).

On mainnet they change through ``Configurator.updateAssetBorrowCollateralFactor`` /
``updateAssetLiquidateCollateralFactor`` / ``updateAssetLiquidationFactor`` /
``setStoreFrontPriceFactor``, then ``CometProxyAdmin.deployAndUpgradeTo``: a new implementation
with the new values in its immutables, behind the same proxy and storage. Our interface-exact Comet
has no configurator (``fixtures/contracts/comet/Comet.sol``: left out on purpose), so on an anvil
fork :meth:`CometTuning.configure` writes the same end state where the fixture keeps it, the route
the issue allows where there is no other: an asset's factors in its ``assetInfos`` storage word, and
the store-front factor in the runtime code's immutable (what the upgrade's new implementation would
carry), each read back through ``getAssetInfoByAddress`` / ``storeFrontPriceFactor()``.

Searched (:meth:`CometTuning.parameters`): the liquidate collateral factor (a margin parameter;
the borrow factor follows it down by the same amount, keeping ``borrowCF < liquidateCF``), the
liquidation factor (lower: a larger penalty kept by the protocol at absorb) and the store-front
factor (lower: a smaller discount on absorbed collateral), in steps of one point as Compound's
risk proposals move them, at most 25 points down. With the cap analysis on
(:mod:`analyzer.recommend.caps`), each collateral's ``supplyCap`` too (``updateAssetSupplyCap``
on mainnet; on the fork the fourth word of its ``AssetInfo``, read back as ``getAssetInfoByAddress``'s
``supplyCap``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from eth_utils import keccak, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from analyzer.recommend.caps import CAP_COLUMN, apply_caps, cap_parameters
from protocols.base import ParameterChange, ParameterTuning, TunableParameter, changes_by_market_asset

PROTOCOL = "comet"
STEP = 0.01
MAX_CUT = 0.25
SCALE = 10**18
DESCALE = SCALE // 10**4          # Comet keeps 4 decimals of a factor
ASSET_FACTORS = ("borrow_collateral_factor", "liquidate_collateral_factor", "liquidation_factor")
MARKET_FACTORS = ("store_front_price_factor",)


def _raw(value: float) -> int:
    return int(round(value * 1e4)) * DESCALE


def new_factors(current: dict[str, int], changes: Sequence[ParameterChange]) -> dict[str, int]:
    """An asset's (or the market's) raw factors after ``changes``; a liquidate-factor cut moves the
    borrow factor down by the same amount. Raises ContagionError where Comet would refuse them."""
    out = dict(current)
    for change in changes:
        raw = _raw(change.value)
        if change.parameter == "liquidate_collateral_factor" and "borrow_collateral_factor" in out:
            out["borrow_collateral_factor"] = max(out["borrow_collateral_factor"] - (out[change.parameter] - raw), 0)
        if change.parameter not in out:
            raise ContagionError(f"comet: {change.parameter} is not a parameter this tuning sets")
        out[change.parameter] = raw
    if "liquidate_collateral_factor" in out and not (
            out["borrow_collateral_factor"] < out["liquidate_collateral_factor"] <= SCALE):
        raise ContagionError(f"comet: borrowCF {out['borrow_collateral_factor']}, liquidateCF "
                             f"{out['liquidate_collateral_factor']}: Comet refuses them (BorrowCFTooLarge / LiquidateCFTooLarge)")
    if not all(0 <= v <= SCALE for v in out.values()):
        raise ContagionError(f"comet: factors {out} outside [0, 1e18] (BadDiscount)")
    return out


class CometTuning(ParameterTuning):
    protocol = PROTOCOL

    def parameters(self, snapshot: Snapshot) -> list[TunableParameter]:
        mk = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        pos = snapshot.positions
        mine = pos[(pos["protocol"] == PROTOCOL) & (pos["side"] == "collateral")]
        held = set(zip(mine["market"], mine["asset"], strict=True))
        out = []
        for row in mk.itertuples(index=False):
            params = json.loads(row.params or "{}")
            if params.get("role") == "base":
                if any(m == row.market for m, _ in held):
                    sf = int(params["store_front_price_factor"]) / SCALE
                    out.append(TunableParameter(str(row.market), str(row.asset), "store_front_price_factor", sf, STEP,
                                                round(max(sf - MAX_CUT, 0.0), 6), sf))
                continue
            if (row.market, row.asset) not in held:
                continue
            bcf, lcf, lf = (int(params[k]) / SCALE for k in ASSET_FACTORS)
            out.append(TunableParameter(str(row.market), str(row.asset), "liquidate_collateral_factor", lcf, STEP,
                                        round(max(lcf - MAX_CUT, lcf - bcf + STEP), 6), lcf, margin=True))
            out.append(TunableParameter(str(row.market), str(row.asset), "liquidation_factor", lf, STEP,
                                        round(max(lf - MAX_CUT, STEP), 6), lf))
        return out + cap_parameters(snapshot, PROTOCOL, ["supply_cap"])

    def apply(self, snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
        snapshot = apply_caps(snapshot, PROTOCOL, changes)
        mine = [c for c in changes if c.protocol == PROTOCOL and c.parameter not in CAP_COLUMN]
        if not mine:
            return snapshot
        markets = snapshot.markets.copy()
        for (market, asset), group in changes_by_market_asset(mine).items():
            rows = markets.index[(markets["protocol"] == PROTOCOL) & (markets["market"] == market)
                                 & (markets["asset"] == asset)]
            if not len(rows):
                raise ContagionError(f"comet: no asset {asset} in market {market}")
            i = rows[0]
            params = json.loads(markets.at[i, "params"] or "{}")
            keys = MARKET_FACTORS if params.get("role") == "base" else ASSET_FACTORS
            factors = new_factors({k: int(params[k]) for k in keys}, group)
            params.update({k: str(v) for k, v in factors.items()})
            markets.at[i, "params"] = json.dumps(params, sort_keys=True)
            if params.get("role") != "base":      # the reader's fractions (protocols/comet/reader.py)
                markets.loc[i, ["ltv", "liquidation_threshold", "liquidation_bonus"]] = [
                    factors["borrow_collateral_factor"] / SCALE, factors["liquidate_collateral_factor"] / SCALE,
                    1.0 - factors["liquidation_factor"] / SCALE]
        out = copy.copy(snapshot)
        out.meta, out.markets = dict(snapshot.meta), markets
        return out

    def configure(self, w3, deployment: dict[str, Any], changes: Sequence[ParameterChange]) -> None:
        """The module docstring's route on anvil; every value read back from the contract."""
        from analyzer.chain import require_anvil

        require_anvil(w3)
        comet = to_checksum_address(deployment["comet"])
        for (market, asset), group in changes_by_market_asset([c for c in changes if c.protocol == PROTOCOL]).items():
            if to_checksum_address(market) != comet:
                raise ContagionError(f"comet: a change for market {market}, but the deployment's comet is {comet}")
            for cap in [c for c in group if c.parameter in CAP_COLUMN]:
                _set_supply_cap(w3, comet, to_checksum_address(asset), cap)
            group = [c for c in group if c.parameter not in CAP_COLUMN]
            if not group:
                continue
            if {c.parameter for c in group} <= set(MARKET_FACTORS):
                _set_store_front(w3, comet, group)
            else:
                _set_asset_factors(w3, comet, to_checksum_address(asset), group)


def _asset_info(w3, comet: str, asset: str) -> tuple:
    """(offset, asset, priceFeed, scale, borrowCF, liquidateCF, liquidationFactor, supplyCap)."""
    from analyzer.devnet.solc import fixture_artifact

    contract = w3.eth.contract(address=comet, abi=fixture_artifact("comet", "Comet")["abi"])
    return tuple(contract.functions.getAssetInfoByAddress(asset).call())


def _storage(w3, address: str, slot: int) -> int:
    return int.from_bytes(bytes(w3.eth.get_storage_at(address, slot)), "big")


def _factors_slot(w3, comet: str, asset: str) -> int:
    """The storage slot of the asset's packed factors: its ``AssetInfo`` packs (borrowCF,
    liquidateCF, liquidationFactor) as three uint64 in its third slot (offset|asset, priceFeed|scale,
    factors, supplyCap): the array's slot is found by matching the chain's words against
    ``getAssetInfoByAddress``, never assumed."""
    info = _asset_info(w3, comet, asset)
    offset = int(info[0])
    packed = int(info[4]) | int(info[5]) << 64 | int(info[6]) << 128
    for array_slot in range(16):
        slot = int.from_bytes(keccak(array_slot.to_bytes(32, "big")), "big") + 4 * offset + 2
        if _storage(w3, comet, slot) & ((1 << 192) - 1) == packed \
                and _storage(w3, comet, slot - 2) >> 8 & ((1 << 160) - 1) == int(asset, 16):
            return slot
    raise ContagionError(f"comet {comet}: the AssetInfo of {asset} is not in storage where Comet's layout puts it")


def _set_asset_factors(w3, comet: str, asset: str, changes: Sequence[ParameterChange]) -> None:
    from analyzer.chain import rpc

    info = _asset_info(w3, comet, asset)
    current = dict(zip(ASSET_FACTORS, (int(v) for v in info[4:7]), strict=True))
    slot = _factors_slot(w3, comet, asset)
    word = _storage(w3, comet, slot)
    new = new_factors(current, changes)
    word = (word >> 192 << 192) | new["borrow_collateral_factor"] | new["liquidate_collateral_factor"] << 64 \
        | new["liquidation_factor"] << 128
    rpc(w3, "anvil_setStorageAt", [comet, hex(slot), "0x" + word.to_bytes(32, "big").hex()])
    if tuple(int(v) for v in _asset_info(w3, comet, asset)[4:7]) != tuple(new[k] for k in ASSET_FACTORS):
        raise ContagionError(f"comet {comet}: {asset}'s factors did not read back as set")


def _set_supply_cap(w3, comet: str, asset: str, change: ParameterChange) -> None:
    """The asset's supply cap (whole tokens × its scale) in the fourth word of its ``AssetInfo``."""
    from analyzer.chain import rpc

    scale = int(_asset_info(w3, comet, asset)[3])
    raw = int(change.value) * scale
    slot = _factors_slot(w3, comet, asset) + 1
    if _storage(w3, comet, slot) != int(_asset_info(w3, comet, asset)[7]):
        raise ContagionError(f"comet {comet}: {asset}'s supplyCap is not the word after its factors")
    rpc(w3, "anvil_setStorageAt", [comet, hex(slot), "0x" + raw.to_bytes(32, "big").hex()])
    if int(_asset_info(w3, comet, asset)[7]) != raw:
        raise ContagionError(f"comet {comet}: {asset}'s supplyCap did not read back as set")


def _set_store_front(w3, comet: str, changes: Sequence[ParameterChange]) -> None:
    """The immutable in the runtime code: the 32-byte words where the compiled code (the committed
    artifact, immutables left zero) is zero and the chain's code holds today's factor; refused when
    another immutable holds the same value (the word would be ambiguous)."""
    from analyzer.chain import rpc
    from analyzer.cheats import read
    from analyzer.devnet.solc import fixture_artifact

    today = int(read(w3, comet, "storeFrontPriceFactor()(uint256)"))  # type: ignore[call-overload]
    new = new_factors({"store_front_price_factor": today}, changes)["store_front_price_factor"]
    code = bytearray(bytes(w3.eth.get_code(comet)))
    compiled = bytes.fromhex(fixture_artifact("comet", "Comet")["deployedBytecode"].removeprefix("0x"))
    if len(compiled) != len(code):
        raise ContagionError(f"comet {comet}: its code is not our fixture's Comet; the store-front factor has no route")
    others = [int(read(w3, comet, f"{name}()(uint256)")) for name in  # type: ignore[call-overload]
              ("baseScale", "baseBorrowMin", "targetReserves", "supplyKink", "borrowKink")]
    if today in others:
        raise ContagionError(f"comet {comet}: another immutable equals storeFrontPriceFactor {today}; not patched")
    value, zero = today.to_bytes(32, "big"), bytes(32)
    spots = [i for i in range(len(code) - 31) if code[i:i + 32] == value and compiled[i:i + 32] == zero]
    if not spots:
        raise ContagionError(f"comet {comet}: storeFrontPriceFactor's immutable not found in its code")
    for i in spots:
        code[i:i + 32] = new.to_bytes(32, "big")
    rpc(w3, "anvil_setCode", [comet, "0x" + bytes(code).hex()])
    if int(read(w3, comet, "storeFrontPriceFactor()(uint256)")) != new:  # type: ignore[call-overload]
        raise ContagionError(f"comet {comet}: storeFrontPriceFactor did not read back as set")
