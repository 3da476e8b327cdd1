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
    """Each row's record (its account's, in its reserve's market); each record's place among the
    borrows (``found.debts``, -1 where none); and a mask of the rows with a record (not of a stale
    account, their reserve a market's cToken and their asset its underlying). Records as kept
    (each account's in ascending markets) of at most 64 markets are found by their accounts' sets
    of markets (:func:`_by_markets_held`, rows in any order), others by a search (:func:`_by_search`)."""
    records = found.records
    width = len(markets)
    market, odd = _markets_of(markets, rows)
    owner = (np.cumsum(~found.stale) - 1)[rows.owner]     # each row's account among those not stale
    keys = records.owner * width + records.market
    # each account's markets ascending (an account read again may hold anything: its rows are not used)
    ascending = bool(((keys[1:] > keys[:-1]) | records.again[records.owner[1:]]).all())
    if ascending and width <= BITS:
        rec, held = _by_markets_held(records, len(found.kept), owner, market)
    else:
        rec, held = _by_search(keys, owner * width + market)
    debt = np.full(len(keys), -1, dtype=np.int64)
    debt[found.debts.where] = np.arange(len(found.debts.where))
    return rec, debt, held & ~odd & ~found.stale[rows.owner]


BITS = 64       # markets in a set of markets held as one uint64
BIT = np.left_shift(np.uint64(1), np.arange(BITS, dtype=np.uint64))    # each market's bit
BELOW = BIT - np.uint64(1)      # the bits of the markets below each


def _by_markets_held(records: refresh.Records, count: int, owner: np.ndarray, market: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The record of each (``owner``, ``market``) and whether there is one, at once over the
    rows in any order: each account's markets as one set of bits, a market's record the account's
    first plus the number of markets below it in the set (records in ascending markets)."""
    ends = np.cumsum(np.bincount(records.owner, minlength=count))
    first = np.concatenate([[0], ends[:-1]])
    # each account's set: the difference of running sums of its records' bits (distinct markets:
    # their sum is their set; modulo 2^64 the differences are exact)
    running = np.zeros(len(records.market) + 1, dtype=np.uint64)
    np.cumsum(BIT[records.market], out=running[1:])
    sets = (running[ends] - running[first])[owner]
    there = (sets & BIT[market]) != 0
    return np.where(there, first[owner] + np.bitwise_count(sets & BELOW[market]), 0), there


def _by_search(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The place of each of ``wanted`` in ``keys`` (sorted first where they are not) and whether
    it is there (a search per row: ten times longer over rows out of order)."""
    order = None if (keys[1:] > keys[:-1]).all() else np.argsort(keys, kind="stable")
    ordered = keys if order is None else keys[order]
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    at = np.minimum(np.searchsorted(ordered, wanted), len(keys) - 1)
    there = ordered[at] == wanted
    return (at if order is None else order[at]), there


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
