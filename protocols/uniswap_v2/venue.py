"""The Uniswap V2 venue model: a pair simulated in wei (:mod:`protocols.uniswap_v2.swap_math`), so a
simulated trade returns what the pair pays for it on the chain.

Its ``venues.params`` (written by :mod:`protocols.uniswap_v2.reader`; reserves as decimal strings):
``token0``, ``token1``, ``decimals0``, ``decimals1``, ``reserve0``, ``reserve1``.
"""

from __future__ import annotations

import math

from analyzer.engine.venues import TradeResult, VenueModel
from analyzer.errors import ContagionError
from protocols.uniswap_v2 import swap_math as v2


class UniswapV2Venue(VenueModel):
    """A Uniswap V2 pair. A sale of whole tokens is truncated to wei and paid
    ``getAmountOut``; a purchase pays ``getAmountIn`` (what a router charges) and one that would take
    the pair's whole reserve raises ContagionError, leaving the state unchanged."""

    model = "uniswap_v2"

    def __init__(self, asset: str, quote: str, params: dict, quote_price_usd: float = 1.0, venue: str = ""):
        super().__init__(asset, quote, quote_price_usd, venue)
        where = f"venue {venue or asset} (uniswap_v2)"
        try:
            self.token0, self.token1 = str(params["token0"]), str(params["token1"])
            self.decimals0, self.decimals1 = int(params["decimals0"]), int(params["decimals1"])
            reserve0, reserve1 = int(params["reserve0"]), int(params["reserve1"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ContagionError(f"{where}: params need token0, token1, decimals0, decimals1, reserve0, reserve1 "
                                 f"({exc!r})") from None
        self.orient_pair(self.token0, self.token1, self.decimals0, self.decimals1, where)
        if not (0 < reserve0 <= v2.MAX_RESERVE and 0 < reserve1 <= v2.MAX_RESERVE):
            raise ContagionError(f"{where}: reserves must be positive uint112, got {reserve0}, {reserve1}")
        self.reserve_asset, self.reserve_quote = (reserve0, reserve1) if self.asset_is_token0 else (reserve1, reserve0)

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, dict(params), quote_price_usd, venue)

    @property
    def reserves(self) -> tuple[int, int]:
        """(reserve0, reserve1) in wei, the pair's ``getReserves`` order."""
        return (self.reserve_asset, self.reserve_quote) if self.asset_is_token0 else (self.reserve_quote,
                                                                                     self.reserve_asset)

    @property
    def fee_fraction(self) -> float:
        return 1.0 - v2.FEE_KEEP / v2.FEE_BASE

    def mid_price(self) -> float:
        quote_per_asset = (self.reserve_quote / 10 ** self.quote_decimals) / (self.reserve_asset / 10 ** self.asset_decimals)
        return quote_per_asset * self.quote_price_usd

    def swap_raw(self, sell: bool, amount_raw: int) -> tuple[int, int]:
        """(asset wei, quote wei) moved by selling exactly ``amount_raw`` asset wei (``sell``) or
        buying exactly that many; updates the reserves. Raises v2.SwapMathError as the pair would."""
        if sell:
            out = v2.get_amount_out(amount_raw, self.reserve_asset, self.reserve_quote)
            self.reserve_asset, self.reserve_quote = self.reserve_asset + amount_raw, self.reserve_quote - out
            return amount_raw, out
        paid = v2.get_amount_in(amount_raw, self.reserve_quote, self.reserve_asset)
        self.reserve_asset, self.reserve_quote = self.reserve_asset - amount_raw, self.reserve_quote + paid
        return amount_raw, paid

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        raw = int(abs(asset_amount) * 10 ** self.asset_decimals)
        if raw == 0:
            return TradeResult(0.0, 0.0, before, before)
        sell = asset_amount > 0
        try:
            asset_raw, quote_raw = self.swap_raw(sell, raw)
        except v2.SwapMathError as exc:
            raise ContagionError(f"venue {self.venue or self.asset}: cannot {'sell' if sell else 'buy'} "
                                 f"{abs(asset_amount):g} ({exc}; the pair holds "
                                 f"{self.reserve_asset / 10 ** self.asset_decimals:g} of the asset)") from None
        asset_units, quote_units = asset_raw / 10 ** self.asset_decimals, quote_raw / 10 ** self.quote_decimals
        return self._result(asset_units, quote_units, before) if sell else self._result(quote_units, asset_units, before)

    def depth(self, fraction: float, sell: bool = True) -> float:
        # x·y = k: the price y/x moves by a factor r when x grows by 1/sqrt(r) (fee ignored)
        ratio = 1.0 - fraction if sell else 1.0 + fraction
        if ratio <= 0:
            return math.inf
        return abs(1.0 / math.sqrt(ratio) - 1.0) * self.reserve_asset / 10 ** self.asset_decimals

    def copy(self) -> UniswapV2Venue:
        clone = object.__new__(UniswapV2Venue)
        clone.__dict__.update(self.__dict__)
        return clone
