"""Where Aave V3's oracle reads each reserve's price: ``AaveOracle.getSourceOfAsset(asset)``.

The oracle is the PoolAddressesProvider's ``getPriceOracle()`` (read now, as the reader does), the
reserves the Pool's ``getReservesList()``. A source is a Chainlink proxy or a CAPO adapter; the
core's price mover follows it to its root (analyzer/oracles.py).
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from analyzer.checksum import checksum
from analyzer.multicall import Call, multicall, single_call
from protocols.base import PriceSource, PriceSources


class AaveV3PriceSources(PriceSources):
    def sequencer_uptime_feed(self) -> tuple[str, int] | None:
        """``PoolAddressesProvider.getPriceOracleSentinel()`` → its ``getSequencerOracle()`` and
        ``getGracePeriod()`` (L2 markets); None where no sentinel is set (Ethereum)."""
        block = self.read_block()
        pool = to_checksum_address(self.deployment["pool"])
        provider = single_call(self.w3, Call(pool, "ADDRESSES_PROVIDER()(address)"), block=block).unwrap(
            "Pool.ADDRESSES_PROVIDER")
        sentinel = single_call(self.w3, Call(provider, "getPriceOracleSentinel()(address)"), block=block)
        if not sentinel.success or int(sentinel.value, 16) == 0:
            return None
        feed = single_call(self.w3, Call(sentinel.value, "getSequencerOracle()(address)"), block=block)
        grace = single_call(self.w3, Call(sentinel.value, "getGracePeriod()(uint256)"), block=block)
        if not (feed.success and grace.success):
            return None
        return checksum(feed.value), int(grace.value)

    def price_sources(self) -> list[PriceSource]:
        block = self.read_block()
        pool = to_checksum_address(self.deployment["pool"])
        provider = single_call(self.w3, Call(pool, "ADDRESSES_PROVIDER()(address)"), block=block).unwrap(
            "Pool.ADDRESSES_PROVIDER")
        oracle = single_call(self.w3, Call(provider, "getPriceOracle()(address)"), block=block).unwrap(
            "PoolAddressesProvider.getPriceOracle")
        reserves = single_call(self.w3, Call(pool, "getReservesList()(address[])"), block=block).unwrap(
            "Pool.getReservesList")
        sources = []
        found = multicall(self.w3, [Call(oracle, "getSourceOfAsset(address)(address)", (a,)) for a in reserves],
                          block=block)
        for asset, source in zip(reserves, found, strict=True):
            if source.success and int(source.value, 16) != 0:
                sources.append(PriceSource(checksum(asset), checksum(source.value)))
            else:
                sources.append(PriceSource(checksum(asset), None,
                                           f"AaveOracle {oracle} has no source for {asset} (fallback oracle)"))
        return sources
