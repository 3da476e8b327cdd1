"""The replay's driver: fork, shock, rounds to the scenario's fixed point, the end state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from analyzer.chain import Anvil, redact_url, require_anvil
from analyzer.cheats import mine
from analyzer.console import progress_bar
from analyzer.engine.cascade import curve_source
from analyzer.errors import ContagionError
from analyzer.graph.curves import book_prices
from analyzer.replay.fork import ReplayFork, open_fork
from analyzer.replay.keepers import KeeperRound, Lender, keepers_round
from analyzer.replay.options import OptionMarkets
from analyzer.replay.result import ReplayResult, ReplayRound, totals
from analyzer.replay.shock import apply_shock
from analyzer.replay.trades import arbitrage_on_fork, trade
from analyzer.scenarios import ShockScenario
from protocols import plugins as registered_plugins
from protocols.base import Plugin

log = logging.getLogger("analyzer.replay")


def replay(
    source_url: str,
    book: dict,
    scenario: ShockScenario,
    plugins: Sequence[Plugin],
    *,
    max_rounds: int | None = None,
    max_keeper_steps: int = 16,
    progress: Callable[[str], None] = log.info,
    in_place: bool = False,
) -> ReplayResult:
    """Execute ``scenario`` on a fresh anvil fork of ``source_url`` (see :mod:`analyzer.replay`).

    Parameters
    ----------
    source_url
        RPC URL of the chain to fork at its head block. It is only read: its block number and
        state root are compared before and after (``ReplayResult.source_unchanged``).
    book
        The chain's address book (a devnet's ``book.json``), naming each plugin's markets.
    scenario
        The shock (price, venue and IV shocks; the market's behaviour; ``max_rounds`` and the
        ``tolerance`` of the fixed point).
    plugins
        The protocols to replay: lenders need rules and an executor, venues a venue executor.
    max_rounds
        Round limit (default: the scenario's ``max_rounds``).
    max_keeper_steps
        Keeper steps per book and round (each re-reads the accounts just liquidated).
    progress
        Called with one line per stage, round and first-seen skip (default: the
        ``analyzer.replay`` logger at INFO).
    in_place
        Run on ``source_url`` itself, which must be anvil (a chain we own, whose state the caller
        carries on from: ``recommend --prove`` settles, then stresses, the same chain).

    Returns
    -------
    ReplayResult
        Each round's liquidations, trades and skips; totals by protocol; the pre-shock read of the
        fork (``snapshot_before``) that the engine runs from beside it.

    Raises
    ------
    ContagionError
        The source is unreachable or not the book's chain, or a market of the book is not on the
        fork. (An L2 sequencer that is down restricts the liquidations to what each protocol's rule
        permits: :meth:`ForkOracles.sequencer_reason`.)
    """
    from analyzer.rpc import RpcClient

    source = RpcClient(source_url)
    source_block = source.head_block()
    root_before = source.block(source_block)["stateRoot"]
    max_rounds = scenario.max_rounds if max_rounds is None else max_rounds
    with (_InPlace(source_url) if in_place else Anvil(fork_url=source_url, fork_block=source_block)) as anvil:
        require_anvil(anvil.w3)
        progress(f"replay: reading the fork of {redact_url(source_url)} at block {source_block}")
        fork = open_fork(anvil.w3, anvil.url, book, scenario, plugins, progress)
        exogenous_oracles = apply_shock(fork)
        rounds, fixed_point = _rounds(fork, exogenous_oracles, max_rounds, max_keeper_steps)
        result = _end(fork, rounds, fixed_point, source_block)
    result.source_unchanged = (source.block_number() == source_block
                               and source.block(source_block)["stateRoot"] == root_before)
    return result


class _InPlace:
    """An anvil we do not start (``replay(in_place=True)``), with its ``url`` and ``w3``."""

    def __init__(self, url: str):
        from analyzer.chain import connect

        self.url, self.w3 = url, connect(url)
        require_anvil(self.w3)

    def __enter__(self) -> _InPlace:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _rounds(fork: ReplayFork, exogenous_oracles: set[str], max_rounds: int,
            max_keeper_steps: int) -> tuple[list[ReplayRound], bool]:
    """Rounds until one liquidates nothing and moves no price beyond the scenario's tolerance."""
    options = OptionMarkets(fork.before, fork.lenders, fork.scenario)
    # in the engine's order of protocols (the registry's), so that each keeper sells behind the same queue
    registry_order = {name: i for i, name in enumerate(registered_plugins())}
    lending = sorted((lender for lender in fork.lenders if lender not in options.lenders),
                     key=lambda lender: registry_order.get(lender.plugin.name, len(registry_order)))
    rounds: list[ReplayRound] = []
    with progress_bar("replay: rounds", max_rounds) as bar:
        for round_index in range(max_rounds):
            record, quiet = _round(fork, round_index, lending, options, exogenous_oracles, max_keeper_steps)
            rounds.append(record)
            bar.advance()
            if quiet:
                return rounds, True
    return rounds, False


def _round(fork: ReplayFork, round_index: int, lending: Sequence[Lender], options: OptionMarkets,
           exogenous_oracles: set[str], max_keeper_steps: int) -> tuple[ReplayRound, bool]:
    """One round: keepers, option liquidations and re-hedges, the trades, oracles to the new pool
    prices, a mined block. Returns the round and whether it was quiet (the fixed point)."""
    # the keepers' view of the market at the round's start, as the engine's: USD mids and
    # slippage curves sampled on the fork's own pools
    venues, mids = fork.market.now()
    price = fork.sales.price(mids, fork.market.market_before)
    by_index = {i: venues[a] for i, a in enumerate(fork.asset_list) if a in venues}
    state = KeeperRound(ReplayRound(round_index, {}), price,
                        curve_source(by_index, fork.scenario.price_impact, {}),
                        np.zeros(len(price)), np.zeros(len(price)))
    if round_index == 0:
        _forced_sales(fork, state, lending)
    keepers_round(fork, state, lending, max_keeper_steps)
    hedge, contracts = _options_round(fork, state, options)
    record = state.record
    record.skipped, new_skips = fork.skips.in_round(round_index)
    if not record.liquidations and not record.forced and not hedge.any():
        return record, True      # nothing to trade: the fork stays where it is
    sold = fork.sales.sold(state.received, fork.decimals, fork.market.market_before, fork.scenario.sell_through)
    record.sold_raw, record.bought_raw = sold, dict(sorted(state.repaid.items()))
    if fork.market.pools is not None:
        record.routed = trade(fork, venues, sold, state.repaid, hedge)
        if fork.scenario.cex_arbitrage and fork.scenario.price_impact:
            record.routed += arbitrage_on_fork(fork)
        _, record.pool_prices_after = fork.market.now(fresh=True)
        if options.active:
            after = np.array([record.pool_prices_after.get(a, price[i]) for i, a in enumerate(fork.asset_list)])
            options.after_trades(price, after, contracts)
        fork.oracles.move({a: p for a, p in record.pool_prices_after.items() if a not in exogenous_oracles})
    mine(fork.w3)
    fork.oracles.refresh()
    symbols = fork.symbols
    sold_text = ", ".join(f"{raw / 10 ** fork.decimals[a]:,.1f} {symbols.get(a, a)}" for a, raw in sold.items())
    skipped = f", {record.skipped} skipped ({new_skips} new)" if record.skipped else ""
    fork.progress(f"replay: round {round_index}: {len(record.liquidations)} liquidations{skipped}; "
                  f"sold {sold_text or 'nothing'}")
    return record, not record.liquidations and _prices_quiet(mids, record.pool_prices_after, fork.scenario.tolerance)


def _forced_sales(fork: ReplayFork, state: KeeperRound, lending: Sequence[Lender]) -> None:
    """The scenario's forced sales, at round 0 before its keepers, as the engine makes them
    (:func:`analyzer.engine.prepare._forced_sales`: the account's positions in the book closed, its
    collateral sold and its debt bought back with the round's trades): each named account's
    positions in the fork's book closed on the fork by its protocol's executor
    (:meth:`protocols.base.Executor.close_account`), what it withdrew added to what the round sells
    and what it repaid to what it buys."""
    positions = fork.before.positions
    by_name = {lender.plugin.name: lender for lender in lending}
    for sale in fork.scenario.forced_sales:
        held = positions[(positions["account"].str.lower() == sale.account.lower())
                         & ((positions["protocol"] == sale.protocol) if sale.protocol else True)]
        if held.empty:
            where = f" in {sale.protocol}" if sale.protocol else ""
            raise ContagionError(f"scenario {fork.scenario.name}: forced_sale: account {sale.account} has no "
                                 f"position{where} on the fork")
        for (protocol, market), rows in held.groupby(["protocol", "market"], sort=True):
            if protocol not in by_name:
                raise ContagionError(f"replay: forced sale of {sale.account} in {protocol}: no executor replays it")
            sides = {side: sorted(set(rows.loc[rows["side"] == side, "asset"])) for side in ("collateral", "debt")}
            withdrawn, repaid = by_name[protocol].executor_for(market).close_account(
                str(rows["account"].iloc[0]), sides["collateral"], sides["debt"])
            for asset, raw in withdrawn.items():
                state.received[asset] = state.received.get(asset, 0) + raw
            for asset, raw in repaid.items():
                state.repaid[asset] = state.repaid.get(asset, 0) + raw
            state.record.forced.append({"protocol": protocol, "market": market, "account": str(rows["account"].iloc[0]),
                                        "withdrawn_raw": {a: str(v) for a, v in withdrawn.items()},
                                        "repaid_raw": {a: str(v) for a, v in repaid.items()}})
            fork.progress(f"replay: forced sale: {protocol} {sale.account} closed: withdrew "
                          f"{len(withdrawn)} collateral assets, repaid {len(repaid)} debts")


def _prices_quiet(before: dict[str, float], after: dict[str, float], tolerance: float) -> bool:
    """Whether every market price moved by at most ``tolerance`` (relative), the engine's stop rule."""
    return all(abs(after.get(a, p) - p) <= tolerance * max(abs(p), 1e-300) for a, p in before.items())


def _options_round(fork: ReplayFork, state: KeeperRound, options: OptionMarkets) -> tuple[np.ndarray, np.ndarray]:
    """The option markets' liquidations of the round (added to its record); returns the option pools'
    hedge sales (A,) and the contracts bought back (A,)."""
    n_assets = len(fork.asset_list)
    if not options.active:
        return np.zeros(n_assets), np.zeros(n_assets)
    option_snap = fork.read(None, [lender.plugin for lender in options.lenders])
    now = int(fork.w3.eth.get_block("latest")["timestamp"])
    closed, hedge, contracts = options.round(option_snap, state.price, now, state.record.round,
                                             partial(fork.skips.add, state.record.round))
    state.record.liquidations += closed
    state.record.hedge_units = {fork.asset_list[a]: float(hedge[a]) for a in np.flatnonzero(hedge)}
    return hedge, contracts


def _end(fork: ReplayFork, rounds: list[ReplayRound], fixed_point: bool, source_block: int) -> ReplayResult:
    """The end state: bad debt at the final oracle prices, final pool prices, time per round."""
    end = fork.read(fork.accounts, [lender.plugin for lender in fork.lenders])
    liquidated, accounts = totals(rounds, [lender.plugin.name for lender in fork.lenders])
    bad_debt = dict.fromkeys(liquidated, 0.0)
    for lender in fork.lenders:
        # bad debt a protocol wrote off during the replay has left the positions: counted apart
        written_off_before = {b.market: b for b in lender.rules.books(fork.before)}
        for lending_book in lender.rules.books(end):
            prices = book_prices(end, lending_book)
            start = written_off_before.get(lending_book.market)
            written_off = lender.rules.written_off_usd(lending_book, prices) - (
                lender.rules.written_off_usd(start, prices) if start is not None else 0.0)
            bad_debt[lender.plugin.name] += float(lender.rules.bad_debt_usd(lending_book, prices).sum()) + written_off
    fork_block_end = fork.w3.eth.block_number
    elapsed = int(fork.w3.eth.get_block(fork_block_end)["timestamp"]) - int(fork.before.meta["block_timestamp"])
    per_round = (elapsed / len(rounds), (fork_block_end - source_block) / len(rounds)) if rounds else (0.0, 0.0)
    return ReplayResult(source_block, fork_block_end, rounds, fixed_point, liquidated, bad_debt,
                        fork.market.now()[1], accounts, False, fork.before, fork.oracles.unpriced,
                        fork.oracles.notes, *per_round, skips=list(fork.skips.found.values()))
