"""Morpho Blue's singleton on Ethereum and Base, with the USD feeds the reader prices loan tokens by.

Sources:
- Address: the same on both chains (CREATE2), ``0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb``:
  morpho-org/morpho-blue-deployment ``broadcast/DeployMorpho.sol/1/run-latest.json`` and
  ``broadcast/DeployMorpho.sol/8453/run-1714743705.json``.
- Deployment blocks: Base 13,977,148 (0xd5463c, the receipt of the CREATE2 transaction in the Base
  broadcast above); Ethereum 18,883,124 (``startBlock`` of the Morpho subgraph manifest and
  ``fromBlock`` of the Morpho app's deployments table; the broadcast log carries no receipts).
- USD feeds: Chainlink ``<ASSET> / USD`` proxies from ``@aave-dao/aave-address-book``
  (``ChainlinkEthereum``, ``ChainlinkBase``); token addresses from its ``AaveV3Ethereum`` /
  ``AaveV3Base`` reserves. A collateral without a feed here is priced through its market's oracle.
"""

MORPHO = "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"
SOURCE = ("morpho-org/morpho-blue-deployment broadcast/DeployMorpho.sol (address); deployment block: "
          "Base receipt 0xd5463c, Ethereum Morpho subgraph startBlock")

ETHEREUM = {
    "morpho": MORPHO, "start_block": 18_883_124, "source": SOURCE,
    "usd_feeds": {
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2": "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419",  # WETH: ETH/USD
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48": "0x8fFfFfd4AfB6115b954Bd326cbe7B4BA576818f6",  # USDC
        "0xdAC17F958D2ee523a2206206994597C13D831ec7": "0x3E7d1eAB13ad0104d2750B8863b489D65364e32D",  # USDT
        "0x6B175474E89094C44Da98b954EedeAC495271d0F": "0xAed0c38402a5d19df6E4c03F4E2DceD6e29c1ee9",  # DAI
        "0xcbB7C0000aB88B473b1f5aFd9ef808440eed33Bf": "0x2665701293fCbEB223D11A08D826563EDcCE423A",  # cbBTC
    },
}

BASE = {
    "morpho": MORPHO, "start_block": 13_977_148, "source": SOURCE,
    "usd_feeds": {
        "0x4200000000000000000000000000000000000006": "0x71041dddad3595F9CEd3DcCFBe3D1F4b0a16Bb70",  # WETH: ETH/USD
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913": "0x7e860098F58bBFC8648a4311b374B1D669a2bc6B",  # USDC
        "0xcbB7C0000aB88B473b1f5aFd9ef808440eed33Bf": "0x07DA0E54543a844a80ABE69c8A12F22B3aA59f9D",  # cbBTC
    },
}

MAINNET = {1: ETHEREUM, 8453: BASE}
