"""Uniswap V3: real pools on the devnet, a reader of pool state into ``venues``, exact swap math.

Mainnet (chain 1) address book: the core and periphery deployments listed in Uniswap's
"Ethereum Deployments" page (docs.uniswap.org/contracts/v3/reference/deployments/ethereum-deployments);
pool addresses are not typed in but derived as the factory does (CREATE2 with
PoolAddress.POOL_INIT_CODE_HASH of @uniswap/v3-periphery 1.4.4), for the largest pool of each
asset by TVL (info.uniswap.org); the reader checks each pool's tokens on the chain.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from protocols.base import Plugin
from protocols.uniswap_v3.devnet import UniswapV3Devnet
from protocols.uniswap_v3.executor import UniswapV3VenueExecutor
from protocols.uniswap_v3.reader import UniswapV3Reader
from protocols.uniswap_v3.venue import UniswapV3Venue

MAINNET_FACTORY = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
POOL_INIT_CODE_HASH = bytes.fromhex("e34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54")
MAINNET_TOKENS = {
    "WETH": "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "USDC": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    "USDT": "0xdAC17F958D2ee523a2206206994597C13D831ec7", "DAI": "0x6B175474E89094C44Da98b954EedeAC495271d0F",
    "WBTC": "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599", "wstETH": "0x7f39C581F595B53c5cb19bD0b3f8dA6c935E2Ca0",
    "LINK": "0x514910771AF9Ca656af840dff83E8264EcF986CA", "CRV": "0xD533a949740bb3306d119CC777fa900bA034cd52",
}
# (asset, quote, fee in pips): the deepest pools of each asset
MAINNET_POOLS = [("WETH", "USDC", 500), ("WETH", "USDT", 500), ("WBTC", "WETH", 3000), ("WBTC", "USDC", 3000),
                 ("wstETH", "WETH", 100), ("LINK", "WETH", 3000), ("CRV", "WETH", 10000),
                 ("USDT", "USDC", 100), ("DAI", "USDC", 100)]


def pool_address(factory: str, token_a: str, token_b: str, fee: int) -> str:
    """PoolAddress.computeAddress: CREATE2 address of the pool of (token_a, token_b, fee)."""
    token0, token1 = sorted((to_checksum_address(token_a), to_checksum_address(token_b)), key=lambda a: int(a, 16))
    salt = keccak(encode(["address", "address", "uint24"], [token0, token1, fee]))
    digest = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + POOL_INIT_CODE_HASH)
    return to_checksum_address(digest[-20:])


MAINNET = {
    "factory": MAINNET_FACTORY,
    "router": "0xE592427A0AEce92De3Edee1F18E0157C05861564",
    "position_manager": "0xC36442b4a4522E871399CD717aBC344f12D4e6E1",
    "pools": [{"name": f"{a}/{q} {fee / 1e4:g}%", "asset": MAINNET_TOKENS[a], "quote": MAINNET_TOKENS[q], "fee": fee,
               "pool": pool_address(MAINNET_FACTORY, MAINNET_TOKENS[a], MAINNET_TOKENS[q], fee)}
              for a, q, fee in MAINNET_POOLS],
    "source": "docs.uniswap.org/contracts/v3/reference/deployments/ethereum-deployments; "
              "pools derived with PoolAddress.computeAddress (v3-periphery contracts/libraries/PoolAddress.sol)",
}

PLUGIN = Plugin(name="uniswap-v3", reader=UniswapV3Reader, devnet=UniswapV3Devnet,
                venue_executor=UniswapV3VenueExecutor, venue_models=(UniswapV3Venue,), devnet_order=40, mainnet={1: MAINNET})
