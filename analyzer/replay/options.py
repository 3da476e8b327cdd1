"""The option side of a replay, as the engine models it (:mod:`analyzer.engine.options`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from analyzer.model import Snapshot
from analyzer.replay.keepers import Lender
from analyzer.replay.result import ReplayLiquidation
from analyzer.scenarios import ShockScenario
from protocols.base import OptionExecutor, OptionMarginRules


class OptionMarkets:
    """The option side of a replay, as the engine models it (analyzer/engine/options.py).

    Each round: the fork's open shorts are read and every one the protocol's own margin rule flags
    at the round's spot is liquidated by its executor (``OptionMarket.liquidatePosition``); then the
    option pools re-hedge the change of their net delta (the engine's ``OptionBook.hedge_sales``,
    at the round's market prices and the vol-spiral IV) with real swaps on the underlying's pools.
    The IV path is the engine's rule (the scenario's ``[iv]`` shock, then the vol spiral), imposed
    like the price shock: each round starts by moving the market's IVs on chain by the IV's change
    since the last round (:meth:`OptionExecutor.shift_iv`); collateral on an asset with no pool
    cannot be sold for real.
    """

    def __init__(self, before: Snapshot, lenders: Sequence[Lender], scenario: ShockScenario):
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
        self.iv_on_chain: dict[tuple[str, int], float] = {}    # (protocol, asset index) -> IV the chain quotes
        for name, points in scenario.iv_shocks.items():
            self.iv[self.prep.asset(name, f"scenario {scenario.name}: iv")] += points
        self.started = False

    def round(self, snap: Snapshot, price: np.ndarray, now: int, round_index: int,
              skip: Callable[[str, str, str], None]) -> tuple[list[ReplayLiquidation], np.ndarray, np.ndarray]:
        """Liquidate the flagged shorts of ``snap`` (the fork now) at ``price`` (A,); returns the
        liquidations, the pools' hedge sales (A,) in asset units and the contracts bought back (A,).
        ``skip(protocol, account, reason)`` is told of each refused liquidation."""
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
        records: list[ReplayLiquidation] = []
        collateral_usd = snap.price_of()   # as the protocol's reader prices it now (Lyra's sETH: its spot)
        for lender in self.lenders:
            options = snap.options[snap.options["protocol"] == lender.plugin.name]
            for market in sorted(set(options["market"])):
                frame = options[(options["market"] == market) & (options["side"] == "short")].reset_index(drop=True)
                if frame.empty:
                    continue
                u = index[underlying_of[(lender.plugin.name, market)]]
                self._move_iv(lender, u)
                for record, row in self._liquidate_market(lender, frame, u, price, collateral_usd, now,
                                                          round_index, skip):
                    records.append(record)
                    key = (lender.plugin.name, str(market), int(frame["position_id"][row]))
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

    def _liquidate_market(self, lender: Lender, frame: pd.DataFrame, u: int, price: np.ndarray,
                          collateral_usd: dict[str, float], now: int, round_index: int,
                          skip: Callable[[str, str, str], None]) -> list[tuple[ReplayLiquidation, int]]:
        """Liquidate the shorts of one option market (``frame``, on underlying column ``u``) its
        margin rule flags; returns each liquidation with its row of ``frame``. The buy-back's USD value
        is the premium in collateral units at the collateral's USD price in ``collateral_usd`` (the
        round's read of the fork), else the underlying's for collateral in it, else 1."""
        answer = lender.rules.option_liquidations(frame, np.full(len(frame), price[u]),
                                                  np.full(len(frame), self.iv[u]), now)
        done = []
        for row in np.flatnonzero(np.asarray(answer.liquidated, dtype=bool)):
            position = int(frame["position_id"][row])
            outcome = lender.executor.liquidate_position(position)
            if not outcome.success:
                skip(lender.plugin.name, outcome.account, f"refused to liquidate position {position}: {outcome.error}")
                continue
            # the buy-back: the premium the pool was paid, in collateral units (Lyra's event)
            premium = outcome.seized.get("lp_premiums", 0) / 1e18
            collateral = str(frame["collateral_asset"][row])
            fallback = price[u] if collateral == self.prep.assets[u] else 1.0
            unit_usd = collateral_usd.get(collateral, fallback)
            value = premium * (unit_usd if np.isfinite(unit_usd) else fallback)
            done.append((ReplayLiquidation(round_index, lender.plugin.name, outcome.account, "",
                                           str(frame["collateral_asset"][row]), value, value, outcome.tx_hash),
                         int(row)))
        return done

    def _move_iv(self, lender: Lender, u: int) -> None:
        """Put the engine's IV of asset ``u`` on ``lender``'s chain market (once per round and asset)."""
        key = (lender.plugin.name, u)
        quoted = self.iv_on_chain.get(key, float(self.prep.iv_pre[u]))
        move = float(self.iv[u]) - quoted
        if np.isfinite(move) and move != 0.0:
            lender.executor.shift_iv(self.prep.assets[u], move)
            self.iv_on_chain[key] = float(self.iv[u])

    def after_trades(self, price: np.ndarray, new_price: np.ndarray, bought: np.ndarray) -> None:
        from analyzer.engine.options import vol_spiral

        self.iv = vol_spiral(self.iv, price, new_price, self.scenario.spot_vol_beta, bought,
                             self.scenario.iv_per_contract)
