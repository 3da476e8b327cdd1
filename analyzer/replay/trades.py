"""The keepers' trades after a round: seized collateral sold, repaid debt bought back, options re-hedged.

As the engine trades them: a seized receipt token (aWETH) is redeemed and its underlying sold,
converted at the snapshot's price ratio (1:1 for aTokens); seized ETH is wrapped and sold as
WETH; sales and purchases are netted per asset and split across the asset's pools by the
engine's router (:meth:`AssetVenues.split`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analyzer.model import Snapshot, receipt_claim

if TYPE_CHECKING:
    from analyzer.replay.fork import ReplayFork


@dataclass
class ReceiptSales:
    """Which asset each asset is sold as (its own, or a receipt's underlying) and at what ratio."""

    assets: list[str]                  # the snapshot's asset addresses, in its order
    underlying: dict[str, str]         # receipt token (or native ETH) -> what is sold for it
    sale_asset: np.ndarray             # (A,) index of the asset sold for each asset
    sale_ratio: np.ndarray             # (A,) units of the sold asset per unit, at the snapshot's prices

    @property
    def index(self) -> dict[str, int]:
        """Asset address -> its column."""
        return self._index

    def __post_init__(self) -> None:
        self._index = {a: i for i, a in enumerate(self.assets)}

    @classmethod
    def of(cls, before: Snapshot) -> ReceiptSales:
        market_before = before.price_of()
        assets = [str(a) for a in before.assets["address"]]
        claims = {a: receipt_claim(o) for a, o in zip(before.assets["address"], before.assets["receipt_of"],
                                                      strict=True)}
        underlying = {a: c.underlying for a, c in claims.items() if c is not None and c.underlying in market_before}
        underlying |= before.wrapped_native_of()
        index = {a: i for i, a in enumerate(assets)}
        sale_asset = np.array([index.get(underlying.get(a, a), i) for i, a in enumerate(assets)])
        sale_ratio = np.array([market_before[a] / market_before[assets[sale_asset[i]]]
                               if market_before[assets[sale_asset[i]]] > 0 else 0.0
                               for i, a in enumerate(assets)])
        return cls(assets, underlying, sale_asset, sale_ratio)

    def price(self, mids: dict[str, float], fallback: dict[str, float]) -> np.ndarray:
        """(A,) USD market prices: ``mids`` (else ``fallback``), receipts at their underlying's price."""
        price = np.array([mids.get(a, fallback.get(a, 0.0)) for a in self.assets], dtype=float)
        return np.where(self.sale_asset != np.arange(len(self.assets)), self.sale_ratio * price[self.sale_asset],
                        price)

    def sold(self, received: dict[str, int], decimals: dict[str, int], market_before: dict[str, float],
             sell_through: float) -> dict[str, int]:
        """Raw units sold per asset for what the keepers ``received`` (raw units per asset seized)."""
        sold: dict[str, int] = {}
        for asset, raw in sorted(received.items()):
            underlying = self.underlying.get(asset, asset)
            units = raw / 10 ** decimals[asset] * market_before[asset] / market_before[underlying]
            sold[underlying] = sold.get(underlying, 0) + int(units * 10 ** decimals[underlying] * sell_through)
        return sold


def trade(fork: ReplayFork, venues: dict, sold: dict[str, int], repaid: dict[str, int],
          hedge: np.ndarray) -> list[dict]:
    """Send the round's net trades through the fork's pools: keepers' sales minus their purchases,
    plus the option pools' re-hedge (``hedge`` (A,) asset units), split as the engine's router splits:
    one real swap per venue used. Returns the swaps (asset, venue, model, quote, signed units)."""
    pools, decimals = fork.market.pools, fork.decimals
    assert pools is not None
    net = {a: sold.get(a, 0) - repaid.get(a, 0) for a in sorted(set(sold) | set(repaid))}
    for a in np.flatnonzero(hedge):
        asset = fork.asset_list[a]
        net[asset] = net.get(asset, 0) + int(hedge[a] * 10 ** decimals[asset])
    routed: list[dict] = []
    for asset, raw in net.items():
        if asset not in venues or raw == 0:
            continue
        venues[asset].swap_gas_usd = fork.scenario.swap_gas_usd
        split = venues[asset].split(raw / 10 ** decimals[asset])   # the engine's router
        swaps = []
        for venue, units in zip(venues[asset].venues, split, strict=True):
            if units != 0 and venue.centralised:     # the CEX's share: its off-chain model trades it
                venue.trade(float(units))
            elif units != 0:
                (pools.sell if raw > 0 else pools.buy)(asset, int(abs(units) * 10 ** decimals[asset]),
                                                       fork.trader, pool=venue.venue)
                swaps.append({"asset": asset, "venue": venue.venue, "model": venue.model, "quote": venue.quote,
                              "units": float(units)})
        if len(swaps) > 1:
            symbol = fork.market.symbols.get
            fork.progress(f"replay: {symbol(asset, asset)} routed as " + ", ".join(
                f"{s['units']:,.2f} on {s['model']} {s['venue'][:10]} (vs {symbol(s['quote'], s['quote'])})"
                for s in swaps))
        routed += swaps
    return routed


def arbitrage_on_fork(fork: ReplayFork) -> list[dict]:
    """The arbitrageurs after a round's trades (scenario ``cex_arbitrage``), as the engine's
    :func:`analyzer.engine.arbitrage.arbitrage`: computed on a fresh read of the fork's pools and the
    CEX models, in the engine's order of assets; each pool leg sent as one real swap, each CEX leg
    traded on its off-chain model. Returns the pool swaps (asset, venue, model, quote, signed units,
    ``arbitrage``)."""
    from analyzer.engine.arbitrage import arbitrage

    pools, decimals = fork.market.pools, fork.decimals
    assert pools is not None
    venues = fork.market.now(fresh=True)[0]     # after the round's liquidations and trades
    swaps: list[dict] = []
    for asset in fork.asset_list:
        if asset not in venues:
            continue
        for index, units in arbitrage(venues[asset]):
            venue = venues[asset].venues[index]
            (pools.sell if units > 0 else pools.buy)(asset, int(abs(units) * 10 ** decimals[asset]), fork.trader,
                                                     pool=venue.venue)
            swaps.append({"asset": asset, "venue": venue.venue, "model": venue.model, "quote": venue.quote,
                          "units": float(units), "arbitrage": True})
    return swaps
