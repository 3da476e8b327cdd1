"""Compound V2's untouched accounts at a rescan's block, computed from their kept words
(:func:`protocols.compound_v2.lens.rows_from_figures`) at once over arrays, with no Python
integer per word.

The words are read as the state holds them (:attr:`analyzer.kept.KeptState.narrow`, int64):
markets, flags, cToken balances and indices fit. Borrows are taken as limbs
(:meth:`analyzer.kept.KeptState.limbs`, :mod:`analyzer.wideint`): the 18-decimal principals past
2^63 (about 9.2 tokens: 6,462 of 14,831 borrows on mainnet-scale) as every other, each computed
at the new index exactly (:func:`analyzer.wideint.floor_quotients`), its amount
and text from its limbs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import wideint
from analyzer.errors import ContagionError
from analyzer.kept import KeptState, Refreshed, objects
from analyzer.textcolumns import decimal_strings, labels, repeated, text
from protocols.compound_v2 import lens
from protocols.compound_v2.constants import MANTISSA, PROTOCOL
from protocols.compound_v2.lens import MASK_BITS, RECORD, market_tag
from protocols.compound_v2.quotients import product_quotients

FLOAT_POWERS_OF_TEN = np.array([float(10**d) for d in range(78)])   # as Python divides a float by 10**d


def refresh_accounts(reader, previous: KeptState) -> Refreshed:
    """Untouched accounts at this block, at once over arrays: cToken balances and entered
    markets as kept (valued at this block's ``exchangeRateStored``), borrows kept as their pair
    computed at the market's ``borrowIndex`` now (``principal × borrowIndex / interestIndex``,
    CToken.borrowBalanceStoredInternal), borrows kept as a balance taken as kept where the index
    is the one they were read at and ``borrowBalanceStored`` read again where it moved. Accounts
    kept under another market list (or layout), or with a word the refresh does not expect (a
    market past the lens's mask, a cToken balance past int64, a pair in a market without
    ``borrowIndex()``), are read again in full."""
    if reader.ctx.lens is None:
        return Refreshed({}, KeptState.empty(), previous.accounts.tolist())
    found = at_block(reader, previous)
    refreshed = _refreshed(reader, found.kept, found.records, found.debts)
    carried = np.zeros(len(found.stale), dtype=bool)     # over the accounts before the stale ones were taken out
    carried[~found.stale] = refreshed.carried
    return Refreshed(refreshed.tables, refreshed.state, previous.accounts[found.stale].tolist() + refreshed.again,
                     carried)


class AtBlock(NamedTuple):
    """Kept accounts at a rescan's block (:func:`at_block`): ``stale``, over the accounts given,
    those kept under another market list (or layout); ``kept``, the others (taken alone when
    there are stale ones); their ``records`` and ``debts`` at this block."""

    stale: np.ndarray
    kept: KeptState
    records: Records
    debts: Debts


def at_block(reader, previous: KeptState) -> AtBlock:
    """The records of the accounts of ``previous`` kept under this block's market list and their
    borrows at this block (balances that moved read again through the lens): what both the
    refresh and the carry (:mod:`protocols.compound_v2.carry`) compute their rows of."""
    markets = reader.markets()
    stale = previous.narrow[previous.starts] != market_tag(markets)     # a wide tag is 0 there: stale too
    kept = previous.take(~stale) if stale.any() else previous
    records = _records(kept, len(markets))
    return AtBlock(stale, kept, records, _debts(reader, kept, records))


class Records(NamedTuple):
    """The kept records of a state (:func:`protocols.compound_v2.lens.rows_from_figures`), as
    int64 columns: ``owner`` (the account row), ``at`` (where its words are), ``market``, cToken
    ``balance``, ``borrowed`` (the borrow word: a principal or a balance, 0 where past int64),
    ``wide`` (the borrow word is past int64), ``index`` (its interestIndex, or the borrowIndex it
    was read at), ``paired``; and ``again``, over the accounts: those to read again in full."""

    owner: np.ndarray
    at: np.ndarray
    market: np.ndarray
    balance: np.ndarray
    borrowed: np.ndarray
    wide: np.ndarray
    index: np.ndarray
    paired: np.ndarray
    again: np.ndarray


def _records(previous: KeptState, count: int) -> Records:
    """The records of ``previous`` under a list of ``count`` markets, as int64 columns of its
    words as held (:attr:`analyzer.kept.KeptState.narrow`: no lookup per word). A word past int64
    is a borrow's (a principal or balance: ``wide``), or the account's words are not the refresh's
    to read (its counts, markets, balances, indices or flags): read again."""
    narrow, wide_at, starts = previous.narrow, previous.wide_at, previous.starts
    owner, at = previous.entries(2 + narrow[starts + 1], RECORD)
    record = np.searchsorted(at, wide_at, side="right") - 1     # each wide word's record, if it is in one
    borrow = (record >= 0) & (wide_at - at[np.maximum(record, 0)] == 2)
    wide = np.zeros(len(at), dtype=bool)
    wide[record[borrow]] = True
    market = narrow[at]
    odd = (market < 0) | (market >= min(count, MASK_BITS))
    again = np.zeros(len(previous), dtype=bool)
    again[owner[odd]] = True
    again[np.searchsorted(starts, wide_at[~borrow], side="right") - 1] = True
    return Records(owner, at, np.where(odd, 0, market), narrow[at + 1], narrow[at + 2], wide, narrow[at + 3],
                   narrow[at + 4] == 1, again)


class Debts(NamedTuple):
    """The borrow of each record with one (``where``, positions in :class:`Records`) at this
    block, as limbs (:mod:`analyzer.wideint`); ``moved``: those kept as a balance and read again,
    and ``fresh`` their balances (Python integers, in order)."""

    where: np.ndarray
    limbs: np.ndarray
    moved: np.ndarray
    fresh: np.ndarray


def _debts(reader, previous: KeptState, records: Records) -> Debts:
    """Each kept borrow at this block (:func:`refresh_accounts`), exactly, over limbs; the accounts
    whose borrows cannot be computed (no ``borrowIndex()`` for a pair; the node refusing the lens
    for a moved balance) are marked in ``records.again``."""
    indexes = [m.get("borrow_index") for m in reader.markets()]
    where = np.flatnonzero((records.borrowed != 0) | records.wide)
    owner, market, at = records.owner[where], records.market[where], records.at[where]
    kept_index, paired = records.index[where], records.paired[where]
    limbs, negative = previous.limbs(at + 2)
    records.again[owner[negative | (paired & np.array([i is None for i in indexes])[market])]] = True
    # pairs at the new index: principal × borrowIndex // interestIndex (CToken.borrowBalanceStoredInternal)
    computed = np.flatnonzero(paired & ~records.again[owner])
    now = [i or 0 for i in indexes]
    product = wideint.scaled_quotients(wideint.taken(limbs, computed), now, [0] * len(now), market[computed], 0)
    quotient, exact = wideint.floor_quotients(product, kept_index[computed])
    if not exact.all():         # an interestIndex past 2^62 (or no extended precision): Python integers
        slow = np.flatnonzero(~exact)
        ints = wideint.to_ints(wideint.taken(product, slow)) // kept_index[computed[slow]].astype(object)
        quotient = wideint.put(quotient, slow, wideint.from_ints(ints))
    limbs = wideint.put(wideint.widened(limbs, len(quotient)), computed, quotient)
    # balances whose market's index moved since they were read: read again
    now_small = np.array([-1 if i is None or i >= 2**63 else i for i in indexes], dtype=np.int64)[market]
    same = (kept_index == now_small) & (now_small >= 0)
    odd = np.flatnonzero(now_small < 0)     # an index past int64 now (or none): compared as Python integers
    same[odd] = kept_index[odd].astype(object) == objects([-1 if i is None else i for i in indexes])[market[odd]]
    moved = ~paired & ~same & ~records.again[owner]
    fresh = _read_again(reader, previous, records, owner[moved], market[moved]) if moved.any() \
        else np.zeros(0, dtype=object)
    limbs = wideint.put(limbs, np.flatnonzero(moved), wideint.from_ints(fresh))
    return Debts(where, limbs, moved & ~records.again[owner], fresh)


def _read_again(reader, previous: KeptState, records: Records, owner: np.ndarray, market: np.ndarray) -> np.ndarray:
    """``borrowStored`` of the ``owner`` accounts' borrows in ``market`` (in record order) through
    the lens; 0 for the accounts whose node refused it, marked in ``records.again``."""
    masks = np.zeros(len(previous), dtype=object)
    np.add.at(masks, owner, objects([1 << j for j in market.tolist()]))
    who = np.flatnonzero(np.bincount(owner, minlength=len(previous)))
    rows = lens.borrows_stored(reader, dict(zip(previous.accounts[who].tolist(), masks[who].tolist(), strict=True)))
    if rows is None:                # the node stopped taking overrides: read these again
        records.again[who] = True
        return np.zeros(len(owner), dtype=object)
    fresh = [value for row in rows for value in row]    # each row: one account's moved markets in market order
    if len(fresh) != len(owner):
        raise ContagionError(f"the Compound V2 lens returned {len(fresh)} borrow balances for {len(owner)} asked")
    return objects(fresh)


def _refreshed(reader, previous: KeptState, records: Records, debts: Debts) -> Refreshed:
    """The rows and kept words (:func:`protocols.compound_v2.lens.rows_from_figures`) of the
    accounts not read again, from their ``records`` and ``debts`` at this block. Every other
    record's words hold at this block as kept (a pair, a balance whose index has not moved, no
    borrow): only the accounts with a moved borrow have their words written again (``carried``:
    the others). Positions: every collateral, then every debt."""
    markets = reader.markets()
    owner, market, balance, again = records.owner, records.market, records.balance, records.again
    debt = ~wideint.is_zero(debts.limbs)
    opened = np.zeros(len(previous), dtype=bool)
    opened[owner[balance != 0]] = True
    opened[owner[debts.where[debt]]] = True
    opened &= ~again
    rewritten = moved_accounts(records, debts, len(previous))
    lent = np.flatnonzero((balance != 0) & opened[owner])
    lent_amount, lent_raw = lent_values(markets, balance[lent], market[lent])
    mine = np.flatnonzero(debt & opened[owner[debts.where]])
    owed, owed_raw = owed_values(markets, wideint.taken(debts.limbs, mine), market[debts.where[mine]])
    where = np.concatenate([lent, debts.where[mine]])
    j = market[where]
    n = len(where)
    # labels taken from large_string (the snapshot's string columns hold it: none cast again)
    names = _large(previous.accounts)      # converted once, labelling every side
    positions = pd.DataFrame({"protocol": repeated(PROTOCOL, n), "market": repeated(reader.comptroller, n),
                              "account": labels(names, owner[where]),
                              "asset": labels(_large([m["underlying"] for m in markets]), j),
                              "reserve": labels(_large([m["ctoken"] for m in markets]), j),
                              "side": labels(_large(["collateral", "debt"]), np.repeat([0, 1], [len(lent), len(mine)])),
                              "amount": np.concatenate([lent_amount, owed]),
                              "raw": text(pa.concat_arrays([lent_raw, owed_raw]))},
                             copy=False)       # every column is new here: none copied
    return Refreshed({"positions": positions, "accounts": _account_rows(reader, previous, opened, names)},
                     rewritten_words(reader, previous, opened & rewritten, records, debts),
                     previous.accounts[again].tolist(), carried=opened & ~rewritten)


def lent_values(markets: list[dict], balance: np.ndarray, market: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Collateral positions' ``amount`` and ``raw`` (Arrow text) of their cToken ``balance``
    (int64) in ``market``: cToken balance × exchangeRateStored / 1e18 / 10^decimals, and the
    cToken balance, as :func:`protocols.compound_v2.lens.rows_from_figures`."""
    decimals = np.array([m["underlying_decimals"] for m in markets], dtype=np.int64)
    underlying = product_quotients(balance, [m["exchange_rate_mantissa"] for m in markets], market, MANTISSA)
    return underlying / FLOAT_POWERS_OF_TEN[decimals[market]], decimal_strings(balance)


