"""Interest while a cascade runs: each round, every book whose rule accrues interest
(:class:`protocols.base.InterestAccrual`) grows by ``round_seconds`` / ``round_blocks`` at the
rates it was read with, by the protocol's own index math (Aave's ``MathUtils``, Compound V2's
``accrueInterest``, Comet's ``accruedInterestIndices``, in each plugin's rules).

Accrual only lowers health factors (debt grows at least as fast as deposits in every market we
model), so the screening bound of each account falls by at most the book's largest debt growth;
accounts whose bound falls under 1 or that carry bad debt are screened again.
"""

from __future__ import annotations

import numpy as np

from protocols.base import InterestAccrual


def accrue_round(prep, state, seconds: float, blocks: float, health_margin: float) -> None:
    """Grow every accruing book of ``state`` by one round of interest (in place on ``state``)."""
    if seconds <= 0 and blocks <= 0:
        return
    for s, slot in enumerate(prep.slots):
        if not isinstance(slot.rules, InterestAccrual):
            continue
        book = state.books[s]
        growth = slot.rules.max_debt_growth(book, seconds, blocks)
        state.books[s] = slot.rules.accrue(book, seconds, blocks)
        state.owned[s] = True
        bound = state.health_bound[s]
        bound /= growth
        state.watch[s] |= (bound < 1.0 + health_margin) | (state.bad_debt[s] > 0)
        state.health_bound[s] = np.where(np.isfinite(bound), bound, np.inf)
