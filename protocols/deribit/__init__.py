"""Deribit options: open interest and mark IV from its public API (``public/get_instruments`` and
``public/get_book_summary_by_currency``, https://docs.deribit.com), for the dealer gamma map and
the dealers' hedging in the cascade. No chain part: Deribit is an off-chain venue."""

from protocols.base import Plugin
from protocols.deribit.source import DeribitSource

PLUGIN = Plugin(name="deribit", options_source=DeribitSource, devnet_order=90)
