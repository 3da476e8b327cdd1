"""Where a Compound V2 Comptroller's oracle reads each market's price.

The oracle is ``Comptroller.oracle()``; per cToken its feed is the config getter of the oracle
in use: ``getConfig(cToken)`` → ``(underlyingAssetDecimals, priceFeed, fixedPrice)`` on mainnet's
current ``PriceOracle`` (compound-finance/compound-protocol, contracts/PriceOracle), or
``sources(cToken)`` → ``(feed, underlyingDecimals)`` on our devnet ``FeedPriceOracle``. A market
whose ``getUnderlyingPrice`` reverts (mainnet's ``ConfigNotFound``: FEI, REP, SAI, legacy WBTC)
or that has a fixed price has no feed to move: it is returned with the reason.
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from analyzer.multicall import Call, single_call
from protocols.base import PriceSource, PriceSources
from protocols.compound_v2.constants import NATIVE_ASSET


class CompoundV2PriceSources(PriceSources):
    def price_sources(self) -> list[PriceSource]:
        block = self.read_block()
        comptroller = to_checksum_address(self.deployment["comptroller"])

        def read(target: str, signature: str, *args):
            return single_call(self.w3, Call(target, signature, args), block=block)

        oracle = read(comptroller, "oracle()(address)").unwrap("Comptroller.oracle")
        sources = []
        for ctoken in read(comptroller, "getAllMarkets()(address[])").unwrap("Comptroller.getAllMarkets"):
            underlying = read(ctoken, "underlying()(address)")
            asset = to_checksum_address(underlying.value) if underlying.success else NATIVE_ASSET
            if not read(oracle, "getUnderlyingPrice(address)(uint256)", ctoken).success:
                sources.append(PriceSource(asset, None, f"oracle {oracle} reverts on getUnderlyingPrice({ctoken})"))
                continue
            config = read(oracle, "getConfig(address)((uint8,address,uint256))", ctoken)
            feed = config.value[1] if config.success else None
            if not config.success:
                devnet_source = read(oracle, "sources(address)(address,uint8)", ctoken)
                feed = devnet_source.value[0] if devnet_source.success else None
            if feed is None or int(feed, 16) == 0:
                sources.append(PriceSource(asset, None, f"oracle {oracle} has no feed for {ctoken} (fixed price or "
                                                        "an unknown oracle)"))
            else:
                sources.append(PriceSource(asset, to_checksum_address(feed)))
        return sources
