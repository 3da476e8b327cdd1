"""Morpho Blue's ABI pieces, ids and constants, in one place for the reader, devnet and executor.

Sources: morpho-org/morpho-blue 1.0.0 (``@morpho-org/morpho-blue`` on npm): ``src/Morpho.sol``,
``src/libraries/ConstantsLib.sol``, ``MarketParamsLib.sol`` (a market's id is the keccak256 of
its ABI-encoded ``MarketParams``), ``EventsLib.sol``. Our own IRM, oracle and vault contracts are
``fixtures/contracts/morpho``.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import event_signature_to_log_topic, keccak

from analyzer.devnet.solc import fixture_artifact

PROTOCOL = "morpho-blue"
WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
MAX_LIQUIDATION_INCENTIVE_FACTOR = 115 * 10**16   # 1.15e18
LIQUIDATION_CURSOR = 3 * 10**17                   # 0.3e18
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1

MARKET_PARAMS = "(address,address,address,address,uint256)"
MARKET = "(uint128,uint128,uint128,uint128,uint128,uint128)"
CREATE_MARKET = "CreateMarket(bytes32,(address,address,address,address,uint256))"
# events naming an account with a position (onBehalf is topic 3 in all four; borrower topic 3 too)
ACCOUNT_EVENTS = (
    "Supply(bytes32,address,address,uint256,uint256)",
    "Borrow(bytes32,address,address,address,uint256,uint256)",
    "SupplyCollateral(bytes32,address,address,uint256)",
)
LIQUIDATE = "Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)"
ENABLE_LLTV = "EnableLltv(uint256)"       # Morpho.enableLltv (owner only): an LLTV markets may be created at


def topic(signature: str) -> str:
    return "0x" + event_signature_to_log_topic(signature).hex()


def market_id(loan: str, collateral: str, oracle: str, irm: str, lltv: int) -> str:
    """MarketParamsLib.id: keccak256(abi.encode(marketParams)), as 0x-hex."""
    return "0x" + keccak(encode(["address", "address", "address", "address", "uint256"],
                                [loan, collateral, oracle, irm, int(lltv)])).hex()


def morpho_abi() -> list:
    return fixture_artifact("morpho_blue", "Morpho")["abi"]


def vault_abi() -> list:
    return fixture_artifact("morpho", "MetaMorphoVault")["abi"]
