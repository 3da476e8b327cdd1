"""A plain reference implementation of one cascade round, for tests (as networkx keeps a plain and a
scipy version of an algorithm side by side).

Same model as :func:`analyzer.engine.cascade.run_round`, written the obvious way: a Python loop over
every account of every book (no screening of accounts whose prices did not move, no sub-books),
each account liquidated on a one-row book by the protocol's own rule, step after step; keeper
slippage interpolated by hand; flows, attribution and receipts in loops. Slow, and meant to be.
Covers lending books, receipts, the linear (``net_gamma``) hedging of option pools and the vol
spiral; option-margin liquidations and Black-Scholes revaluation are not in it.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from analyzer.engine import attribution as attr
from analyzer.engine.cascade import CascadeState, RoundRecord, receipt_writedowns
from analyzer.engine.impact import reprice
from analyzer.engine.keeper_share import KEEPER_FRACTIONS
from analyzer.engine.market import SlippageCurve, safe_trade
from analyzer.engine.prepare import Prepared
from analyzer.scenarios import ShockScenario
from protocols.base import AbsorbingRules, LendingBook


def _interp(x: float, xs, ys) -> float:
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect_right(list(xs), x) - 1
    return float(ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i]))


def _sell_fraction(curve: SlippageCurve, q: float) -> float:
    if curve.exact is not None and q > 0:    # a constant-product pool: getAmountOut, per unit sold
        x, y, keep, scale = curve.exact
        return y * keep / (x + q * keep) * scale
    if q > curve.sizes[-1]:
        return float(curve.sell[-1] * curve.sizes[-1] / q)
    return _interp(q, curve.sizes, curve.sell)


def _buy_fraction(curve: SlippageCurve, q: float) -> float:
    if curve.exact is not None and q > 0:    # a constant-product pool: getAmountIn, per unit bought
        x, y, keep, scale = curve.exact
        return y / ((x - q) * keep) * scale if q < x else float("inf")
    if q > curve.buy_limit * (1 + 1e-12):
        return float("inf")
    xs = [x for x, y in zip(curve.sizes, curve.buy, strict=True) if np.isfinite(y)]
    ys = [y for y in curve.buy if np.isfinite(y)]
    return _interp(q, xs, ys)


def _row(book: LendingBook, i: int) -> LendingBook:
    return book.take(np.array([i]))


def _queue(sells, buys, held, state, curve, committed_sell, committed_buy, gas_usd) -> list[float]:
    """Keepers in a queue, largest first: each trades over its own segment after those ahead."""
    sizes = [sum(u * state.price[a] for a, u in sell.items()) + sum(u * state.price[a] for a, u in buy.items())
             for sell, buy in zip(sells, buys, strict=True)]
    order = sorted(range(len(sizes)), key=lambda q: -sizes[q])
    chosen = [1.0] * len(sizes)
    for _ in range(2):
        before_sell, before_buy = {}, {}
        sold_so_far = dict(enumerate(committed_sell))
        bought_so_far = dict(enumerate(committed_buy))
        for q in order:
            before_sell[q] = {a: sold_so_far[a] for a in sells[q]}
            before_buy[q] = {a: bought_so_far[a] for a in buys[q]}
            for a, units in sells[q].items():
                sold_so_far[a] += units * chosen[q]
            for a, units in buys[q].items():
                bought_so_far[a] += units * chosen[q]
        best = [0.0] * len(sizes)
        for q in range(len(sizes)):
            for f in KEEPER_FRACTIONS:
                profit = f * held[q] - gas_usd
                for a, units in sells[q].items():
                    c, b = curve(a), before_sell[q][a]
                    end = b + f * units
                    profit += state.price[a] * (end * _sell_fraction(c, end) - b * _sell_fraction(c, b))
                for a, units in buys[q].items():
                    c, b = curve(a), before_buy[q][a]
                    end = b + f * units
                    spent_end, spent_before = end * _buy_fraction(c, end), b * _buy_fraction(c, b)
                    # a purchase beyond what the venues can fill costs infinitely (inf - inf included)
                    cost = state.price[a] * (spent_end - spent_before) if np.isfinite(spent_before) else np.inf
                    profit -= cost if np.isfinite(cost) else float("inf")
                if profit > 0:
                    best[q] = f
                    break
        chosen = best
    return best


def reference_round(prep: Prepared, state: CascadeState, scenario: ShockScenario) -> RoundRecord:
    """One round, the slow way; advances ``state`` in place like ``run_round``."""
    A, S, P = len(prep.assets), len(prep.sources), len(prep.protocols)
    t = state.round
    k = t - scenario.oracle_lag
    source_price = state.source_history[k] if k >= 0 else prep.price_pre
    source_attr = state.source_attr_history[k] if k >= 0 else np.zeros((A, S))
    flows = state.pending_flows.copy()
    state.pending_flows[:] = 0.0
    rec = RoundRecord(t, state.price.copy(), np.array(source_price, dtype=float), state.price, state.iv, flows,
                      np.zeros(P, np.int64), np.zeros(P, np.int64), np.zeros(P), np.zeros(P), np.zeros(P),
                      state.writedown.copy(), np.zeros((P, A)), np.zeros((P, A)), np.zeros((P, A)), np.zeros((S, P)),
                      np.zeros(A), np.zeros(len(prep.markets)))
    unit = np.ones(A)
    for a in range(A):
        if prep.is_receipt[a]:
            unit[a] = _receipt_unit(prep, a, state.writedown, state.asset_writedown)
    curves: dict[int, SlippageCurve] = {}

    def curve(a: int) -> SlippageCurve:
        if a not in curves:
            curves[a] = SlippageCurve.sample(state.venues[a]) if (a in state.venues and scenario.price_impact) \
                else SlippageCurve.flat()
        return curves[a]

    deposits = np.zeros(len(prep.markets))
    committed = (np.zeros(A), np.zeros(A))      # sold, bought by the round's keepers so far
    for s in range(len(prep.slots)):
        _reference_slot(prep, state, scenario, s, rec, source_price, source_attr, unit, curve, committed, deposits)
    writedown = state.writedown.copy()
    for a in range(A):       # a receipt is written down by the losses of the markets it claims on
        claimed = [k for k in range(len(prep.markets)) if prep.receipt_claims[a, k]]
        bad = sum(rec.market_bad_debt_usd[k] for k in claimed)
        supplied = sum(deposits[k] for k in claimed)
        if supplied > 0:
            writedown[a] = max(min(bad / supplied, 1.0), state.writedown[a])
    asset_writedown = receipt_writedowns(prep, state.books, state.asset_writedown)
    _reference_hedging(prep, state, scenario, flows)
    _reference_prices(prep, state, scenario, rec, writedown, asset_writedown)
    return rec


def _receipt_unit(prep: Prepared, a: int, writedown: np.ndarray, own: np.ndarray | None) -> float:
    """Underlying units a receipt redeems for: its own write-down when its issuer declares one."""
    wd = own[a] if own is not None and np.isfinite(own[a]) else writedown[a]
    return prep.receipt_ratio[a] * (1.0 - wd)


def _reference_slot(prep: Prepared, state: CascadeState, scenario: ShockScenario, s: int, rec: RoundRecord,
                    source_price: np.ndarray, source_attr: np.ndarray, unit: np.ndarray, curve, committed: tuple,
                    deposits: np.ndarray) -> None:
    """Book ``s``: every account on a one-row book, liquidated step after step while keepers take it."""
    slot = prep.slots[s]
    p = prep.protocol_index[slot.protocol]
    book = state.books[s].copy()
    m = len(slot.cols)
    oracle = np.array([source_price[slot.cols[j]] * slot.oracle_scale[j] for j in range(m)])
    for j in range(m):
        deposits[slot.market_index] += slot.book.collateral[:, j].sum() * oracle[j]
    ones = {i: _row(book, i) for i in range(len(book.accounts))}
    candidates = [i for i in range(len(book.accounts)) if slot.rules.liquidatable(ones[i], oracle)[0]]
    causes = {i: _reference_causes(slot, ones[i], source_attr, len(prep.sources), i) for i in candidates}
    active = dict.fromkeys(candidates, True)
    liquidated: set[int] = set()
    for _ in range(scenario.max_keeper_steps):
        proposals = []
        for i in candidates:
            if not active[i]:
                continue
            liq = slot.rules.liquidate(ones[i], oracle)
            if len(liq.rows) == 0:
                active[i] = False
            else:
                proposals.append((i, liq))
        if not proposals:
            break
        sells, buys, held = _reference_trades(prep, state, scenario, slot, ones, proposals, unit, oracle)
        shares = _queue(sells, buys, held, state, curve, committed[0], committed[1], scenario.keeper_gas_usd)
        absorbed = proposals[0][1].absorbed_by_protocol
        for (i, liq), share, sell, buy in zip(proposals, shares, sells, buys, strict=True):
            if absorbed:
                sold_share, share = share, 1.0
            else:
                sold_share = share
                if share < 1.0:
                    active[i] = False
                if share == 0.0:
                    continue
                liq = liq.scaled(np.array([share]))
            _reference_record(prep, slot, rec, committed, (sell, sold_share), (buy, share), liq, oracle, causes[i])
            ones[i] = slot.rules.apply(ones[i], liq)
            liquidated.add(i)
    rec.liquidations[p] += len(liquidated)
    for i in range(len(book.accounts)):
        book.collateral[i], book.debt[i] = ones[i].collateral[0], ones[i].debt[0]
        for key in book.per_account:     # an account's own protocol state (Aave's written-off deficit)
            book.extra[key][i] = ones[i].extra[key][0]
        bad = float(slot.rules.bad_debt_usd(ones[i], oracle)[0])
        rec.bad_debt_usd[p] += bad
        rec.market_bad_debt_usd[slot.market_index] += bad
    state.books[s] = book


def _reference_causes(slot, one: LendingBook, source_attr: np.ndarray, n_sources: int, i: int) -> np.ndarray:
    """(S,) an account's causes: the sources that lowered its threshold-weighted exposure, pro rata."""
    m = len(slot.cols)
    harm = np.zeros(n_sources)
    for src_j in range(n_sources):
        change = sum((one.collateral[0, j] * slot.threshold[j] - one.debt[0, j])
                     * source_attr[slot.cols[j], src_j] * slot.oracle_scale[j] for j in range(m))
        harm[src_j] = max(-change, 0.0)
    causes = np.zeros(n_sources)
    if harm.sum() > 0 and not slot.initially_liquidatable[i]:
        causes = harm / harm.sum()
    else:
        causes[0] = 1.0
    return causes


