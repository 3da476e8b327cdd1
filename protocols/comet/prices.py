"""Where a Comet reads each asset's price: ``baseTokenPriceFeed()`` for the base token,
``getAssetInfo(i).priceFeed`` for each collateral (Comet calls ``latestRoundData`` on it).
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from analyzer.checksum import checksum
from analyzer.multicall import Call, multicall, single_call
from protocols.base import PriceSource, PriceSources

ASSET_INFO = "getAssetInfo(uint8)((uint8,address,address,uint64,uint64,uint64,uint64,uint128))"


class CometPriceSources(PriceSources):
    def price_sources(self) -> list[PriceSource]:
        block = self.read_block()
        comet = to_checksum_address(self.deployment["comet"])

        def read(signature: str, *args):
            return single_call(self.w3, Call(comet, signature, args), block=block).unwrap(
                f"Comet.{signature.split('(')[0]}")

        sources = [PriceSource(checksum(read("baseToken()(address)")),
                               checksum(read("baseTokenPriceFeed()(address)")))]
        infos = multicall(self.w3, [Call(comet, ASSET_INFO, (i,)) for i in range(int(read("numAssets()(uint8)")))],
                          block=block)
        for info in (result.unwrap("Comet.getAssetInfo") for result in infos):
            sources.append(PriceSource(checksum(info[1]), checksum(info[2])))
        return sources
