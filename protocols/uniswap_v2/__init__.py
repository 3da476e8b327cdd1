"""Uniswap V2: real pairs on the devnet, a reader that finds the pairs of the scanned assets
through the factory, an exact (wei) simulation, and an executor that swaps in the pairs.

Mainnet (chain 1): the UniswapV2Factory listed in Uniswap's "V2 Deployment Addresses" page
(docs.uniswap.org/contracts/v2/reference/smart-contracts/v2-deployments); the reader looks up pairs
of the scanned assets against WETH and the USD stablecoins with ``getPair`` at the scan block.
"""

from __future__ import annotations

from protocols.base import Plugin
from protocols.uniswap_v2.devnet import UniswapV2Devnet
from protocols.uniswap_v2.executor import UniswapV2VenueExecutor
from protocols.uniswap_v2.reader import UniswapV2Reader
from protocols.uniswap_v2.venue import UniswapV2Venue

MAINNET = {
    "factory": "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f",
    # in order of preference as a quote: USDC, USDT, DAI, WETH
    "quotes": ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "0xdAC17F958D2ee523a2206206994597C13D831ec7",
               "0x6B175474E89094C44Da98b954EedeAC495271d0F", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"],
    "start_block": 10000835,
    "source": "docs.uniswap.org/contracts/v2/reference/smart-contracts/v2-deployments",
}

PLUGIN = Plugin(name="uniswap-v2", reader=UniswapV2Reader, devnet=UniswapV2Devnet,
                venue_executor=UniswapV2VenueExecutor, venue_models=(UniswapV2Venue,), devnet_order=41,
                mainnet={1: MAINNET})