def _reference_trades(prep: Prepared, state: CascadeState, scenario: ShockScenario, slot, ones: dict,
                      proposals: list, unit: np.ndarray, oracle: np.ndarray) -> tuple[list, list, list]:
    """Per proposal: asset units its keeper sells and buys (dicts by asset) and the USD it keeps."""
    m = len(slot.cols)
    sells, buys, held = [], [], []
    for i, liq in proposals:
        sell: dict[int, float] = {}
        buy: dict[int, float] = {}
        keep = 0.0
        on_sale = bool(slot.rules.for_sale(ones[i], liq)[0]) \
            if liq.absorbed_by_protocol and isinstance(slot.rules, AbsorbingRules) else True
        for j in range(m):
            a = int(slot.cols[j])
            got = liq.seized[0, j] * on_sale if liq.absorbed_by_protocol else liq.seized[0, j] - liq.fee[0, j]
            units = got * unit[a]
            if units != 0:
                sale = int(prep.receipt_underlying[a])
                sell[sale] = sell.get(sale, 0.0) + scenario.sell_through * units
                keep += (1 - scenario.sell_through) * units * state.price[sale]
            if liq.repaid[0, j] != 0 and not liq.absorbed_by_protocol:
                buy[a] = buy.get(a, 0.0) + liq.repaid[0, j]
        sells.append(sell)
        buys.append(buy)
        held.append(keep)
    if proposals[0][1].absorbed_by_protocol:
        for q, (i, liq) in enumerate(proposals):
            unit_cost = slot.rules.store_front_price(ones[i], oracle) \
                if isinstance(slot.rules, AbsorbingRules) else oracle
            on_sale = bool(slot.rules.for_sale(ones[i], liq)[0]) \
                if isinstance(slot.rules, AbsorbingRules) else True
            held[q] = -sum(scenario.sell_through * liq.seized[0, j] * on_sale * unit_cost[j] for j in range(m))
    return sells, buys, held


