"""Uniswap V4: pools of the PoolManager singleton on the devnet (real v4-core bytecode, our
unlock-callback router), a reader that finds the pools of the scanned assets from the PoolManager's
``Initialize`` events and reads their state with ``extsload``, an exact (wei) simulation (V3's swap
loop, :mod:`protocols.uniswap_v4.venue`), and an executor that swaps through the router.
"""

from __future__ import annotations

from protocols.base import Plugin
from protocols.uniswap_v4.devnet import UniswapV4Devnet
from protocols.uniswap_v4.executor import UniswapV4VenueExecutor
from protocols.uniswap_v4.reader import UniswapV4Reader
from protocols.uniswap_v4.venue import UniswapV4Venue

PLUGIN = Plugin(name="uniswap-v4", reader=UniswapV4Reader, devnet=UniswapV4Devnet,
                venue_executor=UniswapV4VenueExecutor, venue_models=(UniswapV4Venue,), devnet_order=42,
                market_key="pool_manager")
