"""Morpho Blue: isolated markets (one collateral, one loan asset, one oracle, one LLTV each), whose
bad debt is realised at liquidation and socialised to that market's suppliers, and MetaMorpho
vaults (ERC-4626) allocating deposits across markets, whose share price carries the loss on.

Address book market (:mod:`analyzer.books`): ``{"morpho": <singleton>, "start_block": <deployment
block>, "vaults": {name: address}}`` (vaults optional). Built-in books ``books/<chain>.json``
(Ethereum and Base), sources:
  - Address: the same on both chains (CREATE2), ``0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb``:
    morpho-org/morpho-blue-deployment ``broadcast/DeployMorpho.sol/1/run-latest.json`` and
    ``broadcast/DeployMorpho.sol/8453/run-1714743705.json``.
  - Deployment blocks: Base 13,977,148 (0xd5463c, the receipt of the CREATE2 transaction in the Base
    broadcast above); Ethereum 18,883,124 (``startBlock`` of the Morpho subgraph manifest and
    ``fromBlock`` of the Morpho app's deployments table; the broadcast log carries no receipts).
  - USD feeds: Chainlink ``<ASSET> / USD`` proxies from ``@aave-dao/aave-address-book``
    (``ChainlinkEthereum``, ``ChainlinkBase``); token addresses from its ``AaveV3Ethereum`` /
    ``AaveV3Base`` reserves. A collateral without a feed here is priced through its market's oracle.
"""

from pathlib import Path

from protocols.base import Plugin
from protocols.morpho_blue.devnet import MorphoBlueDevnet
from protocols.morpho_blue.executor import MorphoBlueExecutor
from protocols.morpho_blue.prices import MorphoBluePriceSources
from protocols.morpho_blue.reader import MorphoBlueReader
from protocols.morpho_blue.rules import MorphoBlueRules
from protocols.morpho_blue.tuning import MorphoBlueTuning

PLUGIN = Plugin(
    name="morpho-blue",
    reader=MorphoBlueReader,
    rules=MorphoBlueRules,
    executor=MorphoBlueExecutor,
    devnet=MorphoBlueDevnet,
    price_sources=MorphoBluePriceSources,
    tuning=MorphoBlueTuning,
    devnet_order=35,
    books=Path(__file__).parent / "books",
    market_key="morpho",
)
