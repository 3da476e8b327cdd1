"""Morpho Blue: isolated markets (one collateral, one loan asset, one oracle, one LLTV each), whose
bad debt is realised at liquidation and socialised to that market's suppliers, and MetaMorpho
vaults (ERC-4626) allocating deposits across markets, whose share price carries the loss on.

Address book entry: ``{"morpho": <singleton>, "start_block": <deployment block>, "vaults":
{name: address}}`` (vaults optional).
"""

from protocols.base import Plugin
from protocols.morpho_blue.devnet import MorphoBlueDevnet
from protocols.morpho_blue.executor import MorphoBlueExecutor
from protocols.morpho_blue.mainnet import MAINNET
from protocols.morpho_blue.prices import MorphoBluePriceSources
from protocols.morpho_blue.reader import MorphoBlueReader
from protocols.morpho_blue.rules import MorphoBlueRules

PLUGIN = Plugin(
    name="morpho-blue",
    reader=MorphoBlueReader,
    rules=MorphoBlueRules,
    executor=MorphoBlueExecutor,
    devnet=MorphoBlueDevnet,
    price_sources=MorphoBluePriceSources,
    devnet_order=35,
    mainnet=MAINNET,
)
