"""Keepers on the fork: every account a protocol's own rule calls liquidatable is liquidated for real.

Each keeper chooses the debt and collateral assets, and how much to take, as the engine's keeper
step does (:func:`analyzer.engine.keeper.keeper_take`, on the engine's slippage curves of the
fork's pools at the round's start); books are worked in the engine's slot order, each to its last
step; an account a keeper declined (or took only part of) is done for the round, as in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from web3 import Web3

from analyzer.engine.keeper import keeper_take
from analyzer.errors import ContagionError
from analyzer.graph.curves import book_prices
from analyzer.model import Snapshot
from analyzer.replay.result import ReplayLiquidation, ReplayRound
from protocols.base import ExecutedLiquidation, LendingBook, Liquidation, PartialCollateralExecutor, Plugin

if TYPE_CHECKING:
    from analyzer.replay.fork import ReplayFork


@dataclass
class Lender:
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


def lenders_on(w3: Web3, plugins: Sequence[Plugin], chain_markets: Sequence[Any], before: Snapshot,
               keeper: str) -> tuple[list[Lender], list[tuple[Plugin, dict, Any, set[str]]]]:
    """The lenders (plugins with rules and an executor) and one oracle entry per market:
    (plugin, deployment, executor, assets it prices)."""
    lenders, oracle_entries = [], []
    for plugin in plugins:
        markets = [m for m in chain_markets if m.plugin is plugin]
        if plugin.rules is None or plugin.executor is None or not markets:
            continue
        assets = set(before.markets.loc[before.markets["protocol"] == plugin.name, "asset"])
        executors = {m.main_address or m.name: plugin.executor(w3, m.deployment, keeper) for m in markets}
        lenders.append(Lender(plugin, plugin.rules(), executors, assets))
        oracle_entries += [(plugin, m.deployment, executors[m.main_address or m.name], assets) for m in markets]
    return lenders, oracle_entries


@dataclass
class KeeperRound:
    """What the keepers of one round share: the market they sell into, and what they did."""

    record: ReplayRound
    price: np.ndarray                  # (A,) USD market prices at the round's start
    curves: Callable[[int], Any]       # slippage curve by asset index, at the round's start
    committed_sell: np.ndarray         # (A,) units earlier keepers of the round sell
    committed_buy: np.ndarray
    active: dict[tuple[str, str], set[str]] = field(default_factory=dict)   # (protocol, market) -> accounts
    received: dict[str, int] = field(default_factory=dict)    # raw units seized, net of protocol fees
    repaid: dict[str, int] = field(default_factory=dict)      # raw units repaid by keepers


def books_in_order(fork: ReplayFork, lending: Sequence[Lender],
                   record: ReplayRound | None = None) -> Iterator[tuple[Lender, str, Snapshot]]:
    """(lender, market, its read) in the engine's slot order: protocols in the registry's order,
    then their books. Read lazily: a protocol is read after the ones before it liquidated; its
    books are independent of each other, so one read serves each first step. The fork's block and
    time at each protocol's read go to ``record.clock`` (the interest clock the engine replays)."""
    for lender in lending:
        if record is not None:
            head = fork.w3.eth.get_block("latest")
            record.clock[lender.plugin.name] = (int(head["number"]), int(head["timestamp"]))
        first = fork.read(fork.accounts, [lender.plugin])
        for lending_book in lender.rules.books(first):
            yield lender, lending_book.market, first


def keepers_round(fork: ReplayFork, state: KeeperRound, lending: Sequence[Lender], max_steps: int) -> None:
    """Every lending book's keepers, one book at a time, each to its last step (as the engine's slots)."""
    for lender, market, first in books_in_order(fork, lending, state.record):
        accounts: list[str] | None = fork.accounts
        snap: Snapshot | None = first
        for _step in range(max_steps):
            # oracles do not move within a round, so after the first step only the accounts just
            # liquidated can still be liquidatable
            if not accounts:
                break
            if snap is None:
                snap = fork.read(accounts, [lender.plugin])
            state.record.prices_usd = {a: float(p) for a, p in snap.price_of().items()} | state.record.prices_usd
            liquidated: set[str] = set()
            for lending_book in lender.rules.books(snap):
                if lending_book.market == market:
                    liquidated |= _book_step(fork, state, lender, lending_book, book_prices(snap, lending_book))
            if not liquidated:
                break
            accounts, snap = sorted(liquidated), None


def _book_step(fork: ReplayFork, state: KeeperRound, lender: Lender, book: LendingBook,
               prices: np.ndarray) -> set[str]:
    """One keeper step on ``book`` at its oracle ``prices``; returns the accounts liquidated."""
    proposed = _sequencer_permitted(fork, state, lender, book, prices, lender.rules.liquidate(book, prices))
    key = (lender.plugin.name, book.market)
    in_play = np.array([key not in state.active or str(a) in state.active[key]
                        for a in book.accounts[proposed.rows]], dtype=bool)
    step = proposed.select(in_play)
    # an account the rule no longer proposes is done for the round
    state.active[key] = set(map(str, book.accounts[step.rows])) | (
        state.active.get(key, set()) - set(map(str, book.accounts)))
    if len(step.rows) == 0:
        return set()
    sales = fork.sales
    cols = np.array([sales.index[str(a)] for a in book.assets])
    take = keeper_take(lender.rules, book, step, prices, cols=cols, sale_index=sales.sale_asset[cols],
                       sale_units=sales.sale_ratio[cols], price=state.price, curves=state.curves,
                       committed_sell=state.committed_sell, committed_buy=state.committed_buy,
                       sell_through=fork.scenario.sell_through, gas_usd=fork.scenario.keeper_gas_usd)
    state.committed_sell += take.sell_units.sum(0)
    state.committed_buy += take.buy_units.sum(0)
    done = set()
    for i in range(len(step.rows)):
        if _liquidate_row(fork, state, lender, book, step, prices, i, float(take.share[i])):
            done.add(str(book.accounts[step.rows[i]]))
    return done


