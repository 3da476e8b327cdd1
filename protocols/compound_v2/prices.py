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

from analyzer.checksum import checksum
from analyzer.multicall import Call, multicall, single_call
from protocols.base import PriceSource, PriceSources
from protocols.compound_v2.constants import NATIVE_ASSET


class CompoundV2PriceSources(PriceSources):
    def price_sources(self) -> list[PriceSource]:
        block = self.read_block()
        comptroller = to_checksum_address(self.deployment["comptroller"])

        def read(target: str, signature: str, *args):
            return single_call(self.w3, Call(target, signature, args), block=block)

        oracle = read(comptroller, "oracle()(address)").unwrap("Comptroller.oracle")
        ctokens = read(comptroller, "getAllMarkets()(address[])").unwrap("Comptroller.getAllMarkets")
        reads = ("underlying()(address)", "getUnderlyingPrice(address)(uint256)",
                 "getConfig(address)((uint8,address,uint256))", "sources(address)(address,uint8)")
        answers = multicall(self.w3, [Call(c, reads[0]) if k == 0 else Call(oracle, reads[k], (c,))
                                      for c in ctokens for k in range(len(reads))], block=block)
        sources = []
        for i, ctoken in enumerate(ctokens):
            underlying, price, config, devnet_source = answers[len(reads) * i:len(reads) * (i + 1)]
            asset = checksum(underlying.value) if underlying.success else NATIVE_ASSET
            if not price.success:
                sources.append(PriceSource(asset, None, f"oracle {oracle} reverts on getUnderlyingPrice({ctoken})"))
                continue
            feed = config.value[1] if config.success else None
            if not config.success:
                feed = devnet_source.value[0] if devnet_source.success else None
            if feed is None or int(feed, 16) == 0:
                sources.append(PriceSource(asset, None, f"oracle {oracle} has no feed for {ctoken} (fixed price or "
                                                        "an unknown oracle)"))
            else:
                sources.append(PriceSource(asset, checksum(feed)))
        return sources
