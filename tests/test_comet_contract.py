"""Our Comet fixture speaks mainnet Comet's interface: selectors, return layouts, event topics.

The expected signatures are written out from compound-finance/comet (CometMainInterface.sol,
CometExtInterface.sol, Comet.sol) and hashed here with eth_utils, independently of our ABI.
"""

from __future__ import annotations

from eth_utils import event_signature_to_log_topic, function_signature_to_4byte_selector

from analyzer.devnet.solc import fixture_artifact, group_sources, load_group, sources_hash

MAINNET_FUNCTIONS = [
    "baseToken()", "baseTokenPriceFeed()", "numAssets()", "getAssetInfo(uint8)", "getAssetInfoByAddress(address)",
    "getPrice(address)", "userBasic(address)", "balanceOf(address)", "borrowBalanceOf(address)",
    "collateralBalanceOf(address,address)", "isBorrowCollateralized(address)", "isLiquidatable(address)",
    "supply(address,uint256)", "supplyTo(address,address,uint256)", "supplyFrom(address,address,address,uint256)",
    "withdraw(address,uint256)", "withdrawTo(address,address,uint256)", "withdrawFrom(address,address,address,uint256)",
    "absorb(address,address[])", "buyCollateral(address,uint256,uint256,address)", "quoteCollateral(address,uint256)",
    "getReserves()", "storeFrontPriceFactor()", "targetReserves()", "totalsBasic()", "userCollateral(address,address)",
    "totalsCollateral(address)", "getCollateralReserves(address)", "getUtilization()", "getSupplyRate(uint256)",
    "getBorrowRate(uint256)", "baseScale()", "baseBorrowMin()", "totalSupply()", "totalBorrow()",
    "accrueAccount(address)", "allow(address,bool)", "hasPermission(address,address)", "isAllowed(address,address)",
    "withdrawReserves(address,uint256)", "decimals()", "governor()", "transfer(address,uint256)",
    "transferFrom(address,address,uint256)", "transferAsset(address,address,uint256)",
    "transferAssetFrom(address,address,address,uint256)",
]
# event signature -> which parameters are indexed (mainnet CometMainInterface)
MAINNET_EVENTS = {
    "Supply(address,address,uint256)": [True, True, False],
    "Withdraw(address,address,uint256)": [True, True, False],
    "Transfer(address,address,uint256)": [True, True, False],
    "SupplyCollateral(address,address,address,uint256)": [True, True, True, False],
    "WithdrawCollateral(address,address,address,uint256)": [True, True, True, False],
    "TransferCollateral(address,address,address,uint256)": [True, True, True, False],
    "AbsorbDebt(address,address,uint256,uint256)": [True, True, False, False],
    "AbsorbCollateral(address,address,address,uint256,uint256)": [True, True, True, False, False],
    "BuyCollateral(address,address,uint256,uint256)": [True, True, False, False],
    "WithdrawReserves(address,uint256)": [True, False],
}
ASSET_INFO = ["uint8", "address", "address", "uint64", "uint64", "uint64", "uint64", "uint128"]
TOTALS_BASIC = ["uint64", "uint64", "uint64", "uint64", "uint104", "uint104", "uint40", "uint8"]


def _type(entry: dict) -> str:
    if entry["type"].startswith("tuple"):
        return "(" + ",".join(_type(c) for c in entry["components"]) + ")" + entry["type"][5:]
    return entry["type"]


def _abi_selectors(abi: list) -> dict[bytes, str]:
    out = {}
    for entry in abi:
        if entry["type"] == "function":
            signature = f"{entry['name']}({','.join(_type(i) for i in entry['inputs'])})"
            out[function_signature_to_4byte_selector(signature)] = signature
    return out


def test_artifact_is_not_stale():
    assert load_group("comet")["sources_sha256"] == sources_hash(group_sources("comet")), (
        "fixtures/artifacts/comet.json is stale: run `python -m analyzer.devnet.solc comet`")


def test_every_mainnet_selector_is_in_the_abi_and_the_runtime_code():
    artifact = fixture_artifact("comet", "Comet")
    ours = _abi_selectors(artifact["abi"])
    runtime = bytes.fromhex(artifact["deployedBytecode"][2:])
    for signature in MAINNET_FUNCTIONS:
        selector = function_signature_to_4byte_selector(signature)
        assert selector in ours, f"{signature} missing from our ABI"
        assert b"\x63" + selector in runtime, f"{signature}: selector {selector.hex()} not dispatched in the runtime code"


def test_return_layouts_match_mainnet_structs():
    abi = {e["name"]: e for e in fixture_artifact("comet", "Comet")["abi"] if e["type"] == "function"}
    for name in ("getAssetInfo", "getAssetInfoByAddress"):
        (out,) = abi[name]["outputs"]
        assert [c["type"] for c in out["components"]] == ASSET_INFO
    (totals,) = abi["totalsBasic"]["outputs"]
    assert [c["type"] for c in totals["components"]] == TOTALS_BASIC
    assert [o["type"] for o in abi["userBasic"]["outputs"]] == ["int104", "uint64", "uint64", "uint16", "uint8"]
    assert [o["type"] for o in abi["collateralBalanceOf"]["outputs"]] == ["uint128"]
    assert [o["type"] for o in abi["getReserves"]["outputs"]] == ["int256"]
    assert [o["type"] for o in abi["numAssets"]["outputs"]] == ["uint8"]


def test_event_topics_and_indexed_fields_match_mainnet():
    events = {}
    for entry in fixture_artifact("comet", "Comet")["abi"]:
        if entry["type"] == "event":
            signature = f"{entry['name']}({','.join(_type(i) for i in entry['inputs'])})"
            events[event_signature_to_log_topic(signature)] = [i["indexed"] for i in entry["inputs"]]
    for signature, indexed in MAINNET_EVENTS.items():
        topic = event_signature_to_log_topic(signature)
        assert topic in events, f"event {signature} missing"
        assert events[topic] == indexed, f"event {signature}: indexed fields differ from mainnet"


def test_abi_file_is_the_artifact_abi():
    import json
    from pathlib import Path

    abi_file = json.loads((Path(__file__).resolve().parents[1] / "abis" / "comet" / "Comet.json").read_text())
    artifact = [e for e in fixture_artifact("comet", "Comet")["abi"] if e["type"] != "constructor"]
    assert abi_file == artifact


def test_mainnet_address_book_names_cusdcv3():
    from eth_utils import is_checksum_address

    from analyzer.books import builtin_markets
    from protocols import get

    entry = {m.name: m.deployment for m in builtin_markets([get("comet")], 1)}["cUSDCv3"]
    # compound-finance/comet deployments/mainnet/usdc/roots.json: "comet"
    assert entry["comet"] == "0xc3d688B66703497DAA19211EEdff47f25384cdc3" and is_checksum_address(entry["comet"])
    assert "roots.json" in entry["source"]
