"""Uniswap V4: pools of the PoolManager singleton on the devnet (real v4-core bytecode, our
unlock-callback router), a reader that finds the pools of the scanned assets from the PoolManager's
``Initialize`` events and reads their state with ``extsload``, an exact (wei) simulation (V3's swap
loop, :mod:`protocols.uniswap_v4.venue`), and an executor that swaps through the router.

Built-in books ``books/<chain>.json`` (Ethereum, Base, Arbitrum, Optimism): the PoolManager of
Uniswap's deployments page (docs.uniswap.org/contracts/v4/deployments), its deployment block as
Uniswap's own v4 subgraph starts from (Uniswap/v4-subgraph networks.json), and the chain's
stablecoins and WETH as quotes (@aave-dao/aave-address-book). The reader finds the pools from the
PoolManager's ``Initialize`` events; on a fork, the executor deploys our router and trades them.
"""

from __future__ import annotations

from pathlib import Path

from protocols.base import Plugin
from protocols.uniswap_v4.devnet import UniswapV4Devnet
from protocols.uniswap_v4.executor import UniswapV4VenueExecutor
from protocols.uniswap_v4.reader import UniswapV4Reader
from protocols.uniswap_v4.venue import UniswapV4Venue

PLUGIN = Plugin(name="uniswap-v4", reader=UniswapV4Reader, devnet=UniswapV4Devnet,
                venue_executor=UniswapV4VenueExecutor, venue_models=(UniswapV4Venue,), devnet_order=42,
                books=Path(__file__).parent / "books", market_key="pool_manager")
