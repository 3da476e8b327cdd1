"""The smallest risk-parameter changes that keep every stress scenario's bad debt under a budget.

The method the risk teams serving Aave and Compound publish (Gauntlet, "Aave Market Risk
Assessment", 2020; Chaos Labs, "Aave V3 risk parameter recommendations" methodology): re-run the
stress scenarios with candidate parameters, keep the cheapest change that meets the loss budget.
Every candidate is evaluated settled, then shocked (:mod:`analyzer.engine.settle`): a change
takes effect before the stress, so its own liquidations at today's prices happen first. An
evaluation is expensive (a whole cascade per scenario), so the search spends them sparingly:

1. **Greedy, whole moves.** Each iteration ranks moves on the scenarios over the budget most
   (an excess of at least a tenth of the largest).
   The candidates are the parameters (each protocol's :class:`~protocols.base.ParameterTuning`)
   of the (protocol, market, collateral) rows whose accounts carry the excess bad debt (rows with
   at least 5% of the largest row's), plus the
   market-wide parameters of those markets (e.g. a store-front factor). Each candidate moves one
   governance step, then grows geometrically (4, 16, ... steps; all candidates of one level in one
   batch: in parallel on Dask) until the budget is met or its gain stops growing (one with no gain
   yet up to 16 steps: a small cut may liquidate nobody new). The
   best move, by bad debt avoided per unit of liquidations caused (``avoided / (caused + $1)``,
   avoided = the fall of the excess, or of total bad debt when no move lowers the excess; caused =
   the rise of the USD the settle phase liquidates at today's prices), among the moves that avoid
   at least a quarter of what the strongest avoids, is bisected back to the fewest steps that keep
   (within 1%) its gain, and taken whole. It is confirmed on every scenario; a move that only shifts
   the loss to another scenario makes the next ranking use every scenario with bad debt. When no
   candidate helps, every other parameter is tried at its whole range (all together first, one by
   one only if that helps); when none of those helps either, the budget is out of reach
   (``feasible`` is False).
2. **Pruning, exact.** For each changed parameter: if undoing one step keeps every scenario
   within the budget, the fewest steps that do are found by bisection; passes repeat until no
   single step of any parameter can be undone: every remaining step is needed (checked directly,
   one step back per parameter). A within-budget check runs the scenarios closest to the budget
   first and stops at the first one over it.

Evaluations are cached by the parameter vector (:class:`~analyzer.recommend.evaluate.Evaluator`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analyzer.errors import ContagionError
from analyzer.recommend.evaluate import Evaluator, Outcome
from protocols.base import ParameterChange, TunableParameter

log = logging.getLogger(__name__)
Key = tuple[str, str, str, str]     # protocol, market, asset, parameter
STRONG_SHARE = 0.25


@dataclass
class Search:
    """A search's state: the parameters and the steps taken on each."""

    parameters: dict[Key, TunableParameter]
    steps: dict[Key, int]
    symbols: dict[str, str] = field(default_factory=dict)     # asset address -> symbol, for messages
    collateral: set[tuple[str, str, str]] = field(default_factory=set)   # (protocol, market, asset) held as collateral

    def value(self, key: Key, steps: int) -> float:
        p = self.parameters[key]
        return round(min(max(p.value + p.tighten * steps * p.step, p.minimum), p.maximum), 6)

    def limit(self, key: Key) -> int:
        """The most steps the parameter can move within its range."""
        p = self.parameters[key]
        room = (p.value - p.minimum) if p.tighten < 0 else (p.maximum - p.value)
        return int(math.floor(room / p.step + 1e-9))

    def changes(self, steps: dict[Key, int] | None = None) -> list[ParameterChange]:
        steps = self.steps if steps is None else steps
        return [ParameterChange(k[0], k[1], k[2], k[3], self.value(k, n)) for k, n in sorted(steps.items()) if n > 0]


def parameters_of(snapshot, markets: Sequence[str] | None = None) -> dict[Key, TunableParameter]:
    """Every tunable parameter of the snapshot's protocols; ``markets``: keep those whose market
    address, asset address or asset symbol is listed."""
    from analyzer.recommend.evaluate import tunings

    symbols = snapshot.symbol_of()
    wanted = {m.lower() for m in markets or ()}
    out = {}
    for protocol, tuning in sorted(tunings(snapshot).items()):
        for p in tuning.parameters(snapshot):
            names = {p.market.lower(), p.asset.lower(), str(symbols.get(p.asset, "")).lower()}
            if wanted and not (names & wanted):
                continue
            out[(protocol, p.market, p.asset, p.parameter)] = p
    if wanted and not out:
        raise ContagionError(f"recommend: --markets {', '.join(markets or [])}: no tunable parameter matches "
                             f"(tunable assets: {', '.join(sorted({symbols.get(k[2], k[2]) for k in parameters_of(snapshot)}))})")
    return out


