"""Curve-style StableSwap pools: our interface-exact pool contract (fixtures/contracts/stableswap;
Curve publishes no npm package), an exact (wei) simulation of ``exchange``, a reader of the pools
of the address book, and an executor. The pools of a real deployment are listed in its address
book with their rate multipliers (no mainnet book ships yet: Curve's pools are Vyper contracts with
per-pool interfaces, read here only through the plain-pool subset the fixture implements).
"""

from __future__ import annotations

from protocols.base import Plugin
from protocols.stableswap.devnet import StableSwapDevnet
from protocols.stableswap.executor import StableSwapVenueExecutor
from protocols.stableswap.reader import StableSwapReader
from protocols.stableswap.venue import StableSwapVenue

PLUGIN = Plugin(name="stableswap", reader=StableSwapReader, devnet=StableSwapDevnet, venue_executor=StableSwapVenueExecutor,
                venue_models=(StableSwapVenue,), devnet_order=42)
