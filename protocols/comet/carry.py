"""Comet's rescan that carries an earlier scan's tables (:func:`carry_accounts`): each earlier
positions row of an untouched account gets its ``amount`` and ``raw`` at this block from the
source its kept words give (the principal's present value for the base asset's row, the kept
balance for a collateral row), as :func:`protocols.comet.refresh.refresh_accounts` computes them;
an account whose rows no longer match its sources is read again in full."""

from __future__ import annotations

import numpy as np

from analyzer import wideint
from analyzer.kept import Carried, KeptRows, KeptState
from protocols.comet import lens, refresh


def carry_accounts(reader, kept: KeptState, rows: KeptRows) -> Carried:
    """The carried rows' amounts and raw texts at this block, the accounts read again, the kept
    words that changed and every kept account's ``params`` (:meth:`protocols.base.Reader.carry_accounts`).

    The sources at this block (:func:`protocols.comet.refresh.at_block`) are each account's base
    balance (the principal's present value, a debt when the principal is negative; none when it is
    zero) and each collateral balance that is not zero, keyed ``account · (n + 1) + asset`` (asset
    0 the base, ``i + 1`` collateral ``i``, of ``n``): a dense table of every key gives each row's
    source. An account is read again when ``at_block`` says so, when it has nothing open, when one
    of its rows has no source of its asset and side (a principal whose sign flipped or came to
    zero, a balance come to zero, an asset the market no longer lists, a reserve Comet never
    writes) or when one of its sources has no row or two (a balance come from zero): its rows
    are then not those of its words."""
    now = refresh.at_block(reader, kept)
    state = now.state
    width = len(state["assets"]) + 1
    size, negative = now.principal.limbs()
    value = lens.present_values(size, negative, state["supply_index"], state["borrow_index"])
    based = np.flatnonzero(now.keep & ~wideint.is_zero(value))
    owner = np.concatenate([based, now.owner])
    which = np.concatenate([np.zeros(len(based), dtype=np.int64), now.asset + 1])
    debt = np.concatenate([negative[based], np.zeros(len(now.owner), dtype=bool)])
    source = np.full(len(kept) * width, -1, dtype=np.int64)
    source[owner * width + which] = np.arange(len(owner))
    code = _asset_codes(state, rows)
    valid = code >= 0
    at = np.where(valid, source[rows.owner * width + np.where(valid, code, 0)], -1)
    matched = (at >= 0) & (np.append(debt, False)[at] == rows.debt)
    at[~matched] = len(owner)           # past the sources: a zero balance, for the rows dropped
    again = ~now.keep
    again[rows.owner[~matched]] = True
    again[owner[np.bincount(at, minlength=len(owner) + 1)[:-1] != 1]] = True
    raw = wideint.taken(lens.stacked([wideint.taken(value, based), now.amount,
                                      np.zeros((1, 1), dtype=np.uint64)]), at)
    amount, text = refresh.amounts(state, raw, np.append(which, 0)[at])
    flagged = refresh.liquidatable(state, now.principal, now.owner, now.asset, now.amount)
    changed = now.changed & ~again
    return Carried(amount, text, again, changed if changed.any() else None,
                   refresh.kept_words(kept.names, now, changed, width - 1),
                   refresh.params(now.principal, now.assets_in, flagged))


def _asset_codes(state: dict, rows: KeptRows) -> np.ndarray:
    """Per row: its asset's place in the market (0: the base, ``i + 1``: collateral ``i``), -1
    for an asset the market does not list or a reserve Comet never writes (its rows' is "")."""
    place = {token: k for k, token in enumerate([state["base_token"], *(a["asset"] for a in state["assets"])])}
    assets = np.array([place.get(a, -1) for a in rows.assets] + [-1], dtype=np.int64)
    blank = np.array([r == "" for r in rows.reserves] + [False], dtype=bool)
    return np.where(blank[rows.reserve], assets[rows.asset], -1)
