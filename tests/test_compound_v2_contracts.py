"""Our Compound V2 contracts: artifacts up to date, selectors and event topics equal mainnet's.

The expected selectors and topics are computed from the signatures that PROTOCOLS.md lists for
Compound V2 (and the few more Compound's interface has), not from our artifacts; the artifacts'
ABIs must produce the same 4-byte selectors and topics. A handful of literal mainnet values
(from Compound's deployed contracts' ABIs on Etherscan) pin the computation itself.
"""

from __future__ import annotations

import json

import pytest
from eth_utils import event_signature_to_log_topic, function_signature_to_4byte_selector

from analyzer.chain import REPO_ROOT
from analyzer.devnet import solc

COMPTROLLER_FUNCTIONS = [
    "getAllMarkets()", "markets(address)", "oracle()", "closeFactorMantissa()", "liquidationIncentiveMantissa()",
    "getAccountLiquidity(address)", "getHypotheticalAccountLiquidity(address,address,uint256,uint256)",
    "getAssetsIn(address)", "liquidateCalculateSeizeTokens(address,address,uint256)", "enterMarkets(address[])",
    "exitMarket(address)", "checkMembership(address,address)", "_supportMarket(address)",
    "_setCollateralFactor(address,uint256)", "_setCloseFactor(uint256)", "_setLiquidationIncentive(uint256)",
    "_setPriceOracle(address)", "liquidateBorrowAllowed(address,address,address,address,uint256)",
    "seizeAllowed(address,address,address,address,uint256)", "admin()", "isComptroller()",
]
CTOKEN_FUNCTIONS = [
    "getAccountSnapshot(address)", "borrowBalanceStored(address)", "exchangeRateStored()", "decimals()",
    "protocolSeizeShareMantissa()", "balanceOf(address)", "totalSupply()", "totalBorrows()", "totalReserves()",
    "getCash()", "accrueInterest()", "exchangeRateCurrent()", "borrowBalanceCurrent(address)", "comptroller()",
    "interestRateModel()", "reserveFactorMantissa()", "seize(address,address,uint256)", "isCToken()",
    "redeem(uint256)", "redeemUnderlying(uint256)", "borrow(uint256)", "transfer(address,uint256)",
]
CERC20_ONLY = ["underlying()", "mint(uint256)", "repayBorrow(uint256)", "repayBorrowBehalf(address,uint256)",
               "liquidateBorrow(address,uint256,address)"]
CETHER_ONLY = ["mint()", "repayBorrow()", "repayBorrowBehalf(address)", "liquidateBorrow(address,address)"]
CTOKEN_EVENTS = ["Mint(address,uint256,uint256)", "Borrow(address,uint256,uint256,uint256)",
                 "RepayBorrow(address,address,uint256,uint256,uint256)",
                 "LiquidateBorrow(address,address,uint256,address,uint256)", "Redeem(address,uint256,uint256)",
                 "AccrueInterest(uint256,uint256,uint256,uint256)", "Transfer(address,address,uint256)",
                 "ReservesAdded(address,uint256,uint256)"]
COMPTROLLER_EVENTS = ["MarketEntered(address,address)", "MarketExited(address,address)", "MarketListed(address)"]
ORACLE_FUNCTIONS = ["getUnderlyingPrice(address)"]

# literal values of mainnet Compound V2 (Comptroller / cToken ABIs), pinning the computation
MAINNET_LITERALS = {
    "getAccountLiquidity(address)": "5ec88c79",
    "liquidateBorrow(address,uint256,address)": "f5e3c462",
    "mint(uint256)": "a0712d68",
    "borrow(uint256)": "c5ebeaec",
    "repayBorrow(uint256)": "0e752702",
    "enterMarkets(address[])": "c2998238",
    "getUnderlyingPrice(address)": "fc57d4df",
}


def _canonical(item: dict) -> str:
    def kind(arg: dict) -> str:
        if arg["type"].startswith("tuple"):
            return "(" + ",".join(kind(c) for c in arg["components"]) + ")" + arg["type"][5:]
        return arg["type"]
    return f"{item['name']}({','.join(kind(a) for a in item['inputs'])})"


