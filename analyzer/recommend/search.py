"""The smallest risk-parameter changes that keep every stress scenario's bad debt under a budget.

The method the risk teams serving Aave and Compound publish (Gauntlet, "Aave Market Risk
Assessment", 2020; Chaos Labs, "Aave V3 risk parameter recommendations" methodology): re-run the
stress scenarios with candidate parameters, keep the cheapest change that meets the loss budget.
Every candidate is evaluated settled, then shocked (:mod:`analyzer.engine.settle`): a change
takes effect before the stress, so its own liquidations at today's prices happen first.

1. **Greedy.** Each iteration moves every tunable parameter (each protocol's
   :class:`~protocols.base.ParameterTuning`) ``jump`` governance steps in its safer direction and
   keeps the move with the most bad debt avoided per unit of liquidations caused:
   ``avoided / (caused + $1)``, avoided = the fall of the excess over the budget summed over
   scenarios (the fall of total bad debt when no move lowers the excess), caused = the rise of the
   USD the settle phase liquidates at today's prices, among the moves that avoid at least a quarter
   of what the strongest move avoids (a free move that avoids crumbs does not win on its ratio
   alone). No improving move at ``jump`` steps: the jump doubles (up to 16 × ``jump``); none at
   all: the budget is out of reach (``feasible`` is False).
2. **Pruning.** Each parameter's change is undone (all of it, half, or one step) while every
   scenario stays within the budget, until no single step of any parameter can be undone: every
   remaining step is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analyzer.errors import ContagionError
from analyzer.recommend.evaluate import Evaluator, Outcome
from protocols.base import ParameterChange, TunableParameter

Key = tuple[str, str, str, str]     # protocol, market, asset, parameter
STRONG_SHARE = 0.25


@dataclass
class Search:
    """A search's state: the parameters and the steps taken on each."""

    parameters: dict[Key, TunableParameter]
    steps: dict[Key, int]
    symbols: dict[str, str] = field(default_factory=dict)     # asset address -> symbol, for messages

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


def _gain(base: Outcome, trial: Outcome, budget: float) -> tuple[float, float]:
    excess = base.excess_usd(budget) - trial.excess_usd(budget)
    total = sum(base.bad_debt_usd.values()) - sum(trial.bad_debt_usd.values())
    return excess, total


def greedy(search: Search, evaluator: Evaluator, budget: float, jump: int,
           say: Callable[[str], None]) -> bool:
    """Step 1 of the module docstring; returns whether every scenario ends within the budget.
    Moves are ranked on the scenarios near or over the budget (bad debt above half of it); the
    chosen move is checked on all, and a move that only shifts the loss to another scenario makes
    the next ranking use every scenario."""
    current = evaluator.one(search.changes())
    everyone = False
    while current.excess_usd(budget) > 0:
        names = None if everyone else [n for n, v in current.bad_debt_usd.items() if v > 0.5 * budget]
        chosen = _best_move(search, evaluator, budget, jump, names)
        if chosen is None and not everyone:
            everyone = True
            continue
        if chosen is None:
            return False
        trial = evaluator.one(search.changes(chosen[3]))
        if trial.excess_usd(budget) >= current.excess_usd(budget) and \
                sum(trial.bad_debt_usd.values()) >= sum(current.bad_debt_usd.values()):
            if everyone:
                return False
            everyone = True
            continue
        search.steps, current, everyone = chosen[3], trial, False
        key = chosen[2]
        say(f"recommend: {key[0]} {search.symbols.get(key[2], key[2])} {key[3]} -> "
            f"{search.value(key, search.steps[key]):g}: worst bad debt ${max(current.bad_debt_usd.values()):,.0f}")
    return True


def _best_move(search: Search, evaluator: Evaluator, budget: float, jump: int, names: list[str] | None):
    """(gains the excess?, score, key, steps) of the best move on the scenarios ``names``, or None."""
    current = evaluator.one(search.changes(), names)
    size = jump
    while size <= 16 * jump:
        trials = {}
        for key in sorted(search.parameters):
            steps = min(search.steps.get(key, 0) + size, search.limit(key))
            if steps > search.steps.get(key, 0):
                trials[key] = {**search.steps, key: steps}
        outcomes = evaluator.evaluate([search.changes(t) for t in trials.values()], names)
        scored = []
        for (key, trial), out in zip(trials.items(), outcomes, strict=True):
            excess, total = _gain(current, out, budget)
            caused = max(out.settle_liquidated_usd - current.settle_liquidated_usd, 0.0)
            if excess > 1e-6 or total > 1e-6:
                avoided = excess if excess > 1e-6 else total
                scored.append((excess > 1e-6, avoided / (caused + 1.0), key, trial, avoided))
        if scored:
            # among the moves that gain the excess (else any), those that avoid at least a quarter of
            # what the strongest avoids: a move that avoids crumbs at no cost does not win on ratio alone
            best_kind = max(s[0] for s in scored)
            kind = [s for s in scored if s[0] == best_kind]
            strongest = max(s[4] for s in kind)
            worthy = [s for s in kind if s[4] >= STRONG_SHARE * strongest]
            return max(worthy, key=lambda s: s[1])[:4]     # the first in key order on a tie
        size *= 2
    return None


def prune(search: Search, evaluator: Evaluator, budget: float) -> None:
    """Step 2 of the module docstring (in place)."""
    changed = True
    while changed:
        changed = False
        for key in sorted(k for k, n in search.steps.items() if n > 0):
            # the whole change first, then half of it, then one step: bad debt need not be monotone
            # in a parameter (a smaller bonus seizes less, and pays keepers less for slippage)
            for undo in sorted({search.steps[key], (search.steps[key] + 1) // 2, 1}, reverse=True):
                trial = {**search.steps, key: search.steps[key] - undo}
                if evaluator.one(search.changes(trial)).excess_usd(budget) == 0:
                    search.steps, changed = trial, True
                    break
    search.steps = {k: n for k, n in search.steps.items() if n > 0}


__all__ = ["Key", "Search", "greedy", "parameters_of", "prune"]