def owed_values(markets: list[dict], limbs: np.ndarray, market: np.ndarray) -> tuple[np.ndarray, pa.Array]:
    """Debt positions' ``amount`` and ``raw`` (Arrow text) of their borrow balances (``limbs``,
    :mod:`analyzer.wideint`) in ``market``: balance / 10^decimals, and the balance."""
    decimals = np.array([m["underlying_decimals"] for m in markets], dtype=np.int64)
    return wideint.quotient_floats(limbs, decimals[market]), wideint.decimal_text(limbs)


def moved_accounts(records: Records, debts: Debts, count: int) -> np.ndarray:
    """A mask over the ``count`` accounts of ``records``: those with a borrow kept as a balance
    and read again (its market's index moved), whose kept words change."""
    moved = np.zeros(count, dtype=bool)
    moved[records.owner[debts.where[debts.moved]]] = True
    return moved


def rewritten_words(reader, previous: KeptState, rows: np.ndarray, records: Records, debts: Debts) -> KeptState:
    """The kept words of the accounts ``rows`` (those with a moved borrow), taken alone (not a
    copy of every account's), each moved borrow's record written: its balance now and the
    market's ``borrowIndex`` now."""
    if not rows.any():
        return KeptState.empty()
    kept = previous.take(rows)
    moved_at = debts.where[debts.moved]
    who = records.owner[moved_at]
    mine = rows[who]
    rank = np.cumsum(rows) - 1
    at = kept.starts[rank[who[mine]]] + records.at[moved_at[mine]] - previous.starts[who[mine]]
    words = kept.values(np.arange(int(kept.lengths.sum())))
    words[at + 2] = debts.fresh[mine]
    words[at + 3] = objects([m.get("borrow_index") or 0 for m in reader.markets()])[records.market[moved_at[mine]]]
    return KeptState(kept.accounts, kept.lengths, words)


