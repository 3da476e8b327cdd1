"""Compound V2's carried rows at a rescan's block (:meth:`protocols.base.Reader.carry_accounts`):
each earlier positions row of an untouched account valued from its kept record, as the refresh
values it (:mod:`protocols.compound_v2.refresh`: the same records, borrows and values), with no
label, frame or account row built.

A row is matched to its record by one integer key, (account, market, side), over arrays: the
records that give a row at this block (a cToken balance, a borrow not zero) and the rows carried
must be the same keys one to one, or the account is read again in full. The entered markets (the
accounts rows' ``params``) change only with an event: they are carried as they were."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from analyzer import wideint
from analyzer.kept import Carried, KeptRows, KeptState
from protocols.compound_v2 import refresh


def carry_accounts(reader, kept: KeptState, rows: KeptRows) -> Carried:
    """The ``amount`` and ``raw`` of each of ``rows`` at this block, the accounts of ``kept`` to
    read again (those :func:`protocols.compound_v2.refresh.refresh_accounts` reads again, and
    those whose records and rows do not correspond one to one), and the kept words that change
    (a borrow kept as a balance whose market's index moved, read again)."""
    if reader.ctx.lens is None:     # no lens: nothing computed, as the refresh
        return Carried(np.zeros(len(rows)), pa.nulls(len(rows), pa.string()), np.ones(len(kept), dtype=bool))
    markets = reader.markets()
    found = refresh.at_block(reader, kept)
    records, debts = found.records, found.debts
    rec, debt, matched = _matched(found, rows, markets)
    # one to one: each record's collateral and debt rows at this block (a cToken balance, a borrow
    # not zero) matched by exactly one row each, each row by a record
    gives = np.zeros((len(records.owner), 2), dtype=bool)
    gives[:, 0] = records.balance != 0
    gives[debts.where[~wideint.is_zero(debts.limbs)], 1] = True
    slot = rec * 2 + rows.debt
    matched &= gives.reshape(-1)[slot]
    again = records.again.copy()
    again[records.owner[np.flatnonzero(np.bincount(slot[matched], minlength=gives.size) != gives.reshape(-1)) // 2]] \
        = True
    again_kept = found.stale.copy()
    again_kept[~found.stale] = again
    again_kept[rows.owner[~matched]] = True
    # values: the collateral rows', then the debt rows' (the others' raw null), each put in row order
    lent, owed = np.flatnonzero(matched & ~rows.debt), np.flatnonzero(matched & rows.debt)
    lent_amount, lent_raw = refresh.lent_values(markets, records.balance[rec[lent]], records.market[rec[lent]])
    owed_amount, owed_raw = refresh.owed_values(markets, wideint.taken(debts.limbs, debt[rec[owed]]),
                                                records.market[rec[owed]])
    amount = np.zeros(len(rows))
    amount[lent] = lent_amount
    amount[owed] = owed_amount
    taken = np.zeros(len(rows), dtype=np.int64)
    taken[lent] = np.arange(len(lent))
    taken[owed] = np.arange(len(lent), len(lent) + len(owed))
    raw = pa.concat_arrays([lent_raw, owed_raw]).take(pa.array(taken, mask=~matched))
    return Carried(amount, raw, again_kept, *_changed(reader, found, again_kept))


def _matched(found: refresh.AtBlock, rows: KeptRows, markets: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's record (its account's, in its reserve's market), by one search over the records'
    keys (account, market: ascending as kept, else sorted first); each record's place among the
    borrows (``found.debts``, -1 where none); and a mask of the rows with a record (not of a stale
    account, their reserve a market's cToken and their asset its underlying)."""
    records = found.records
    width = len(markets)
    keys = records.owner * width + records.market
    order = None if (keys[1:] > keys[:-1]).all() else np.argsort(keys, kind="stable")
    if order is not None:
        keys = keys[order]
    market, odd = _markets_of(markets, rows)
    place = np.cumsum(~found.stale) - 1     # each kept account's among those not stale
    wanted = place[rows.owner] * width + market
    rec = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    matched = ~odd & ~found.stale[rows.owner] & (keys[rec] == wanted) if len(keys) else np.zeros(len(rows), bool)
    if order is not None:
        rec = order[rec]
    debt = np.full(len(keys), -1, dtype=np.int64)
    debt[found.debts.where] = np.arange(len(found.debts.where))
    return rec, debt, matched


def _markets_of(markets: list[dict], rows: KeptRows) -> tuple[np.ndarray, np.ndarray]:
    """Each row's market (the place of its reserve among ``markets``) and a mask of the rows
    whose reserve is not a market's cToken, or whose asset is not that market's underlying."""
    index = {m["ctoken"]: j for j, m in enumerate(markets)}
    of_reserve = np.array([index.get(r, -1) for r in rows.reserves], dtype=np.int64)
    asset_place = {a: k for k, a in enumerate(rows.assets)}
    asset_of_market = np.array([asset_place.get(m["underlying"], -1) for m in markets], dtype=np.int64)
    market = of_reserve[rows.reserve] if len(of_reserve) else np.zeros(len(rows), dtype=np.int64)
    odd = market < 0
    market[odd] = 0
    odd |= asset_of_market[market] != rows.asset if len(markets) else np.ones(len(rows), dtype=bool)
    return market, odd


def _changed(reader, found: refresh.AtBlock, again: np.ndarray) -> tuple[np.ndarray | None, KeptState]:
    """The kept accounts (over those given, stale ones included) whose words change at this block:
    those not read ``again`` with a borrow kept as a balance read again (its index moved), and
    their new words (:func:`protocols.compound_v2.refresh.rewritten_words`)."""
    rewritten = refresh.moved_accounts(found.records, found.debts, len(found.kept)) & ~again[~found.stale]
    if not rewritten.any():
        return None, KeptState.empty()
    changed = np.zeros(len(found.stale), dtype=bool)
    changed[~found.stale] = rewritten
    return changed, refresh.rewritten_words(reader, found.kept, rewritten, found.records, found.debts)
