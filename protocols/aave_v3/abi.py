"""ABI fragments of Aave V3 (abis/aave_v3/*.json, cut from the ``@aave/core-v3`` artifacts) and the
Multicall signatures derived from them, so a signature can never drift from the ABI."""

from __future__ import annotations

import json
from functools import cache

from analyzer.chain import REPO_ROOT
from analyzer.errors import ContagionError

ABI_DIR = REPO_ROOT / "abis" / "aave_v3"


@cache
def load(name: str) -> list[dict]:
    path = ABI_DIR / f"{name}.json"
    if not path.is_file():
        raise ContagionError(f"ABI file {path} is missing")
    return json.loads(path.read_text())


def _type(param: dict) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_type(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


def entry(contract: str, name: str, kind: str = "function") -> dict:
    for item in load(contract):
        if item.get("type") == kind and item.get("name") == name:
            return item
    raise ContagionError(f"abis/aave_v3/{contract}.json has no {kind} {name}")


def signature(contract: str, name: str) -> str:
    """``"name(inputs)(outputs)"`` of a function, tuples spelled out (analyzer.multicall.Call)."""
    item = entry(contract, name)
    inputs = ",".join(_type(p) for p in item["inputs"])
    outputs = ",".join(_type(p) for p in item["outputs"])
    return f"{name}({inputs})({outputs})"


GET_RESERVE_DATA = signature("Pool", "getReserveData")
GET_EMODE_CATEGORY_DATA = signature("Pool", "getEModeCategoryData")
GET_USER_ACCOUNT_DATA = signature("Pool", "getUserAccountData")
RESERVE_CONFIGURATION_DATA = signature("AaveProtocolDataProvider", "getReserveConfigurationData")
SUPPLY_EVENT = entry("Pool", "Supply", "event")
BORROW_EVENT = entry("Pool", "Borrow", "event")
LIQUIDATION_CALL_EVENT = entry("Pool", "LiquidationCall", "event")
TRANSFER_EVENT = entry("AToken", "Transfer", "event")