def _account_rows(reader, previous: KeptState, opened: np.ndarray, names) -> pd.DataFrame:
    """Accounts rows of the ``opened`` kept accounts (``names``: every kept account's, as Arrow
    text): their entered markets by cToken. Accounts share a few sets of entered markets: each
    set is written once."""
    markets = reader.markets()
    rows = np.flatnonzero(opened)
    n = len(rows)
    starts = previous.starts[rows]
    narrow = previous.narrow        # no word of these past int64 (_records)
    count = narrow[starts + 1]
    owner = np.repeat(np.arange(n), count)
    within = _ranks(count)
    market = narrow[starts[owner] + 2 + within]
    # each set as one number, its markets as digits (base: one more than the markets), where it fits
    # in 64 bits; otherwise the sets as rows
    base, width, ends = len(markets) + 1, int(count.max(initial=0)), np.cumsum(count)
    if base ** (width + 1) < 2**62:
        # each account's digits summed as the difference of running sums (modulo 2^64: exact, each sum fits)
        placed = ((market + 1) * base ** (width - within)).astype(np.uint64)
        running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(placed)])
        digits = (running[ends] - running[ends - count]).astype(np.int64)
        which, _ = pd.factorize(digits)
        # the sets in order of first appearance: each first where its code passes every earlier one
        first = np.flatnonzero(which > np.maximum.accumulate(np.concatenate([[-1], which[:-1]])))
    else:
        entered = np.full((n, width + 1), -1, dtype=np.int64)     # -1 past each set
        entered[owner, within] = market
        _, first, which = np.unique(entered, axis=0, return_index=True, return_inverse=True)
    # each set's JSON (as json.dumps writes it), by Arrow: its quoted cTokens joined
    quoted = pa.array([f'"{m["ctoken"]}"' for m in markets], type=pa.string())
    sets = quoted.take(market[np.repeat(ends[first] - count[first], count[first]) + _ranks(count[first])])
    offsets = np.concatenate([[0], np.cumsum(count[first])]).astype(np.int32)
    params = pc.binary_join_element_wise(pa.scalar('{"entered": ['), pc.binary_join(
        pa.ListArray.from_arrays(pa.array(offsets), sets), ", "), pa.scalar("]}"), "").cast(pa.large_string())
    return pd.DataFrame({"protocol": repeated(PROTOCOL, n), "market": repeated(reader.comptroller, n),
                         "account": labels(names, rows), "category": np.zeros(n, dtype=np.int64),
                         "params": labels(params, which.reshape(-1))}, copy=False)


def _ranks(count: np.ndarray) -> np.ndarray:
    """0, 1, ... count[i] - 1 for each i in turn."""
    return np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)


def _large(texts) -> pa.LargeStringArray:
    return pa.array(texts, type=pa.large_string())
