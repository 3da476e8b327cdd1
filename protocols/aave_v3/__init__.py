"""Aave V3 (3.0 to 3.6): devnet (v3.6 from ``@aave-dao/aave-v3-origin``, v3.0 from ``@aave/core-v3``),
reader, liquidation rule per release, executor.

Address books: every market on every chain, generated from ``@aave-dao/aave-address-book``
(:mod:`protocols.aave_v3.books`, ``books/<chain>.json`` in the one address-book shape). The reader
derives the oracle and the data provider from the PoolAddressesProvider at the scanned block, and
the release from ``POOL_REVISION``, so a later upgrade does not make a scan read a stale contract
or apply a stale rule.
"""

from pathlib import Path

from protocols.aave_v3.books import primary_markets
from protocols.aave_v3.devnet import AaveV3Devnet
from protocols.aave_v3.executor import AaveV3Executor
from protocols.aave_v3.prices import AaveV3PriceSources
from protocols.aave_v3.reader import AaveV3Reader
from protocols.aave_v3.rules import AaveV3Rules
from protocols.aave_v3.tuning import AaveV3Tuning
from protocols.base import Plugin

# every chain's main market (AaveV3Ethereum on chain 1, ...); every market of every chain is in
# protocols/aave_v3/books/<chain>.json, generated from @aave-dao/aave-address-book
MAINNET = primary_markets()
MAINNET_ETHEREUM = MAINNET[1]

PLUGIN = Plugin(
    name="aave-v3",
    reader=AaveV3Reader,
    rules=AaveV3Rules,
    executor=AaveV3Executor,
    devnet=AaveV3Devnet,
    price_sources=AaveV3PriceSources,
    tuning=AaveV3Tuning,
    devnet_order=10,
    books=Path(__file__).parent / "books", market_key="pool",
)
