"""Compound III (Comet): absorb-style liquidations whose losses land on the protocol's reserves.

Built-in books ``books/<chain>.json``: one market per Comet proxy (``{"comet": <proxy>, "base":
<base token>}``), named as Compound names them (cUSDCv3, cWETHv3, ...), each with the block the
proxy was deployed at and its source (compound-finance/comet ``deployments/<network>/<base>/roots.json``).
"""

from pathlib import Path

from protocols.base import Plugin
from protocols.comet.devnet import CometDevnet
from protocols.comet.executor import CometExecutor
from protocols.comet.prices import CometPriceSources
from protocols.comet.reader import CometReader
from protocols.comet.rules import CometRules
from protocols.comet.tuning import CometTuning

PLUGIN = Plugin(
    name="comet",
    reader=CometReader,
    rules=CometRules,
    executor=CometExecutor,
    devnet=CometDevnet,
    price_sources=CometPriceSources,
    tuning=CometTuning,
    devnet_order=30,
    books=Path(__file__).parent / "books",
    market_key="comet",
)
