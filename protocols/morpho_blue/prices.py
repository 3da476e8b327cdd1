"""Where Morpho Blue's market oracles read each asset's USD price: the address book's ``usd_feeds``
(token → Chainlink-style USD feed, the feeds the markets' oracles combine). A vault share has no
feed of its own (its oracle reads the vault's ``convertToAssets``) and is not listed.
"""

from __future__ import annotations

from eth_utils import to_checksum_address

from protocols.base import PriceSource, PriceSources


class MorphoBluePriceSources(PriceSources):
    def price_sources(self) -> list[PriceSource]:
        return [PriceSource(to_checksum_address(token), to_checksum_address(feed))
                for token, feed in (self.deployment.get("usd_feeds") or {}).items()]
