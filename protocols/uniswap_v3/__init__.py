"""Uniswap V3: real pools on the devnet, a reader of pool state into ``venues``, exact swap math.

Built-in book ``books/ethereum.json``: the core and periphery deployments listed in Uniswap's
"Ethereum Deployments" page (docs.uniswap.org/contracts/v3/reference/deployments/ethereum-deployments);
pool addresses derived as the factory does (:func:`pool_address`, CREATE2 with
PoolAddress.POOL_INIT_CODE_HASH of @uniswap/v3-periphery 1.4.4; a test recomputes each), for the
largest pool of each asset by TVL (info.uniswap.org); the reader checks each pool's tokens on the chain.
"""

from __future__ import annotations

from pathlib import Path

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from protocols.base import Plugin
from protocols.uniswap_v3.devnet import UniswapV3Devnet
from protocols.uniswap_v3.executor import UniswapV3VenueExecutor
from protocols.uniswap_v3.reader import UniswapV3Reader
from protocols.uniswap_v3.venue import UniswapV3Venue

POOL_INIT_CODE_HASH = bytes.fromhex("e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")


def pool_address(factory: str, token_a: str, token_b: str, fee: int) -> str:
    """PoolAddress.computeAddress: CREATE2 address of the pool of (token_a, token_b, fee)."""
    token0, token1 = sorted((to_checksum_address(token_a), to_checksum_address(token_b)), key=lambda a: int(a, 16))
    salt = keccak(encode(["address", "address", "uint24"], [token0, token1, fee]))
    digest = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + POOL_INIT_CODE_HASH)
    return to_checksum_address(digest[-20:])


PLUGIN = Plugin(name="uniswap-v3", reader=UniswapV3Reader, devnet=UniswapV3Devnet,
                venue_executor=UniswapV3VenueExecutor, venue_models=(UniswapV3Venue,), devnet_order=40,
                books=Path(__file__).parent / "books", market_key="factory")