def _reference_record(prep: Prepared, slot, rec: RoundRecord, committed: tuple, sold: tuple, bought: tuple,
                      liq, oracle: np.ndarray, causes: np.ndarray) -> None:
    """A keeper's step in the round's record: its trades (``sold``, ``bought``: units by asset and
    the share taken) in what the round's keepers committed and in the flows, the amounts by asset
    and in oracle USD, the contagion by ``causes``."""
    src = prep.source_index[attr.liquidation_source(slot.protocol)]
    for a, units in sold[0].items():
        committed[0][a] += units * sold[1]
        rec.flows[a, src] += units * sold[1]
    for a, units in bought[0].items():
        committed[1][a] += units * bought[1]
        rec.flows[a, src] -= units * bought[1]
    p = prep.protocol_index[slot.protocol]
    repaid_usd = float(liq.repaid[0] @ oracle)
    rec.liquidated_usd[p] += repaid_usd
    rec.seized_usd[p] += float(liq.seized[0] @ oracle)
    rec.liquidation_steps[p] += 1
    rec.contagion[:, p] += repaid_usd * causes
    for j in range(len(slot.cols)):
        a = int(slot.cols[j])
        rec.repaid_tokens[p, a] += liq.repaid[0, j]
        rec.seized_tokens[p, a] += liq.seized[0, j]
        rec.fee_tokens[p, a] += liq.fee[0, j]