def _abi_selectors(contract: str) -> tuple[set[bytes], set[bytes]]:
    abi = solc.fixture_artifact("compound_v2", contract)["abi"]
    functions = {function_signature_to_4byte_selector(_canonical(x)) for x in abi if x["type"] == "function"}
    events = {event_signature_to_log_topic(_canonical(x)) for x in abi if x["type"] == "event"}
    return functions, events


def test_artifacts_are_not_stale():
    """Recompiling the committed sources gives the committed artifacts."""
    committed = solc.load_group("compound_v2")
    sources = solc.group_sources("compound_v2")
    assert committed["sources_sha256"] == solc.sources_hash(sources), "run python -m analyzer.devnet.solc compound_v2"
    assert committed["solc"] == solc.solc_version()
    fresh = solc.compile_sources(sources)
    assert set(fresh) == set(committed["contracts"])
    for name, artifact in fresh.items():
        assert artifact["bytecode"] == committed["contracts"][name]["bytecode"], name
        assert artifact["abi"] == committed["contracts"][name]["abi"], name


@pytest.mark.parametrize(("contract", "functions", "events"), [
    ("Comptroller", COMPTROLLER_FUNCTIONS, COMPTROLLER_EVENTS),
    ("CErc20", CTOKEN_FUNCTIONS + CERC20_ONLY, CTOKEN_EVENTS),
    ("CEther", CTOKEN_FUNCTIONS + CETHER_ONLY, CTOKEN_EVENTS),
    ("FeedPriceOracle", ORACLE_FUNCTIONS, []),
])
def test_selectors_and_topics_match_mainnet(contract, functions, events):
    have_functions, have_events = _abi_selectors(contract)
    missing = [s for s in functions if function_signature_to_4byte_selector(s) not in have_functions]
    assert missing == []
    missing_events = [s for s in events if event_signature_to_log_topic(s) not in have_events]
    assert missing_events == []


def test_selector_computation_matches_mainnet_literals():
    for signature, selector in MAINNET_LITERALS.items():
        assert function_signature_to_4byte_selector(signature).hex() == selector, signature


def test_return_layouts_match_compound():
    """Return tuples as Compound's: getAccountLiquidity (3 × uint), markets (bool, uint, bool), ..."""
    def outputs(contract: str, name: str) -> list[str]:
        abi = solc.fixture_artifact("compound_v2", contract)["abi"]
        (item,) = [x for x in abi if x.get("name") == name and x["type"] == "function"]
        return [o["type"] for o in item["outputs"]]
    assert outputs("Comptroller", "getAccountLiquidity") == ["uint256"] * 3
    assert outputs("Comptroller", "getHypotheticalAccountLiquidity") == ["uint256"] * 3
    assert outputs("Comptroller", "markets") == ["bool", "uint256", "bool"]
    assert outputs("Comptroller", "liquidateCalculateSeizeTokens") == ["uint256"] * 2
    assert outputs("Comptroller", "getAllMarkets") == ["address[]"]
    assert outputs("CErc20", "getAccountSnapshot") == ["uint256"] * 4
    assert outputs("CErc20", "decimals") == ["uint8"]
    assert outputs("CErc20", "liquidateBorrow") == ["uint256"]
    for name in ("Mint", "Borrow", "LiquidateBorrow"):
        abi = solc.fixture_artifact("compound_v2", "CErc20")["abi"]
        (event,) = [x for x in abi if x.get("name") == name and x["type"] == "event"]
        assert not any(a["indexed"] for a in event["inputs"]), f"{name}: Compound's has no indexed fields"


def test_abi_fragments_match_artifacts():
    """abis/compound_v2/*.json are fragments of the compiled ABIs (nothing invented)."""
    folder = REPO_ROOT / "abis" / "compound_v2"
    files = sorted(folder.glob("*.json"))
    assert files
    for path in files:
        contract = path.stem
        compiled = {json.dumps(x, sort_keys=True) for x in solc.fixture_artifact("compound_v2", contract)["abi"]}
        for item in json.loads(path.read_text()):
            assert json.dumps(item, sort_keys=True) in compiled, f"{path.name}: {item.get('name')}"
