"""Compound III (Comet): absorb-style liquidations whose losses land on the protocol's reserves.

Address book entry: ``{"comet": <Comet proxy>}``. On Ethereum, cUSDCv3 is
0xc3d688B66703497DAA19211EEdff47f25384cdc3 (source: Compound III docs, "Networks" page, and
compound-finance/comet deployments/mainnet/usdc/roots.json).
"""

from protocols.base import Plugin
from protocols.comet.devnet import CometDevnet
from protocols.comet.executor import CometExecutor
from protocols.comet.prices import CometPriceSources
from protocols.comet.reader import CometReader
from protocols.comet.rules import CometRules

CUSDCV3_ETHEREUM = "0xc3d688B66703497DAA19211EEdff47f25384cdc3"

PLUGIN = Plugin(
    name="comet",
    reader=CometReader,
    rules=CometRules,
    executor=CometExecutor,
    devnet=CometDevnet,
    price_sources=CometPriceSources,
    devnet_order=30,
    mainnet={1: {"cUSDCv3": {"comet": CUSDCV3_ETHEREUM, "base": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
                             "source": "compound-finance/comet deployments/mainnet/usdc/roots.json (comet)"}}},
)
