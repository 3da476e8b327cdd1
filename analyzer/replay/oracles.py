"""The oracle side of a replay: every protocol's prices moved at their root feeds, on any fork.

At the fork's start each protocol that declares its price sources (``Plugin.price_sources``) has
them resolved to root feeds (:mod:`analyzer.oracles`); a market whose oracle cannot price it (it
reverts, or has a fixed price) is named in ``unpriced`` and left out of every move. A move sets
each root once for all protocols; derived prices (a ratio adapter's) follow their base. A
protocol without declared sources (an option market's own spot) is moved by its executor's
``set_price``. After each mined round the roots taken over get a new round at the fork's time,
so staleness checks see current feeds. An L2 protocol's sequencer-uptime feed (declared by its
price sources) is never moved; while it says down, or up within its grace period
(:meth:`ForkOracles.sequencer_reason`), the keepers liquidate only the accounts the protocol's own
rule still permits (``Rules.sentinel_permits``; Aave's sentinel lets HF < 0.95 through).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3

from analyzer.oracles import FOLLOW_TOLERANCE, FeedPath, PriceMover, protocol_paths, sequencer_down


class ForkOracles:
    """``lenders``: (plugin, deployment, executor, assets it prices) per protocol of the replay."""

    def __init__(self, w3: Web3, lenders: Iterable[tuple[Any, dict, Any, set[str]]],
                 progress: Callable[[str], None] = lambda message: None):
        self.mover = PriceMover(w3)
        self.paths: list[FeedPath] = []
        self.by_executor: list[tuple[Any, set[str]]] = []
        self.unpriced: list[dict[str, str]] = []
        self.notes: list[str] = []
        self.sequencers: dict[str, tuple[str, int]] = {}     # protocol -> (uptime feed, grace seconds)
        self.progress = progress
        for plugin, deployment, executor, assets in lenders:
            if plugin.price_sources is None:
                self.by_executor.append((executor, assets))
                continue
            declared = plugin.price_sources(w3, deployment)
            sources = declared.price_sources()
            sequencer = declared.sequencer_uptime_feed()
            if sequencer is not None:
                self.sequencers[plugin.name] = sequencer
            paths, unpriced = protocol_paths(w3, plugin.name, sources)
            self.paths += paths
            for asset, reason in sorted(unpriced.items()):
                self.unpriced.append({"protocol": plugin.name, "asset": asset, "reason": reason})
                progress(f"replay: warning: {plugin.name} cannot price {asset} ({reason}); left out of the shock")
        self.roots = sorted({path.root for path in self.paths})

    def move(self, prices_usd: dict[str, float]) -> None:
        """Every protocol's oracle to ``prices_usd`` (USD by asset address), where its stack allows."""
        priced = {path.asset for path in self.paths}
        report = self.mover.move(self.paths, {a: p for a, p in prices_usd.items() if to_checksum_address(a) in priced})
        off_target = [key for key, usd in report.followed.items()
                      if abs(usd / prices_usd.get(key[1], usd) - 1.0) > FOLLOW_TOLERANCE]
        for note in report.conflicts + [f"{protocol} {asset}: a derived price (a ratio × its base feed): it "
                                        "follows its base, not a target of its own"
                                        for protocol, asset in report.not_moved + off_target]:
            if note not in self.notes:
                self.notes.append(note)
                self.progress(f"replay: {note}")
        for executor, assets in self.by_executor:
            for asset, price in prices_usd.items():
                if asset in assets:
                    executor.set_price(asset, price)

    def refresh(self) -> None:
        self.mover.refresh()

    def sequencer_reason(self, protocol: str) -> str | None:
        """Why ``protocol``'s L2 sequencer-uptime feed restricts liquidations now (down, or up within
        its grace period: :func:`analyzer.oracles.sequencer_down`); None when it does not or there is none."""
        if protocol not in self.sequencers:
            return None
        return sequencer_down(self.mover.w3, *self.sequencers[protocol])

    def check_sequencers(self) -> None:
        """Say (progress and ``notes``) which protocols' sequencer checks restrict liquidations now;
        the keepers then send only what each protocol's rule permits (``Rules.sentinel_permits``)."""
        for protocol in self.sequencers:
            reason = self.sequencer_reason(protocol)
            note = f"{protocol}: liquidations restricted to what its sequencer check permits: {reason}"
            if reason is not None and note not in self.notes:
                self.notes.append(note)
                self.progress(f"replay: {note}")
