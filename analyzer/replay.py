"""Replay: run a shock scenario for real on a fresh anvil fork, with real liquidations and swaps.

The engine's claim is tested against the chain itself (DESIGN.md, "Proving it: replay"):

1. fork the source chain at its current block (the source is only read: its block number and
   state root are checked unchanged at the end);
2. shock: move every Uniswap V3 pool of a shocked asset to the shocked price with real swaps
   (``sqrtPriceLimitX96`` = the target), and set every protocol's oracle to it at the root feeds
   (:mod:`analyzer.replay_oracles`);
3. rounds: read the fork with the protocol readers; for every account a protocol's own rule calls
   liquidatable, send the real liquidation with a keeper (an anvil account funded by cheats),
   choosing the debt and collateral assets the rule's keeper step chooses; repeat while any is
   left at this round's prices; sell what the keeper received through the real pools, buy back
   the debt it repaid; set every oracle to the new pool prices; mine;
4. until nothing is liquidatable or the round limit.

What each round did is kept in :class:`ReplayRound`; :func:`analyzer.fidelity.compare` sets it
beside the engine's cascade.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.books import deployments_for
from analyzer.chain import Anvil, redact_url, require_anvil
from analyzer.cheats import mine, state_root
from analyzer.engine.keeper import keeper_take
from analyzer.engine.market import SlippageCurve
from analyzer.errors import ContagionError
from analyzer.model import Snapshot, receipt_claim
from analyzer.replay_oracles import ForkOracles
from analyzer.scan import scan
from analyzer.scenarios import ShockScenario
from protocols import plugins as registered_plugins
from protocols.base import OptionExecutor, OptionMarginRules, PartialCollateralExecutor, Plugin


@dataclass
class ReplayLiquidation:
    round: int
    protocol: str
    account: str
    debt_asset: str
    collateral_asset: str
    repaid_usd: float
    seized_usd: float
    tx_hash: str


@dataclass
class ReplayRound:
    round: int
    prices_usd: dict[str, float]                       # oracle prices the round liquidated at
    liquidations: list[ReplayLiquidation] = field(default_factory=list)
    pool_prices_after: dict[str, float] = field(default_factory=dict)
    sold_raw: dict[str, int] = field(default_factory=dict)      # collateral the keeper sold
    bought_raw: dict[str, int] = field(default_factory=dict)    # debt assets bought back
    hedge_units: dict[str, float] = field(default_factory=dict)  # option pools' hedge sales (> 0) / buys


@dataclass
class ReplayResult:
    source_block: int
    fork_block_end: int
    rounds: list[ReplayRound]
    reached_fixed_point: bool
    liquidated_usd: dict[str, float]                   # per protocol: debt repaid, oracle USD
    bad_debt_usd: dict[str, float]                     # per protocol, at final oracle prices
    final_prices: dict[str, float]                     # by asset address: final pool (market) price
    accounts_liquidated: dict[str, list[str]]          # per protocol
    source_unchanged: bool
    snapshot_before: Snapshot | None = None
    unpriced_markets: list[dict[str, str]] = field(default_factory=list)   # oracle reverts: left out
    oracle_notes: list[str] = field(default_factory=list)                   # derived prices, conflicts
    seconds_per_round: float = 0.0     # the fork's time from the snapshot to the end, per round
    blocks_per_round: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source_block": self.source_block, "fork_block_end": self.fork_block_end,
            "reached_fixed_point": self.reached_fixed_point, "source_unchanged": self.source_unchanged,
            "liquidated_usd": self.liquidated_usd, "bad_debt_usd": self.bad_debt_usd,
            "final_prices": self.final_prices, "accounts_liquidated": self.accounts_liquidated,
            "unpriced_markets": self.unpriced_markets, "oracle_notes": self.oracle_notes,
            "seconds_per_round": self.seconds_per_round, "blocks_per_round": self.blocks_per_round,
            "rounds": [{"round": r.round, "prices_usd": r.prices_usd, "pool_prices_after": r.pool_prices_after,
                        "sold_raw": {a: str(v) for a, v in r.sold_raw.items()},
                        "bought_raw": {a: str(v) for a, v in r.bought_raw.items()}, "hedge_units": r.hedge_units,
                        "liquidations": [vars(x) for x in r.liquidations]} for r in self.rounds],
        }


# --- the replay ----------------------------------------------------------------------------------

def oracle_prices(snapshot: Snapshot, protocol: str, assets: np.ndarray) -> np.ndarray:
    """The protocol's own oracle price for each asset column of one of its books."""
    markets = snapshot.markets[snapshot.markets["protocol"] == protocol]
    by_asset = dict(zip(markets["asset"], markets["oracle_price_usd"], strict=True))
    fallback = snapshot.price_of()
    return np.array([by_asset.get(a, fallback.get(a, np.nan)) for a in assets], dtype=float)


