"""Bybit options: open interest and mark IV from its public v5 market API
(``/v5/market/instruments-info`` and ``/v5/market/tickers`` with ``category=option``,
https://bybit-exchange.github.io/docs/v5/market/tickers). No chain part."""

from protocols.base import Plugin
from protocols.bybit.source import BybitSource

PLUGIN = Plugin(name="bybit", options_source=BybitSource, devnet_order=90)