TOLERANCE_USD = 1.0       # a fall of bad debt smaller than this is none
GROWTH = 4                # a move is tried this many times further next
NO_GAIN_STEPS = 16        # ... and given up when it has not avoided anything by this many steps
ROW_SHARE = 0.05          # candidates: rows with at least this share of the largest row's bad debt
SCREEN_SHARE = 0.1        # moves are ranked on the scenarios with at least this share of the largest excess
KEEP_GAIN = 0.99          # a move is bisected back to the fewest steps keeping this share of its gain


def _loss(outcome: Outcome, budget: float, excess: bool) -> float:
    return outcome.excess_usd(budget) if excess else float(sum(outcome.bad_debt_usd.values()))


def _avoided(base: Outcome, trial: Outcome, budget: float) -> tuple[bool, float]:
    """(whether the excess over the budget falls, the fall: of the excess, else of total bad debt)."""
    excess = base.excess_usd(budget) - trial.excess_usd(budget)
    if excess > TOLERANCE_USD:
        return True, excess
    return False, _loss(base, budget, False) - _loss(trial, budget, False)


def _better(a: tuple[bool, float], b: tuple[bool, float]) -> bool:
    return a[0] > b[0] or (a[0] == b[0] and a[1] > b[1] + TOLERANCE_USD)


def candidates(search: Search, current: Outcome, names: Sequence[str]) -> list[Key]:
    """The parameters that may avoid the bad debt of the scenarios ``names``: those of the
    (protocol, market, collateral) rows whose accounts are left with bad debt (at least
    ``ROW_SHARE`` of the largest row's), and the market-wide ones (an asset no account holds as
    collateral there) of those rows' markets."""
    by_row: dict[tuple[str, str, str], float] = {}
    for n in names:
        for row, usd in current.bad_debt_collateral.get(n, {}).items():
            by_row[row] = by_row.get(row, 0.0) + usd
    largest = max(by_row.values(), default=0.0)
    rows = {row for row, usd in by_row.items() if usd > 0 and usd >= ROW_SHARE * largest}
    markets = {row[:2] for row in rows}
    return [k for k in sorted(search.parameters) if search.steps.get(k, 0) < search.limit(k)
            and (k[:3] in rows or (k[:2] in markets and k[:3] not in search.collateral))]


@dataclass
class Move:
    key: Key
    steps: int                   # steps added
    avoided: tuple[bool, float]
    outcome: Outcome
    tried: dict[int, Outcome]    # steps added -> outcome on the ranking scenarios


def grow(search: Search, evaluator: Evaluator, budget: float, keys: Sequence[Key], names: Sequence[str],
         base: Outcome, first: int = 1) -> list[Move]:
    """Each of ``keys`` moved ``first`` steps, then ``GROWTH`` times further (up to its range) while
    the budget is not met on ``names`` and its gain grows, or it has none yet and has moved fewer
    than ``NO_GAIN_STEPS`` (a small cut may liquidate nobody new). All moves of a level are one
    batch. The moves with a gain, each at its best size."""
    room = {k: search.limit(k) - search.steps.get(k, 0) for k in keys}
    best = {k: Move(k, 0, (False, 0.0), base, {}) for k in keys if room[k] > 0}
    sizes = {k: min(first, room[k]) for k in best}
    while sizes:
        growing = sorted(sizes)
        trials = [search.changes({**search.steps, k: search.steps.get(k, 0) + sizes[k]}) for k in growing]
        following, started = {}, time.perf_counter()
        outcomes = evaluator.evaluate(trials, names)
        log.debug("recommend: %d moves of %s steps on %s: %.0f s", len(trials),
                  sorted(set(sizes.values())), ", ".join(names), time.perf_counter() - started)
        for k, out in zip(growing, outcomes, strict=True):
            move = best[k]
            move.tried[sizes[k]] = out
            gain = _avoided(base, out, budget)
            improved = _better(gain, move.avoided) and gain[1] > TOLERANCE_USD
            if improved:
                move.steps, move.avoided, move.outcome = sizes[k], gain, out
            if sizes[k] < room[k] and out.excess_usd(budget) > 0 and \
                    (improved or (move.steps == 0 and sizes[k] < NO_GAIN_STEPS)):
                following[k] = min(sizes[k] * GROWTH, room[k])
        sizes = following
    return [m for m in best.values() if m.steps > 0]


def choose(moves: Sequence[Move], base: Outcome) -> Move | None:
    """The best of ``moves`` by avoided / (caused + $1), among those of the best kind (lowering the
    excess, else total bad debt) that avoid at least a quarter of what the strongest avoids (a free
    move that avoids crumbs does not win on its ratio alone); the first in key order on a tie."""
    if not moves:
        return None
    kind = max(m.avoided[0] for m in moves)
    ofkind = [m for m in moves if m.avoided[0] == kind]
    strongest = max(m.avoided[1] for m in ofkind)
    worthy = [m for m in ofkind if m.avoided[1] >= STRONG_SHARE * strongest]
    return max(worthy, key=lambda m: m.avoided[1] / (max(m.outcome.settle_liquidated_usd
                                                         - base.settle_liquidated_usd, 0.0) + 1.0))