@dataclass
class _Lender:
    """A protocol's rule and one executor per market of the book (keyed by the snapshot's market)."""

    plugin: Plugin
    rules: Any
    executors: dict[str, Any]
    assets: set[str]

    @property
    def executor(self) -> Any:
        """The executor of a protocol with one market (option markets)."""
        return next(iter(self.executors.values()))

    def executor_for(self, market: str) -> Any:
        """The executor of the snapshot market ``market`` (its main contract address)."""
        if market in self.executors:
            return self.executors[market]
        if len(self.executors) == 1:
            return self.executor
        raise ContagionError(f"replay: {self.plugin.name} has no market {market} in the address book")


def market_view(snapshot: Snapshot, numeraire_usd: dict[str, float]) -> tuple[dict, dict[str, float]]:
    """The engine's own view of the venues in ``snapshot``: AssetVenues by asset, and USD prices.

    Prices are :meth:`AssetVenues.mid_price` (depth-weighted across an asset's venues), with each
    venue's quote token valued at its own mid (stablecoins at ``numeraire_usd``): so the replay
    prices assets exactly as the engine does, not by a second definition.
    """
    from analyzer.engine.impact import build_venues

    venues = build_venues(snapshot)
    prices = dict(numeraire_usd)
    for _ in range(3):   # quotes first (WETH), then what they quote (wstETH/WETH)
        for asset, asset_venues in venues.items():
            if asset in numeraire_usd:
                continue
            asset_venues.set_quote_prices(prices)
            prices[asset] = asset_venues.mid_price()
    return venues, prices