def _reference_hedging(prep: Prepared, state: CascadeState, scenario: ShockScenario, flows: np.ndarray) -> None:
    """Option pools re-hedge linearly (``net_gamma``), net long-gamma dealers to their own price."""
    A = len(prep.assets)
    net_gamma = [0.0] * A
    for h in range(len(prep.options.hedger_asset)):
        net_gamma[int(prep.options.hedger_asset[h])] += float(prep.options.hedger_gamma[h])
    damping = [1.0] * A      # net long-gamma dealers hedge to the price their own trade leaves
    for a in range(A):
        if scenario.price_impact and net_gamma[a] > 0 and a in state.venues:
            depth = sum(v.depth(0.01, True) for v in state.venues[a].venues)
            if depth > 0:
                damping[a] = 1.0 / (1.0 + 0.01 * state.price[a] * net_gamma[a] / depth)
    for h in range(len(prep.options.hedger_asset)):
        a = int(prep.options.hedger_asset[h])
        hedge = prep.source_index[attr.hedging_source(str(prep.options.hedger_protocol[h]))]
        flows[a, hedge] += prep.options.hedger_gamma[h] * (state.price[a] - state.hedge_spot[a]) * damping[a]
    state.hedge_spot = np.array([state.hedge_spot[a] + (state.price[a] - state.hedge_spot[a]) * damping[a]
                                 for a in range(A)], dtype=float)
    state.hedge_iv = state.iv.copy()


def _reference_prices(prep: Prepared, state: CascadeState, scenario: ShockScenario, rec: RoundRecord,
                      writedown: np.ndarray, asset_writedown: np.ndarray | None) -> None:
    """Flows through the venues, the price change split over the sources pushing it, receipts
    repriced, IVs; the round's record and the state advanced."""
    A, S = len(prep.assets), len(prep.sources)
    flows = rec.flows
    new_price = state.price.copy()
    if scenario.price_impact:
        for a in range(A):
            net = float(flows[a].sum())
            if net != 0 and a in state.venues:
                safe_trade(state.venues[a], net)
        reprice(state.venues, new_price, prep.price_pre, state.venue_mid_pre, prep.assets)
    change = np.zeros((A, S))
    exo_change = np.zeros((A, S))
    for a in range(A):
        if prep.is_receipt[a]:
            continue
        net = flows[a].sum()
        pushing = [abs(f) if np.sign(f) == np.sign(net) else 0.0 for f in flows[a]]
        if sum(pushing) > 0:
            for src_j in range(S):
                change[a, src_j] = (new_price[a] - state.price[a]) * pushing[src_j] / sum(pushing)
    exogenous = state.exogenous.copy()
    for a in range(A):
        if not prep.is_receipt[a]:
            continue
        u, p = int(prep.receipt_underlying[a]), int(prep.receipt_protocol_index[a])
        old_unit = _receipt_unit(prep, a, state.writedown, state.asset_writedown)
        new_unit = _receipt_unit(prep, a, writedown, asset_writedown)
        new_price[a] = new_unit * new_price[u]
        exogenous[a] = new_unit * exogenous[u]
        change[a] = new_unit * change[u]
        if p >= 0:
            wd = prep.source_index[attr.writedown_source(prep.protocols[p])]
            change[a, wd] -= (old_unit - new_unit) * state.price[u]
            exo_change[a, wd] -= (old_unit - new_unit) * state.exogenous[u]
    state.market_attr = state.market_attr + change
    state.exogenous_attr = state.exogenous_attr + exo_change
    _reference_advance(state, scenario, rec, new_price, exogenous, writedown, asset_writedown)


def _reference_advance(state: CascadeState, scenario: ShockScenario, rec: RoundRecord, new_price: np.ndarray,
                       exogenous: np.ndarray, writedown: np.ndarray, asset_writedown: np.ndarray | None) -> None:
    """The vol spiral, next round's oracle source, the round's record and the state moved on."""
    iv_after = state.iv.copy()
    for a in range(len(iv_after)):
        if not np.isnan(iv_after[a]):
            ret = new_price[a] / state.price[a] - 1.0 if state.price[a] > 0 else 0.0
            iv_after[a] = max(state.iv[a] - scenario.spot_vol_beta * ret, 0.01)
    source = np.where(state.oracle_from_venue, new_price, exogenous)
    state.source_history.append(source)
    state.source_attr_history.append(np.where(state.oracle_from_venue[:, None], state.market_attr,
                                              state.exogenous_attr))
    rec.price_after, rec.iv_after = new_price, iv_after
    rec.writedown = writedown if asset_writedown is None else np.where(np.isfinite(asset_writedown), asset_writedown,
                                                                       writedown)
    state.price, state.exogenous, state.iv, state.writedown = new_price, exogenous, iv_after, writedown
    state.asset_writedown = asset_writedown
    state.round += 1