def _sequencer_permitted(fork: ReplayFork, state: KeeperRound, lender: Lender, book: LendingBook,
                         prices: np.ndarray, proposed: Liquidation) -> Liquidation:
    """``proposed`` less the accounts the protocol refuses while its L2 sequencer check fails
    (:meth:`ForkOracles.sequencer_reason`; the rule's ``sentinel_permits`` says which it still
    lets through), each of those skipped with the reason."""
    reason = fork.oracles.sequencer_reason(lender.plugin.name)
    if reason is None or len(proposed.rows) == 0:
        return proposed
    permitted = np.asarray(lender.rules.sentinel_permits(book, prices, False), dtype=bool)[proposed.rows]
    for row in proposed.rows[~permitted]:
        fork.skips.add(state.record.round, lender.plugin.name, str(book.accounts[row]), f"paused: {reason}")
    return proposed.select(permitted)


def _liquidate_row(fork: ReplayFork, state: KeeperRound, lender: Lender, book: LendingBook, step: Liquidation,
                   prices: np.ndarray, i: int, share: float) -> bool:
    """Send row ``i`` of ``step`` with the keeper's ``share`` of it; True when it was liquidated."""
    name, account = lender.plugin.name, str(book.accounts[step.rows[i]])
    if share < 1.0 and not step.absorbed_by_protocol:
        state.active[(name, book.market)].discard(account)
    skip = partial(fork.skips.add, state.record.round, name, account)
    if share <= 0.0 and not step.absorbed_by_protocol:
        skip("no keeper: the bonus does not pay for the slippage and gas")
        return False
    if not (step.repaid[i] > 0).any() or not (step.seized[i] > 0).any():
        skip("no keeper: nothing left to seize (bad debt)")
        return False
    debt_col, collateral_col = int(np.argmax(step.repaid[i] * prices)), int(np.argmax(step.seized[i] * prices))
    debt_asset, collateral_asset = str(book.assets[debt_col]), str(book.assets[collateral_col])
    outcome = _execute(lender.executor_for(book.market), step, account, share, debt_asset,
                       float(step.repaid[i, debt_col]), fork.decimals,
                       (book.column_key(debt_col), book.column_key(collateral_col)))
    if outcome is None:
        skip("no keeper: its share of the debt is below one base unit")
        return False
    if not outcome.success:
        skip(f"refused: {outcome.error}")
        return False
    state.record.liquidations.append(ReplayLiquidation(
        state.record.round, name, account, debt_asset, collateral_asset,
        _usd(outcome.repaid, prices, book.assets, fork.decimals),
        _usd(outcome.seized, prices, book.assets, fork.decimals), outcome.tx_hash))
    for asset, raw in outcome.seized.items():
        state.received[asset] = state.received.get(asset, 0) + raw - outcome.fee.get(asset, 0)
    if not step.absorbed_by_protocol:
        for asset, raw in outcome.repaid.items():
            state.repaid[asset] = state.repaid.get(asset, 0) + raw
    return True


def _execute(executor: Any, step: Liquidation, account: str, share: float, debt_asset: str, repaid_units: float,
             decimals: dict[str, int], columns: tuple[str, str]) -> ExecutedLiquidation | None:
    """The executor's liquidation of ``account``: an absorbing protocol's (the keeper buys ``share``
    of the collateral where the executor lets it), else the keeper repays ``share`` of the
    ``repaid_units`` of ``debt_asset`` the rule allows; None when that is below one base unit.
    ``columns``: the debt and collateral columns as the executor knows them
    (:meth:`~protocols.base.LendingBook.column_key`: a cToken where two share an underlying)."""
    if step.absorbed_by_protocol and isinstance(executor, PartialCollateralExecutor):
        return executor.liquidate(account, None, None, collateral_share=share)
    if step.absorbed_by_protocol:
        return executor.liquidate(account, None, None)
    amount = None if share >= 1.0 else int(share * repaid_units * 10 ** decimals[debt_asset])
    if amount == 0:
        return None
    return executor.liquidate(account, columns[0], columns[1], amount)


def _usd(amounts: dict[str, int], prices: np.ndarray, assets: np.ndarray, decimals: dict[str, int]) -> float:
    index = {str(a): i for i, a in enumerate(assets)}
    total = 0.0
    for asset, raw in amounts.items():
        if asset in index:
            total += raw / 10 ** decimals[asset] * float(prices[index[asset]])
    return total
