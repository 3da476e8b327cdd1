"""The market of a fork as the engine sees it, and the shock: pools moved by real swaps, then oracles."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from web3 import Web3

from analyzer.cheats import mine
from analyzer.model import Snapshot
from analyzer.replay.venues import ForkVenues
from analyzer.scenarios import ShockScenario
from protocols.base import Plugin

if TYPE_CHECKING:
    from analyzer.replay.fork import ReplayFork


def market_view(snapshot: Snapshot, numeraire_usd: dict[str, float],
                centralised: dict | None = None) -> tuple[dict, dict[str, float]]:
    """The engine's own view of the venues in ``snapshot``: AssetVenues by asset, and USD prices.

    Prices are :meth:`AssetVenues.mid_price` (depth-weighted across an asset's venues), with each
    venue's quote token valued at its own mid (stablecoins at ``numeraire_usd``): so the replay
    prices assets exactly as the engine does, not by a second definition. ``centralised``: the
    off-chain CEX venue of an asset (``cex_arbitrage``), appended after its pools as the engine does.
    """
    from analyzer.engine.impact import build_venues

    venues = build_venues(snapshot)
    for asset, venue in (centralised or {}).items():
        if asset in venues:
            venues[asset].venues.append(venue)
    prices = dict(numeraire_usd)
    for _ in range(3):   # quotes first (WETH), then what they quote (wstETH/WETH)
        for asset, asset_venues in venues.items():
            if asset in numeraire_usd:
                continue
            asset_venues.set_quote_prices(prices)
            prices[asset] = asset_venues.mid_price()
    return venues, prices


@dataclass
class ForkMarket:
    """The fork's venues and their executors (every venue market, :class:`ForkVenues`).

    The numeraire: quote tokens that are not themselves traded on a venue (USDC), at their
    snapshot price; every other asset is priced from its venues, as in the engine.
    """

    read: Callable[..., Snapshot]
    pools: ForkVenues | None
    venue_plugins: list[Plugin]
    market_before: dict[str, float]         # the snapshot's USD prices before the shock
    stable_usd: dict[str, float]            # the numeraire
    mid_pre: dict[str, float]               # the venues' mids before the shock
    decimals: dict[str, int]
    symbols: dict[str, str]
    # the CEX venue beside each asset's pools (scenario ``cex_arbitrage``): off-chain models, kept
    # from round to round, that the keepers' routed sales and the arbitrageurs trade
    centralised: dict = field(default_factory=dict)
    # the last read of the venues, with ``pools.swaps`` when it was made
    last_read: tuple[int, Snapshot] | None = None

    @classmethod
    def open(cls, w3: Web3, chain_markets: Sequence[Any], read: Callable[..., Snapshot],
             before: Snapshot) -> ForkMarket:
        symbols = before.symbol_of()
        decimals = dict(zip(before.assets["address"], before.assets["decimals"].astype(int), strict=True))
        # every venue market (pools of every kind), each traded by its own plugin's executor
        venue_markets = [m for m in chain_markets if m.plugin.venue_executor is not None]
        pools = ForkVenues(m.plugin.venue_executor(w3, m.deployment, decimals, symbols) for m in venue_markets) \
            if venue_markets else None
        venue_plugins = list({id(m.plugin): m.plugin for m in venue_markets}.values())
        venue_assets, venue_quotes = set(before.venues["asset"]), set(before.venues["quote_asset"])
        market_before = before.price_of()
        stable_usd = {a: p for a, p in market_before.items() if a in venue_quotes - venue_assets}
        mid_pre = market_view(read(None, venue_plugins), stable_usd)[1] if pools is not None else {}
        return cls(read, pools, venue_plugins, market_before, stable_usd, mid_pre, decimals, symbols)

    def venues_read(self, fresh: bool = False) -> Snapshot:
        """A read of the fork's venues. The replay's pools move only by its own swaps (the shock,
        the keepers' trades, the re-hedge, the arbitrage: ``pools.swaps``); oracle moves and mined
        blocks touch no pool, so until the next swap the last read is what a new one would answer
        (a pool's storage unchanged). ``fresh``: read again regardless (after liquidations)."""
        assert self.pools is not None
        if fresh or self.last_read is None or self.last_read[0] != self.pools.swaps:
            self.last_read = (self.pools.swaps, self.read(None, self.venue_plugins))
        return self.last_read[1]

    def now(self, fresh: bool = False) -> tuple[dict, dict[str, float]]:
        """The fork's venues (AssetVenues by asset), and USD prices as the engine moves them: the
        snapshot's price times the venues' mid over their mid before the shock ({} without pools).
        Built anew from :meth:`venues_read` on every call (the venue models are traded on)."""
        if self.pools is None:
            return {}, {}
        venues, mids = market_view(self.venues_read(fresh), self.stable_usd, self.centralised)
        return venues, {a: self.market_before[a] * mid / self.mid_pre[a] if self.mid_pre.get(a, 0) > 0 else mid
                        for a, mid in mids.items()}


def follows_venue(scenario: ShockScenario, symbols: dict[str, str], asset: str) -> bool:
    """Whether the scenario's oracle of ``asset`` follows its venue (else it is exogenous, a CEX)."""
    return scenario.oracle_sources.get(symbols.get(asset, ""), scenario.oracle_sources.get(asset, "venue")) \
        == "venue"


def apply_shock(fork: ReplayFork) -> set[str]:
    """Move the fork to the shock: pools first (arbitrage), then the oracles; mine. Returns the
    assets whose oracles are exogenous (they never follow the pools afterwards).

    A CEX (price) shock moves every oracle; a DEX-only (venue) shock moves only the oracles that
    follow the venue. As in the engine, an oracle that follows the venue reads the market after the
    move: assets quoted in a shocked asset (wstETH in WETH) move with it.
    """
    scenario, market, before = fork.scenario, fork.market, fork.before
    targets, oracle_targets = {}, {}
    for shocks, exogenous in ((scenario.price_shocks, True), (scenario.venue_shocks, False)):
        for name, move in shocks.items():
            asset = before.address_of(name)
            targets[asset] = market.market_before[asset] * (1.0 + move)
            if exogenous or follows_venue(scenario, market.symbols, asset):
                oracle_targets[asset] = targets[asset]
    if market.pools is not None:
        usd_after = {**market.market_before, **targets}
        for entry in market.pools.entries:
            # the shocked asset's own pools; a pool that only quotes in it (wstETH/WETH) is
            # left to arbitrage, as in the engine
            if entry["asset"] in targets:
                market.pools.move_to(entry, usd_after[entry["asset"]] / usd_after[entry["quote"]], fork.trader)
        if scenario.cex_arbitrage and scenario.price_impact:
            from analyzer.engine.prepare import add_centralised_venues

            # as the engine: each asset with pools gets its CEX at its pools' mid after the shock
            venues = market.now()[0]
            add_centralised_venues(venues, {a: market.symbols.get(a, a) for a in venues})
            market.centralised = {a: v.venues[-1] for a, v in venues.items() if v.venues[-1].centralised}
        oracle_targets |= {a: p for a, p in market.now()[1].items()
                           if follows_venue(scenario, market.symbols, a) and a not in market.stable_usd}
    fork.oracles.move(oracle_targets)
    mine(fork.w3)
    fork.oracles.refresh()
    fork.oracles.check_sequencers()
    return {a for a in market.market_before if not follows_venue(scenario, market.symbols, a)}