class _OptionMarkets:
    """The option side of a replay, as the engine models it (analyzer/engine/options.py).

    Each round: the fork's open shorts are read and every one the protocol's own margin rule flags
    at the round's spot is liquidated by its executor (``OptionMarket.liquidatePosition``); then the
    option pools re-hedge the change of their net delta (the engine's ``OptionBook.hedge_sales``,
    at the round's market prices and the vol-spiral IV) with real swaps on the underlying's pools.
    The IV path is the engine's rule, imposed like the price shock (it is a market-maker
    assumption, not a chain state); collateral on an asset with no pool cannot be sold for real.
    """

    def __init__(self, before: Snapshot, lenders: Sequence[_Lender], scenario: ShockScenario):
        from analyzer.engine.prepare import prepare

        self.lenders = [lender for lender in lenders if isinstance(lender.rules, OptionMarginRules)
                        and isinstance(lender.executor, OptionExecutor)]
        self.scenario = scenario
        self.prep = prepare(before, rules={lender.plugin.name: lender.rules for lender in self.lenders}, venues={})
        book = self.prep.options
        self.active = bool(self.lenders) and not book.empty
        n = len(book.frame)
        self.row_of = {(str(p), str(m), int(i)): r for r, (p, m, i) in enumerate(zip(
            book.frame["protocol"], book.frame["market"], book.frame["position_id"], strict=True))} if n else {}
        self.alive, self.hedge_alive = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
        self.hedge_spot, self.hedge_iv = self.prep.price_pre.copy(), self.prep.iv_pre.copy()
        self.iv = self.prep.iv_pre.copy()
        for name, points in scenario.iv_shocks.items():
            self.iv[self.prep.asset(name, f"scenario {scenario.name}: iv")] += points
        self.started = False

    def round(self, snap: Snapshot, price: np.ndarray, now: int, round_index: int,
              progress: Callable[[str], None]) -> tuple[list[ReplayLiquidation], np.ndarray, np.ndarray]:
        """Liquidate the flagged shorts of ``snap`` (the fork now) at ``price`` (A,); returns the
        liquidations, the pools' hedge sales (A,) in asset units and the contracts bought back (A,)."""
        from analyzer.engine.options import vol_spiral

        book, n_assets = self.prep.options, len(price)
        if not self.started:   # the shock's own IV move, as the engine's start state
            self.iv = vol_spiral(self.iv, self.prep.price_pre, price, self.scenario.spot_vol_beta,
                                 np.zeros(n_assets), 0.0)
            self.started = True
        index = {a: i for i, a in enumerate(self.prep.assets)}
        underlying_of = {(p, m): a for p, m, a in zip(snap.markets["protocol"], snap.markets["market"],
                                                      snap.markets["asset"], strict=True)}
        closed = np.zeros(len(book.frame), dtype=bool)
        bought = np.zeros(n_assets)
        records = []
        for lender in self.lenders:
            options = snap.options[snap.options["protocol"] == lender.plugin.name]
            for market in sorted(set(options["market"])):
                frame = options[(options["market"] == market) & (options["side"] == "short")].reset_index(drop=True)
                if frame.empty:
                    continue
                u = index[underlying_of[(lender.plugin.name, market)]]
                answer = lender.rules.option_liquidations(frame, np.full(len(frame), price[u]),
                                                          np.full(len(frame), self.iv[u]), now)
                for row in np.flatnonzero(np.asarray(answer.liquidated, dtype=bool)):
                    position = int(frame["position_id"][row])
                    outcome = lender.executor.liquidate_position(position)
                    if not outcome.success:
                        progress(f"replay: {lender.plugin.name} refused to liquidate position {position}: "
                                 f"{outcome.error}")
                        continue
                    # the buy-back: the premium the pool was paid, in collateral units (Lyra's event)
                    premium = outcome.seized.get("lp_premiums", 0) / 1e18
                    in_base = frame["collateral_asset"][row] == self.prep.assets[u]
                    value = premium * (price[u] if in_base else 1.0)
                    records.append(ReplayLiquidation(round_index, lender.plugin.name, outcome.account, "",
                                                     str(frame["collateral_asset"][row]), value, value,
                                                     outcome.tx_hash))
                    key = (lender.plugin.name, str(market), position)
                    if key in self.row_of:
                        closed[self.row_of[key]] = True
                    bought[u] += float(frame["size"][row])
        alive_after = self.alive & ~closed
        hedged = book.hedge_sales(self.hedge_spot, price, self.hedge_iv, self.iv, self.hedge_alive, alive_after,
                                  n_assets)
        hedge = sum(hedged.values(), np.zeros(n_assets))
        self.hedge_spot, self.hedge_iv, self.hedge_alive = price.copy(), self.iv.copy(), alive_after
        self.alive = alive_after
        return records, hedge, bought

    def after_trades(self, price: np.ndarray, new_price: np.ndarray, bought: np.ndarray) -> None:
        from analyzer.engine.options import vol_spiral

        self.iv = vol_spiral(self.iv, price, new_price, self.scenario.spot_vol_beta, bought,
                             self.scenario.iv_per_contract)


