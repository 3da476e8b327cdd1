"""Interest while a cascade runs: each round, every book whose rule accrues interest
(:class:`protocols.base.InterestAccrual`) grows by ``round_seconds`` / ``round_blocks`` at the
rates it was read with, by the protocol's own index math (Aave's ``MathUtils``, Compound V2's
``accrueInterest``, Comet's ``accruedInterestIndices``, in each plugin's rules).

Beside a replay the time is the replay's own clock (``ShockScenario.round_clock``): per protocol
and round, the seconds and blocks that passed on the fork before that protocol's keepers read
the round's book. The rounds of a replay are far from even (round 0 carries the shock's swaps and
most liquidations, each a block; a quiet round mines none) and a protocol's keepers act after the
ones before it in the round; debt that is liquidated later owes interest for longer, so an even
spread moves bad debt (Compound V2 at WETH −40%: $14 of $657k).

Accrual only lowers health factors (debt grows at least as fast as deposits in every market we
model), so the screening bound of each account falls by at most the book's largest debt growth;
accounts whose bound falls under 1 or that carry bad debt are screened again.
"""

from __future__ import annotations

import numpy as np

from protocols.base import InterestAccrual


def round_time(scenario, protocol: str, round_index: int) -> tuple[float, float]:
    """(seconds, blocks) of interest ``protocol`` accrues at the start of round ``round_index``:
    the replay's clock where it has that round, else the scenario's uniform time per round."""
    clock = scenario.round_clock.get(protocol, ())
    if round_index < len(clock):
        return float(clock[round_index][0]), float(clock[round_index][1])
    return scenario.round_seconds or 0.0, scenario.round_blocks or 0.0


def accrue_round(prep, state, scenario, health_margin: float) -> None:
    """Grow every accruing book of ``state`` by round ``state.round``'s interest (in place)."""
    for s, slot in enumerate(prep.slots):
        if not isinstance(slot.rules, InterestAccrual):
            continue
        seconds, blocks = round_time(scenario, slot.protocol, state.round)
        if seconds <= 0 and blocks <= 0:
            continue
        book = state.books[s]
        growth = slot.rules.max_debt_growth(book, seconds, blocks)
        state.books[s] = slot.rules.accrue(book, seconds, blocks)
        bound = state.health_bound[s]
        bound /= growth
        state.watch[s] |= (bound < 1.0 + health_margin) | (state.bad_debt[s] > 0)
        state.health_bound[s] = np.where(np.isfinite(bound), bound, np.inf)
