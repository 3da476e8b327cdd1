"""Supply and borrow caps: the stress scenarios run on the book grown to the caps.

A cap liquidates nobody today; it bounds how large the book may grow, and so how much collateral
keepers may have to sell in a crash. The risk teams that set Aave's and Venus' caps therefore
stress the book *at* the caps: Chaos Labs' supply cap methodology (governance.aave.com, "Chaos
Labs - Supply Cap Methodology", topic 12842, 2023; the same text for Venus) simulates the protocol
loss as supply grows towards a candidate cap and binary-searches the cap whose loss stays under a
target K ($400k, 0.1% of the safety module), and their "Updated Supply and Borrow Cap
Methodology" (topic 11602) assumes that "additional supply and borrow amounts will be distributed
similarly to the current supply and borrowing activity". This module builds that book:

**Growth** (:func:`grown_to_caps`). Each capped reserve (a market row with ``supply_cap`` or
``borrow_cap`` > 0, token units) has a growth factor ``cap / book total`` (at least 1: a book
over its cap is not shrunk by it) per side: the supply cap for its collateral (supply) side, the
borrow cap for its debt side. New supply and borrowing are distributed like today's: every
account of a market grows as a whole by ``g = min`` over the factors of the reserves it holds
(uncapped reserves do not bind; an account holding no capped reserve keeps its size). Growing an
account as a whole keeps its health factor (every protocol's health is homogeneous of degree one
in its balances), so the grown book is today's book at scale: no account is liquidatable at today's
prices that was not already; and no reserve ends over its cap (each account grows at most by each
factor of what it holds), those whose holders are all bound by it end exactly at it.

Borrowing is lent: a reserve's debt cannot outgrow what its supply may reach (an Aave borrow
transfers the underlying out of the aToken, a Compound or Comet borrow out of the market's cash),
so a debt side also has the factor ``supply cap / debt total`` where the asset's supply is capped.
Where the grown debt exceeds the grown supply, the reserve's *lenders* (accounts with no debt in
the market, whose health a larger supply cannot move) lend the difference, in proportion to what
they lend today (:func:`lender_growth`), up to the grown debt, so within the supply cap.

The growth is made on the snapshot's positions (``amount`` and the exact ``raw`` integer), the
rows every plugin builds its books from, so each protocol's own rule (exact integer math included)
sees a consistent book; it is the first step of every evaluation when the cap analysis is on
(:func:`at_caps` marks a snapshot; :func:`book_at_caps` is the evaluator's hook), before the
settle phase and the shock (:mod:`analyzer.engine.settle`).

**Search.** With the analysis on, each protocol's tuning lists its caps
(:func:`cap_parameters`): a lower cap is safer; steps of about 5% of today's cap rounded to
1, 2 or 5 × 10^k whole tokens (the round figures cap proposals use); never below today's book total
(a cap under the current supply blocks new supply but shrinks nothing in this model).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from protocols.base import ParameterChange, TunableParameter

META_KEY = "stress_at_caps"           # snapshot.meta flag: evaluate every scenario at the caps
CAP_COLUMN = {"supply_cap": "collateral", "borrow_cap": "debt"}     # cap column -> position side it bounds
STEP_SHARE = 0.05
KEYS = ["protocol", "market", "asset", "reserve"]


def at_caps(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` (the same tables) marked for the cap analysis: every evaluation grows it to the caps."""
    out = copy.copy(snapshot)
    out.meta = {**snapshot.meta, META_KEY: True}
    return out


def caps_on(snapshot: Snapshot) -> bool:
    return bool(snapshot.meta.get(META_KEY))


def book_totals(snapshot: Snapshot) -> pd.Series:
    """Token units per (protocol, market, asset, reserve, side) summed over the book's positions."""
    pos = snapshot.positions
    return pos.assign(reserve=pos["reserve"].fillna("")).groupby([*KEYS, "side"])["amount"].sum()


def growth_factors(snapshot: Snapshot) -> dict[tuple[str, str, str, str, str], float]:
    """(protocol, market, asset, reserve, side) -> cap / book total (>= 1), for every capped reserve side
    the book holds."""
    totals = book_totals(snapshot)
    mk = snapshot.markets.assign(reserve=snapshot.markets["reserve"].fillna(""))
    out: dict[tuple[str, str, str, str, str], float] = {}
    # the supply cap bounds the collateral side and, as the liquidity it can lend, the debt side
    for column, sides in (("supply_cap", ("collateral", "debt")), ("borrow_cap", ("debt",))):
        for row in mk[mk[column] > 0].drop_duplicates([*KEYS, column]).itertuples(index=False):
            for side in sides:
                key = (row.protocol, row.market, row.asset, row.reserve, side)
                total = float(totals.get(key, 0.0))
                if total > 0:
                    out[key] = min(out.get(key, math.inf), max(float(getattr(row, column)) / total, 1.0))
    return out


def account_growth(snapshot: Snapshot) -> pd.Series:
    """Per position row (the positions table's index): its account's growth factor ``g`` in its market."""
    factors = growth_factors(snapshot)
    pos = snapshot.positions
    keys = zip(pos["protocol"], pos["market"], pos["asset"], pos["reserve"].fillna(""), pos["side"], strict=True)
    own = pd.Series([factors.get(k, math.inf) for k in keys], index=pos.index, dtype=float)
    g = own.groupby([pos["protocol"], pos["market"], pos["account"]]).transform("min")
    return g.where(np.isfinite(g), 1.0)