def replay(
    source_url: str,
    book: dict,
    scenario: ShockScenario,
    plugins: Sequence[Plugin],
    *,
    max_rounds: int | None = None,
    max_keeper_steps: int = 16,
    progress: Callable[[str], None] = lambda message: None,
    in_place: bool = False,
) -> ReplayResult:
    """Execute ``scenario`` on a fresh anvil fork of ``source_url`` (see the module docstring).
    ``in_place``: on ``source_url`` itself, which must be anvil (a fork we own, whose state the
    caller carries on from: ``recommend --prove`` settles, then stresses, the same fork)."""
    from analyzer.rpc import RpcClient

    source = RpcClient(source_url)
    source_block = source.head_block()
    root_before = source.block(source_block)["stateRoot"]
    max_rounds = scenario.max_rounds if max_rounds is None else max_rounds
    with (_InPlace(source_url) if in_place else Anvil(fork_url=source_url, fork_block=source_block)) as fork:
        w3 = fork.w3
        require_anvil(w3)
        accounts_of_anvil = list(w3.eth.accounts)
        keeper = accounts_of_anvil[1]      # sends the liquidations
        trader = accounts_of_anvil[2]      # moves pools and sells what the keeper received

        def read(accounts=None, only=None, oracle_paths=False) -> Snapshot:
            return scan(fork.url, only or plugins, book=book, accounts=accounts, cache_dir=None,
                        oracle_paths=oracle_paths)

        progress(f"replay: reading the fork of {redact_url(source_url)} at block {source_block}")
        before = read(oracle_paths=True)
        accounts = sorted(set(before.positions["account"]) | set(before.accounts["account"])) or None
        symbols = before.symbol_of()
        decimals = dict(zip(before.assets["address"], before.assets["decimals"].astype(int), strict=True))
        lenders, oracle_entries = [], []   # one oracle entry per market: (plugin, deployment, executor, assets)
        chain_markets = deployments_for(plugins, before.meta["chain_id"], book)
        for plugin in plugins:
            markets = [m for m in chain_markets if m.plugin is plugin]
            if plugin.rules is None or plugin.executor is None or not markets:
                continue
            assets = set(before.markets.loc[before.markets["protocol"] == plugin.name, "asset"])
            executors = {m.main_address or m.name: plugin.executor(w3, m.deployment, keeper) for m in markets}
            lenders.append(_Lender(plugin, plugin.rules(), executors, assets))
            oracle_entries += [(plugin, m.deployment, executors[m.main_address or m.name], assets) for m in markets]
        oracles = ForkOracles(w3, oracle_entries, progress)
        pools = None   # the venue executor of the first market of a venue plugin
        venue_plugins = []
        for chain_market in chain_markets:
            if chain_market.plugin.venue_executor is not None and pools is None:
                pools = chain_market.plugin.venue_executor(w3, chain_market.deployment, decimals, symbols)
                venue_plugins.append(chain_market.plugin)

        # the numeraire: quote tokens that are not themselves traded on a venue (USDC), at their
        # snapshot price; every other asset is priced from its venues, as in the engine
        venue_assets, venue_quotes = set(before.venues["asset"]), set(before.venues["quote_asset"])
        market_before = before.price_of()
        stable_usd = {a: p for a, p in market_before.items() if a in venue_quotes - venue_assets}
        mid_pre = market_view(read(None, venue_plugins), stable_usd)[1] if pools is not None else {}

        def market() -> tuple[dict, dict[str, float]]:
            """The fork's venues, and USD prices as the engine moves them: the snapshot's price times
            the venues' mid over their mid before the shock."""
            venues, mids = market_view(read(None, venue_plugins), stable_usd)
            return venues, {a: market_before[a] * mid / mid_pre[a] if mid_pre.get(a, 0) > 0 else mid
                            for a, mid in mids.items()}

        # the shock: pools first (arbitrage), then the oracles. A CEX (price) shock moves every
        # oracle; a DEX-only (venue) shock moves only the oracles that follow the venue. As in the
        # engine, an oracle that follows the venue reads the market after the move: assets quoted
        # in a shocked asset (wstETH in WETH) move with it.
        def follows_venue(asset: str) -> bool:
            return scenario.oracle_sources.get(symbols.get(asset, ""), scenario.oracle_sources.get(asset, "venue")) \
                == "venue"

        targets, oracle_targets = {}, {}
        for shocks, exogenous in ((scenario.price_shocks, True), (scenario.venue_shocks, False)):
            for name, move in shocks.items():
                asset = before.address_of(name)
                targets[asset] = market_before[asset] * (1.0 + move)
                if exogenous or follows_venue(asset):
                    oracle_targets[asset] = targets[asset]
        if pools is not None:
            usd_after = {**market_before, **targets}
            for entry in pools.entries:
                # the shocked asset's own pools; a pool that only quotes in it (wstETH/WETH) is
                # left to arbitrage, as in the engine
                if entry["asset"] in targets:
                    pools.move_to(entry, usd_after[entry["asset"]] / usd_after[entry["quote"]], trader)
            oracle_targets |= {a: p for a, p in market()[1].items()
                               if follows_venue(a) and a not in stable_usd}
        oracles.move(oracle_targets)
        claims = {a: receipt_claim(o) for a, o in zip(before.assets["address"], before.assets["receipt_of"], strict=True)}
        receipt_underlying = {a: c.underlying for a, c in claims.items() if c is not None and c.underlying in market_before}
        receipt_underlying |= before.wrapped_native_of()     # seized ETH is wrapped and sold as WETH, as in the engine
        exogenous_oracles = {a for a in market_before if not follows_venue(a)}
        mine(w3)
        oracles.refresh()
        oracles.check_sequencers()

        rounds: list[ReplayRound] = []
        liquidated = dict.fromkeys((lender.plugin.name for lender in lenders), 0.0)
        liquidated_accounts: dict[str, set[str]] = {lender.plugin.name: set() for lender in lenders}
        asset_list = [str(a) for a in before.assets["address"]]
        asset_index = {a: i for i, a in enumerate(asset_list)}
        sale_asset = np.array([asset_index.get(receipt_underlying.get(a, a), i) for i, a in enumerate(asset_list)])
        sale_ratio = np.array([market_before[a] / market_before[asset_list[sale_asset[i]]]
                               if market_before[asset_list[sale_asset[i]]] > 0 else 0.0
                               for i, a in enumerate(asset_list)])
        option_markets = _OptionMarkets(before, lenders, scenario)
        # in the engine's order of protocols (the registry's), so that each keeper sells behind the same queue
        registry_order = {name: i for i, name in enumerate(registered_plugins())}
        lending = sorted((lender for lender in lenders if lender not in option_markets.lenders),
                         key=lambda lender: registry_order.get(lender.plugin.name, len(registry_order)))
        fixed_point = False

        def books_in_order():
            """(lender, market, its read) in the engine's slot order: protocols in the registry's
            order, then their books. Read lazily: a protocol is read after the ones before it
            liquidated; its books are independent of each other, so one read serves each first step."""
            for lender in lending:
                first = read(accounts, [lender.plugin])
                for lending_book in lender.rules.books(first):
                    yield lender, lending_book.market, first

        for round_index in range(max_rounds):
            record = ReplayRound(round_index, {})
            received: dict[str, int] = {}
            repaid: dict[str, int] = {}
            # the keeper's view of the market at the round's start, as the engine's: USD mids and
            # slippage curves sampled on the fork's own pools
            venues_now, mids = market() if pools is not None else ({}, {})
            price = np.array([mids.get(a, market_before.get(a, 0.0)) for a in asset_list], dtype=float)
            price = np.where(sale_asset != np.arange(len(asset_list)), sale_ratio * price[sale_asset], price)
            curves = _curves(venues_now, asset_list, scenario.price_impact)
            committed_sell, committed_buy = np.zeros(len(asset_list)), np.zeros(len(asset_list))
            # an account a keeper declined (or took only part of) is done for the round, as in the engine
            active: dict[tuple[str, str], set[str]] = {}
            # keepers work through one book at a time, each to its last step, as the engine's slots run
            for lender, book_market, first in books_in_order():
                name = lender.plugin.name
                step_accounts, snap = accounts, first
                for _step in range(max_keeper_steps):
                    # a keeper step needs only this lender's books (venues and options are read below);
                    # oracles do not move within a round, so after the first step only the accounts
                    # just liquidated can still be liquidatable
                    if not step_accounts:
                        break
                    if snap is None:
                        snap = read(step_accounts, [lender.plugin])
                    just_liquidated: set[str] = set()
                    record.prices_usd = {a: float(p) for a, p in snap.price_of().items()} | record.prices_usd
                    executed = 0
                    for lending_book in lender.rules.books(snap):
                        if lending_book.market != book_market:
                            continue
                        prices = oracle_prices(snap, name, lending_book.assets)
                        proposed = lender.rules.liquidate(lending_book, prices)
                        key = (name, lending_book.market)
                        in_play = np.array([key not in active or str(a) in active[key]
                                            for a in lending_book.accounts[proposed.rows]], dtype=bool)
                        step = proposed.select(in_play)
                        # an account the rule no longer proposes is done for the round
                        active[key] = set(map(str, lending_book.accounts[step.rows])) | (
                            active.get(key, set()) - set(map(str, lending_book.accounts)))
                        if len(step.rows) == 0:
                            continue
                        cols = np.array([asset_index[str(a)] for a in lending_book.assets])
                        take = keeper_take(lender.rules, lending_book, step, prices, cols=cols,
                                           sale_index=sale_asset[cols], sale_units=sale_ratio[cols], price=price,
                                           curves=curves, committed_sell=committed_sell,
                                           committed_buy=committed_buy, sell_through=scenario.sell_through,
                                           gas_usd=scenario.keeper_gas_usd)
                        committed_sell += take.sell_units.sum(0)
                        committed_buy += take.buy_units.sum(0)
                        for i, row in enumerate(step.rows):
                            account = str(lending_book.accounts[row])
                            share = float(take.share[i])
                            if share < 1.0 and not step.absorbed_by_protocol:
                                active[key].discard(account)
                            if share <= 0.0 and not step.absorbed_by_protocol:
                                progress(f"replay: no keeper for {name} {account}: the bonus does not pay "
                                         "for the slippage and gas")
                                continue
                            if not (step.repaid[i] > 0).any() or not (step.seized[i] > 0).any():
                                continue   # in shortfall with nothing left to seize: bad debt, no keeper
                            debt_col = int(np.argmax(step.repaid[i] * prices))
                            coll_col = int(np.argmax(step.seized[i] * prices))
                            debt_asset = str(lending_book.assets[debt_col])
                            executor = lender.executor_for(book_market)
                            if step.absorbed_by_protocol and isinstance(executor, PartialCollateralExecutor):
                                outcome = executor.liquidate(account, None, None, collateral_share=share)
                            elif step.absorbed_by_protocol:
                                outcome = executor.liquidate(account, None, None)
                            else:
                                amount = None if share >= 1.0 else \
                                    int(share * step.repaid[i, debt_col] * 10 ** decimals[debt_asset])
                                if amount == 0:
                                    continue   # the share the keeper would take is below one base unit
                                outcome = executor.liquidate(account, debt_asset,
                                                                    str(lending_book.assets[coll_col]), amount)
                            if not outcome.success:
                                progress(f"replay: {name} refused to liquidate {account}: {outcome.error}")
                                continue
                            executed += 1
                            just_liquidated.add(account)
                            usd = _usd(outcome.repaid, prices, lending_book.assets, decimals)
                            seized_usd = _usd(outcome.seized, prices, lending_book.assets, decimals)
                            liquidated[name] += usd
                            liquidated_accounts[name].add(account)
                            record.liquidations.append(ReplayLiquidation(
                                round_index, name, account, debt_asset, str(lending_book.assets[coll_col]), usd,
                                seized_usd, outcome.tx_hash))
                            for asset, raw in outcome.seized.items():
                                received[asset] = received.get(asset, 0) + raw - outcome.fee.get(asset, 0)
                            if not step.absorbed_by_protocol:
                                for asset, raw in outcome.repaid.items():
                                    repaid[asset] = repaid.get(asset, 0) + raw
                    if not executed:
                        break
                    step_accounts, snap = sorted(just_liquidated), None
            hedge = np.zeros(len(asset_list))
            if option_markets.active:
                option_snap = read(None, [lender.plugin for lender in option_markets.lenders])
                now = int(w3.eth.get_block("latest")["timestamp"])
                closed, hedge, contracts = option_markets.round(option_snap, price, now, round_index, progress)
                for liquidation in closed:
                    liquidated[liquidation.protocol] += liquidation.repaid_usd
                    liquidated_accounts[liquidation.protocol].add(liquidation.account)
                record.liquidations += closed
                record.hedge_units = {asset_list[a]: float(hedge[a]) for a in np.flatnonzero(hedge)}
            if not record.liquidations and float(np.abs(hedge) @ price) < 1.0:
                rounds.append(record)
                fixed_point = True
                break
            # a seized receipt token (aWETH) is redeemed and its underlying sold, as in the engine:
            # converted at the snapshot's price ratio (1:1 for aTokens)
            sold: dict[str, int] = {}
            for asset, raw in sorted(received.items()):
                underlying = receipt_underlying.get(asset, asset)
                units = raw / 10 ** decimals[asset] * market_before[asset] / market_before[underlying]
                sold[underlying] = sold.get(underlying, 0) + int(units * 10 ** decimals[underlying] * scenario.sell_through)
            record.sold_raw = sold
            record.bought_raw = dict(sorted(repaid.items()))
            if pools is not None:
                # the keepers' sales and purchases netted per asset, as the engine trades them, and
                # split across the asset's pools as the engine's router splits them
                net = {a: sold.get(a, 0) - repaid.get(a, 0) for a in sorted(set(sold) | set(repaid))}
                for a in np.flatnonzero(hedge):        # the option pools' re-hedge, as the engine's
                    asset = asset_list[a]
                    net[asset] = net.get(asset, 0) + int(hedge[a] * 10 ** decimals[asset])
                for asset, raw in net.items():
                    if asset not in venues_now or raw == 0:
                        continue
                    venues_now[asset].swap_gas_usd = scenario.swap_gas_usd
                    split = venues_now[asset].split(raw / 10 ** decimals[asset])   # the engine's router
                    for venue, units in zip(venues_now[asset].venues, split, strict=True):
                        if units != 0:
                            (pools.sell if raw > 0 else pools.buy)(asset, int(abs(units) * 10 ** decimals[asset]),
                                                                   trader, pool=venue.venue)
                _, record.pool_prices_after = market()
                if option_markets.active:
                    after = np.array([record.pool_prices_after.get(a, price[i]) for i, a in enumerate(asset_list)])
                    option_markets.after_trades(price, after, contracts)
                oracles.move({a: p for a, p in record.pool_prices_after.items() if a not in exogenous_oracles})
            mine(w3)
            oracles.refresh()
            rounds.append(record)
            sold_text = ", ".join(f"{raw / 10 ** decimals[a]:,.1f} {symbols.get(a, a)}" for a, raw in sold.items())
            progress(f"replay: round {round_index}: {len(record.liquidations)} liquidations; sold {sold_text or 'nothing'}")

        end = read(accounts, [lender.plugin for lender in lenders])
        bad_debt = dict.fromkeys(liquidated, 0.0)
        for lender in lenders:
            # bad debt a protocol wrote off during the replay has left the positions: counted apart
            written_off_before = {b.market: b for b in lender.rules.books(before)}
            for lending_book in lender.rules.books(end):
                prices = oracle_prices(end, lender.plugin.name, lending_book.assets)
                start = written_off_before.get(lending_book.market)
                written_off = lender.rules.written_off_usd(lending_book, prices) - (
                    lender.rules.written_off_usd(start, prices) if start is not None else 0.0)
                bad_debt[lender.plugin.name] += float(lender.rules.bad_debt_usd(lending_book, prices).sum()) + written_off
        final_prices = market()[1] if pools is not None else {}
        fork_block_end = w3.eth.block_number
        elapsed = int(w3.eth.get_block(fork_block_end)["timestamp"]) - int(before.meta["block_timestamp"])
        per_round = (elapsed / len(rounds), (fork_block_end - source_block) / len(rounds)) if rounds else (0.0, 0.0)
    unchanged = source.block_number() == source_block and source.block(source_block)["stateRoot"] == root_before
    return ReplayResult(source_block, fork_block_end, rounds, fixed_point, liquidated, bad_debt, final_prices,
                        {k: sorted(v) for k, v in liquidated_accounts.items()}, unchanged, before,
                        oracles.unpriced, oracles.notes, *per_round)


