"""Uniswap V2: real pairs on the devnet, a reader that finds the pairs of the scanned assets
through the factory, an exact (wei) simulation, and an executor that swaps in the pairs.

Built-in book ``books/ethereum.json`` (chain 1): the UniswapV2Factory listed in Uniswap's "V2 Deployment Addresses" page
(docs.uniswap.org/contracts/v2/reference/smart-contracts/v2-deployments); the reader looks up pairs
of the scanned assets against the book's ``quotes`` (USDC, USDT, DAI, WETH, in order of preference)
with ``getPair`` at the scan block.
"""

from __future__ import annotations

from pathlib import Path

from protocols.base import Plugin
from protocols.uniswap_v2.devnet import UniswapV2Devnet
from protocols.uniswap_v2.executor import UniswapV2VenueExecutor
from protocols.uniswap_v2.reader import UniswapV2Reader
from protocols.uniswap_v2.venue import UniswapV2Venue

PLUGIN = Plugin(name="uniswap-v2", reader=UniswapV2Reader, devnet=UniswapV2Devnet,
                venue_executor=UniswapV2VenueExecutor, venue_models=(UniswapV2Venue,), devnet_order=41,
                books=Path(__file__).parent / "books", market_key="factory")