def shrink(search: Search, evaluator: Evaluator, budget: float, move: Move, names: Sequence[str],
           base: Outcome) -> Move:
    """``move`` bisected back to the fewest steps that keep :data:`KEEP_GAIN` of its gain."""
    excess = move.avoided[0]
    goal = _loss(move.outcome, budget, excess) + (1 - KEEP_GAIN) * move.avoided[1]
    good = [n for n, out in move.tried.items() if _loss(out, budget, excess) <= goal]
    hi = min(good)
    lo = max((n for n in move.tried if n < hi), default=0)
    outcomes = dict(move.tried)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        outcomes[mid] = evaluator.one(search.changes({**search.steps, move.key: search.steps.get(move.key, 0) + mid}),
                                      names)
        hi, lo = (mid, lo) if _loss(outcomes[mid], budget, excess) <= goal else (hi, mid)
    return Move(move.key, hi, _avoided(base, outcomes[hi], budget), outcomes[hi], outcomes)


def _best_move(search: Search, evaluator: Evaluator, budget: float, names: list[str],
               widen: bool) -> Move | None:
    base = evaluator.one(search.changes(), names)
    keys = candidates(search, base, names)
    moves = grow(search, evaluator, budget, keys, names, base)
    others = [k for k in sorted(search.parameters) if k not in keys and search.steps.get(k, 0) < search.limit(k)]
    if not moves and widen and others:
        # every other parameter over its whole range: all together first, one by one only if that helps
        together = evaluator.one(search.changes({**search.steps, **{k: search.limit(k) for k in others}}), names)
        if _better(_avoided(base, together, budget), (False, 0.0)):
            moves = grow(search, evaluator, budget, others, names, base, first=max(map(search.limit, others)))
    chosen = choose(moves, base)
    return None if chosen is None else shrink(search, evaluator, budget, chosen, names, base)


def greedy(search: Search, evaluator: Evaluator, budget: float, say: Callable[[str], None]) -> bool:
    """Step 1 of the module docstring; returns whether every scenario ends within the budget."""
    current = evaluator.one(search.changes())
    everyone = widened = False
    while current.excess_usd(budget) > 0:
        largest = max(current.bad_debt_usd.values()) - budget
        names = [n for n, v in current.bad_debt_usd.items()
                 if (v > 0 if everyone else v - budget >= SCREEN_SHARE * largest)]
        move = _best_move(search, evaluator, budget, names, widen=widened)
        if move is None and not (widened or everyone):
            widened = True
            continue
        if move is None:
            return False
        steps = {**search.steps, move.key: search.steps.get(move.key, 0) + move.steps}
        trial = evaluator.one(search.changes(steps))
        if not _better(_avoided(current, trial, budget), (False, 0.0)):
            if everyone:
                return False
            everyone = True
            continue
        search.steps, current, everyone, widened = steps, trial, False, False
        key = move.key
        say(f"recommend: {key[0]} {search.symbols.get(key[2], key[2])} {key[3]} -> "
            f"{search.value(key, steps[key]):g} ({steps[key]} steps): worst bad debt "
            f"${max(current.bad_debt_usd.values()):,.0f}")
    return True


def within(evaluator: Evaluator, changes: Sequence[ParameterChange], budget: float, order: Sequence[str]) -> bool:
    """Whether every scenario stays within ``budget`` with ``changes``, running the scenarios in
    ``order`` one at a time and stopping at the first over it."""
    return all(evaluator.one(changes, [name]).bad_debt_usd[name] <= budget for name in order)


def prune(search: Search, evaluator: Evaluator, budget: float) -> None:
    """Step 2 of the module docstring (in place)."""
    current = evaluator.one(search.changes())
    order = sorted(current.bad_debt_usd, key=lambda n: -current.bad_debt_usd[n])   # closest to the budget first

    def ok(steps: dict[Key, int]) -> bool:
        return within(evaluator, search.changes(steps), budget, order)

    changed = True
    while changed:
        changed = False
        for key in sorted(k for k, n in search.steps.items() if n > 0):
            n = search.steps[key]
            if not ok({**search.steps, key: n - 1}):
                continue                                   # its last step is needed
            lo, hi = -1, n - 1                             # lo: fails (or untested), hi: within the budget
            while hi - lo > 1:
                mid = max((lo + hi) // 2, 0)
                lo, hi = (lo, mid) if ok({**search.steps, key: mid}) else (mid, hi)
            search.steps, changed = {**search.steps, key: hi}, True
    search.steps = {k: n for k, n in search.steps.items() if n > 0}


__all__ = ["Key", "Move", "Search", "candidates", "greedy", "parameters_of", "prune", "within"]