class _InPlace:
    """An anvil we do not start (``replay(in_place=True)``), with the fork's ``url`` and ``w3``."""

    def __init__(self, url: str):
        from analyzer.chain import connect

        self.url, self.w3 = url, connect(url)
        require_anvil(self.w3)

    def __enter__(self) -> _InPlace:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _curves(venues: dict, assets: list[str], price_impact: bool):
    """``curve(a)`` by asset index: the engine's slippage curve of the fork's pools at the round's start."""
    cache: dict[int, SlippageCurve] = {}

    def curve(a: int) -> SlippageCurve:
        a = int(a)
        if a not in cache:
            asset_venues = venues.get(assets[a])
            cache[a] = SlippageCurve.sample(asset_venues) if (asset_venues is not None and price_impact) \
                else SlippageCurve.flat()
        return cache[a]

    return curve


def _usd(amounts: dict[str, int], prices: np.ndarray, assets: np.ndarray, decimals: dict[str, int]) -> float:
    index = {str(a): i for i, a in enumerate(assets)}
    total = 0.0
    for asset, raw in amounts.items():
        if asset in index:
            total += raw / 10 ** decimals[asset] * float(prices[index[asset]])
    return total


def check_source_untouched(w3, block: int, root: str) -> None:
    if w3.eth.block_number != block or state_root(w3, block) != root:
        raise ContagionError("the source chain changed during the replay")