def lender_growth(snapshot: Snapshot, g: pd.Series) -> pd.Series:
    """Per position row: the factor its supply grows by to fund the grown borrowing (module
    docstring), 1 but for the supply rows of accounts with no debt in their market, of reserves whose
    grown debt exceeds their grown supply."""
    pos = snapshot.positions
    keys = [pos["protocol"], pos["market"], pos["asset"], pos["reserve"].fillna("")]
    debt, supply = pos["side"] == "debt", pos["side"] == "collateral"
    in_debt = debt.groupby([pos["protocol"], pos["market"], pos["account"]]).transform("any")
    lends = supply & ~in_debt
    grown = (pos["amount"] * g)
    debt_total = grown.where(debt, 0.0).groupby(keys).transform("sum")
    supply_total = grown.where(supply, 0.0).groupby(keys).transform("sum")
    lent = grown.where(lends, 0.0).groupby(keys).transform("sum")
    short = (debt_total - supply_total).clip(lower=0.0)
    factor = 1.0 + short / lent.where(lent > 0)
    return factor.where(lends & (short > 0) & (lent > 0), 1.0)


def _scaled_raw(raw: str, factor: float) -> str:
    if factor == 1.0 or not raw:
        return raw
    micro = round(factor * 10**9)     # the factor to 9 decimals, in integer arithmetic on the raw amount
    return str(int(raw) * micro // 10**9)


def grown_to_caps(snapshot: Snapshot) -> Snapshot:
    """The book grown to the caps (module docstring): a copy whose positions are scaled, account by
    account, and its lenders' supply where the grown borrowing needs it."""
    g = account_growth(snapshot)
    g = g * lender_growth(snapshot, g)
    if (g == 1.0).all():
        return snapshot
    pos = snapshot.positions.copy()
    pos["amount"] = pos["amount"] * g
    pos["raw"] = [_scaled_raw(r, f) for r, f in zip(pos["raw"], g, strict=True)]
    out = copy.copy(snapshot)
    out.meta, out.positions = dict(snapshot.meta), pos
    return out


def book_at_caps(snapshot: Snapshot) -> Snapshot:
    """The book an evaluation stresses: grown to the caps when the analysis is on, else ``snapshot``."""
    return grown_to_caps(snapshot) if caps_on(snapshot) else snapshot


def cap_step(cap: float) -> float:
    """About :data:`STEP_SHARE` of ``cap`` as a round number of whole tokens (1, 2 or 5 × 10^k, at least 1)."""
    target = max(cap * STEP_SHARE, 1.0)
    power = 10 ** math.floor(math.log10(target))
    return float(max(m for m in (1, 2, 5) if m * power <= target) * power)


def cap_parameters(snapshot: Snapshot, protocol: str, columns: Sequence[str] = tuple(CAP_COLUMN)
                   ) -> list[TunableParameter]:
    """The caps of ``protocol``'s reserves a search may lower (module docstring), when the analysis is
    on: those set (> 0) and above the book's total, from today's cap down to that total (whole tokens)."""
    if not caps_on(snapshot):
        return []
    totals = book_totals(snapshot)
    mk = snapshot.markets[snapshot.markets["protocol"] == protocol]
    mk = mk.assign(reserve=mk["reserve"].fillna(""))
    out = []
    for column in columns:
        side = CAP_COLUMN[column]
        for row in mk[mk[column] > 0].drop_duplicates(["market", "asset", column]).itertuples(index=False):
            cap = float(getattr(row, column))
            floor = math.ceil(float(totals.get((protocol, row.market, row.asset, row.reserve, side), 0.0)))
            step = cap_step(cap)
            if cap - floor >= step:
                out.append(TunableParameter(str(row.market), str(row.asset), column, cap, step, float(floor), cap))
    return out


def apply_caps(snapshot: Snapshot, protocol: str, changes: Sequence[ParameterChange]) -> Snapshot:
    """``snapshot`` with the cap ``changes`` of ``protocol`` written into its market rows (whole tokens)."""
    mine = [c for c in changes if c.protocol == protocol and c.parameter in CAP_COLUMN]
    if not mine:
        return snapshot
    markets = snapshot.markets.copy()
    for c in mine:
        row = (markets["protocol"] == protocol) & (markets["market"] == c.market) & (markets["asset"] == c.asset)
        if not row.any():
            raise ContagionError(f"{protocol}: no reserve {c.asset} in market {c.market}")
        if not (c.value >= 0 and float(c.value).is_integer()):
            raise ContagionError(f"{protocol}: {c.parameter} {c.value} is not a whole number of tokens")
        markets.loc[row, c.parameter] = float(c.value)
    out = copy.copy(snapshot)
    out.meta, out.markets = dict(snapshot.meta), markets
    return out


def cap_table(recommendations: Sequence[dict]) -> list[dict]:
    """Per recommended cap: the bad debt per scenario at today's cap and at the recommended one (the
    other recommendations applied in both), from ``recommend``'s recommendation rows."""
    return [{"protocol": r["protocol"], "market": r["market"], "asset": r["asset"], "symbol": r["symbol"],
             "parameter": r["parameter"], "current_cap": r["old_value"], "recommended_cap": r["new_value"],
             "bad_debt_at_current_cap_usd": r["bad_debt_without_usd"], "bad_debt_at_recommended_cap_usd":
             r["bad_debt_with_usd"]} for r in recommendations if r["parameter"] in CAP_COLUMN]


__all__ = ["CAP_COLUMN", "META_KEY", "apply_caps", "at_caps", "book_at_caps", "cap_parameters", "cap_step",
           "cap_table", "caps_on", "grown_to_caps", "growth_factors", "lender_growth"]
