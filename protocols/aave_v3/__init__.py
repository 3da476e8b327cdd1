"""Aave V3: devnet from the real ``@aave/core-v3`` bytecode, reader, liquidation rule, executor.

Built-in book ``books/ethereum.json`` (Aave V3 Ethereum, main market). Source: ``@bgd-labs/aave-address-book``,
``src/AaveV3Ethereum.sol`` (constants POOL_ADDRESSES_PROVIDER, POOL, POOL_CONFIGURATOR, ORACLE,
AAVE_PROTOCOL_DATA_PROVIDER, ACL_MANAGER, ACL_ADMIN, COLLECTOR). The reader derives the oracle
and the data provider from the PoolAddressesProvider at the scanned block, so a later upgrade
of those (the data provider moved with 3.1) does not make a scan read a stale contract.
"""

from pathlib import Path

from protocols.aave_v3.devnet import AaveV3Devnet
from protocols.aave_v3.executor import AaveV3Executor
from protocols.aave_v3.prices import AaveV3PriceSources
from protocols.aave_v3.reader import AaveV3Reader
from protocols.aave_v3.rules import AaveV3Rules
from protocols.base import Plugin

PLUGIN = Plugin(
    name="aave-v3",
    reader=AaveV3Reader,
    rules=AaveV3Rules,
    executor=AaveV3Executor,
    devnet=AaveV3Devnet,
    price_sources=AaveV3PriceSources,
    devnet_order=10,
    books=Path(__file__).parent / "books", market_key="pool",
)
