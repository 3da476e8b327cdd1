"""The market side of a replay: every venue plugin's pools on the fork, traded as one.

A replay reads the venues of every venue market of its address book (Uniswap V3 pools at each fee
tier, Uniswap V2 pairs, StableSwap pools, ...), and the engine's router splits each net flow
across all of an asset's venues (:func:`analyzer.engine.routing.route`). :class:`ForkVenues`
executes that split: one real swap per venue used, sent by the executor of the plugin whose
address book lists the pool (``Plugin.venue_executor``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from analyzer.errors import ContagionError


class ForkVenues:
    """The venue executors of a replay (one per venue market), dispatched by pool.

    ``entries``: every pool entry of every executor (dicts with ``asset``, ``quote``, ``pool``).
    ``swaps``: how many swaps were sent through them (the fork's pools are unchanged while it is).
    """

    def __init__(self, executors: Iterable[Any]):
        self.executors = list(executors)
        self.swaps = 0
        self.entries: list[dict] = []
        self._owner: dict[int, Any] = {}
        self._by_pool: dict[tuple[str, str], Any] = {}
        for executor in self.executors:
            for entry in executor.entries:
                self.entries.append(entry)
                self._owner[id(entry)] = executor
                # a StableSwap pool trades several coins: (pool, asset) names one of its entries
                self._by_pool.setdefault((entry["pool"].lower(), entry["asset"].lower()), executor)

    def _executor(self, pool: str, asset: str) -> Any:
        executor = self._by_pool.get((pool.lower(), asset.lower()))
        if executor is None:
            raise ContagionError(f"replay: no venue plugin of the address book trades {asset} in pool {pool}")
        return executor

    def move_to(self, entry: dict, target_ratio: float, trader: str) -> None:
        """Arbitrage the pool of ``entry`` to ``target_ratio`` (quote per asset) with its own plugin."""
        self.swaps += 1
        self._owner[id(entry)].move_to(entry, target_ratio, trader)

    def sell(self, asset: str, amount_raw: int, trader: str, pool: str) -> None:
        """Sell ``amount_raw`` of ``asset`` in ``pool`` (one real swap)."""
        self.swaps += 1
        self._executor(pool, asset).sell(asset, amount_raw, trader, pool=pool)

    def buy(self, asset: str, amount_raw: int, trader: str, pool: str) -> None:
        """Buy ``amount_raw`` of ``asset`` in ``pool`` (one real swap)."""
        self.swaps += 1
        self._executor(pool, asset).buy(asset, amount_raw, trader, pool=pool)
