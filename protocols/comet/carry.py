"""Comet's rescan that carries an earlier scan's tables (:func:`carry_accounts`): each earlier
positions row of an untouched account gets its ``amount`` and ``raw`` at this block from the
source its kept words give (the principal's present value for the base asset's row, the kept
balance for a collateral row), as :func:`protocols.comet.refresh.refresh_accounts` computes them;
an account whose rows no longer match its sources is read again in full."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from analyzer import wideint
from analyzer.kept import Carried, KeptRows, KeptState
from protocols.comet import lens, refresh
from protocols.comet.refresh import AtBlock


def carry_accounts(reader, kept: KeptState, rows: KeptRows) -> Carried:
    """The carried rows' amounts and raw texts at this block, the accounts read again, the kept
    words that changed and every kept account's ``params`` (:meth:`protocols.base.Reader.carry_accounts`).

    The sources at this block (:func:`protocols.comet.refresh.at_block`) are each account's base
    balance (the principal's present value, a debt when the principal is negative; none when it is
    zero), numbered as the account, and each collateral balance that is not zero, numbered after
    them (:func:`_sources`). Amounts and texts are computed per source and taken per row. An
    account is read again when ``at_block`` says so, when it has nothing open, when one of its
    rows has no source (a principal whose sign flipped or came to zero, a balance come to zero, an
    asset the market does not list, a reserve Comet never writes) or when one of its sources has
    no row or two (a balance come from zero): its rows are then not those of its words."""
    now = refresh.at_block(reader, kept)
    state, accounts = now.state, len(kept)
    size, negative = now.principal.limbs()
    value = lens.present_values(size, negative, state["supply_index"], state["borrow_index"])
    based = now.keep & ~wideint.is_zero(value)
    at = _sources(now, based, negative, rows)
    count = np.bincount(at[at >= 0], minlength=accounts + len(now.owner))
    again = ~now.keep
    again[rows.owner[at < 0]] = True
    again[based & (count[:accounts] != 1)] = True
    again[now.owner[count[accounts:] != 1]] = True
    base_amount, base_raw = refresh.amounts(state, value, np.zeros(accounts, dtype=np.int64))
    held_amount, held_raw = refresh.amounts(state, now.amount, now.asset + 1)
    at[at < 0] = 0                      # any source: the row's account is read again
    flagged = refresh.liquidatable(state, now.principal, now.owner, now.asset, now.amount)
    changed = now.changed & ~again
    return Carried(np.concatenate([base_amount, held_amount])[at],
                   pa.concat_arrays([base_raw, held_raw]).take(pa.array(at)), again,
                   changed if changed.any() else None,
                   refresh.kept_words(kept.names, now, changed, len(state["assets"])) if changed.any()
                   else KeptState.empty(),
                   refresh.params(now.principal, now.assets_in, flagged))


def _sources(now: AtBlock, based: np.ndarray, negative: np.ndarray, rows: KeptRows) -> np.ndarray:
    """Per row: its source at this block, -1 for none. A base row's is its account's base balance
    (numbered as the account) where the account has one of the row's side (``based``, debt where
    ``negative``); a collateral row's is the balance of its account and asset that is not zero
    (numbered after the accounts, in ``now``'s order), found through a table of every account and
    asset (their balances are by asset then account)."""
    accounts, assets = len(now.keep), len(now.state["assets"])
    code = _asset_codes(now.state, rows)
    base = (code == 0) & based[rows.owner] & (negative[rows.owner] == rows.debt)
    at = np.where(base, rows.owner, -1)
    held = (code > 0) & ~rows.debt
    entry = np.full(accounts * assets + 1, -1, dtype=np.int32)     # the last: none, for the other rows
    entry[now.asset * accounts + now.owner] = np.arange(len(now.owner), dtype=np.int32)
    found = entry[np.where(held, (code - 1) * accounts + rows.owner, accounts * assets)]
    mine = held & (found >= 0)
    at[mine] = accounts + found[mine]
    return at


def _asset_codes(state: dict, rows: KeptRows) -> np.ndarray:
    """Per row: its asset's place in the market (0: the base, ``i + 1``: collateral ``i``), -1
    for an asset the market does not list or a reserve Comet never writes (its rows' is "")."""
    place = {token: k for k, token in enumerate([state["base_token"], *(a["asset"] for a in state["assets"])])}
    assets = np.array([place.get(a, -1) for a in rows.assets] + [-1], dtype=np.int64)
    blank = np.array([r == "" for r in rows.reserves] + [False], dtype=bool)
    return np.where(blank[rows.reserve], assets[rows.asset], -1)
