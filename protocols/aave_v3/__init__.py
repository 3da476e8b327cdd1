"""Aave V3: devnet from the real ``@aave/core-v3`` bytecode, reader, liquidation rule, executor.

Mainnet address book (Aave V3 Ethereum, main market). Source: ``@bgd-labs/aave-address-book``,
``src/AaveV3Ethereum.sol`` (constants POOL_ADDRESSES_PROVIDER, POOL, POOL_CONFIGURATOR, ORACLE,
AAVE_PROTOCOL_DATA_PROVIDER, ACL_MANAGER, ACL_ADMIN, COLLECTOR). The reader derives the oracle
and the data provider from the PoolAddressesProvider at the scanned block, so a later upgrade
of those (the data provider moved with 3.1) does not make a scan read a stale contract.
"""

from protocols.aave_v3.devnet import AaveV3Devnet
from protocols.aave_v3.executor import AaveV3Executor
from protocols.aave_v3.prices import AaveV3PriceSources
from protocols.aave_v3.reader import AaveV3Reader
from protocols.aave_v3.rules import AaveV3Rules
from protocols.base import Plugin

MAINNET_ETHEREUM = {
    "source": "@bgd-labs/aave-address-book src/AaveV3Ethereum.sol",
    "market": "Aave V3 Ethereum",
    "version": "3.3",  # rule profile: unverified (see rules.PROFILES)
    "pool_addresses_provider": "0x2f39d218133AFaB8F2B819B1066c7E434Ad94E9e",
    "pool": "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2",
    "pool_configurator": "0x64b761D848206f447Fe2dd461b0c635Ec39EbB27",
    "oracle": "0x54586bE62E3c3580375aE3723C145253060Ca0C2",
    "data_provider": "0x7B4EB56E7CD4b454BA8ff71E4518426369a138a3",
    "acl_manager": "0xc2aaCf6553D20d1e9d78E365AAba8032af9c85b0",
    "acl_admin": "0x5300A1a15135EA4dc7aD5a167152C01EFc9b192A",
    "treasury": "0x464C71f6c2F760DdA6093dCB91C24c39e5d6e18c",
    "start_block": 16291127,  # the Pool proxy's deployment block: account discovery starts here
    "reserves": {},           # read from the chain (Pool.getReservesList)
}

PLUGIN = Plugin(
    name="aave-v3",
    reader=AaveV3Reader,
    rules=AaveV3Rules,
    executor=AaveV3Executor,
    devnet=AaveV3Devnet,
    price_sources=AaveV3PriceSources,
    devnet_order=10,
    mainnet={1: MAINNET_ETHEREUM},
)
