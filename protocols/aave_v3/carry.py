"""Aave V3's carried rescan (:meth:`protocols.base.Reader.carry_accounts`): an untouched account's
earlier positions rows are kept, each with its balance at this block, the one of the kept record
of its reserve and side (:func:`protocols.aave_v3.lens.kept_balances`, what ``balanceOf``
answers). Its accounts row (e-mode, user configuration and the collateral flags off) is carried
as it was: those words change only with an event that names the account."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from analyzer import wideint
from analyzer.kept import Carried, KeptRows, KeptState
from protocols.aave_v3.lens import kept_balances


def carry_accounts(reader, kept: KeptState, rows: KeptRows) -> Carried:
    """Each row's ``amount`` and ``raw`` at this block, at once over arrays, and the accounts to
    read again: those :func:`~protocols.aave_v3.lens.kept_balances` reads again (stable debt, a
    reserve past the pool's list, a balance come to zero), and every account whose records and
    rows are not one to one (a record without its row, a row without its record, two rows of one
    record, a row of an asset that is no reserve of the pool or that names a reserve, which
    Aave's rows never do): no row is carried that its kept record does not prove. A row and a
    record meet on the account and ``reserve · 2 + side`` (0 an aToken / collateral, 1 variable
    debt / debt; :func:`_records_of`), the rows in any order.

    On mainnet-scale (59,431 accounts, 115,639 rows) 38-41 ms of thread CPU where
    :func:`~protocols.aave_v3.lens.refresh_accounts` takes 60-67 ms: nearly all of it the
    balances as limbs, their products, floats and text (:mod:`analyzer.wideint`); finding the
    rows' records 3-4 ms."""
    reserves = reader.reserves()
    found = kept_balances(reader, kept)
    again = found.again
    if not len(found.owner):        # no record proves a row
        again[rows.owner] = True
        return Carried(np.zeros(len(rows)), pa.array(["0"] * len(rows), type=pa.string()), again)
    place = {r["asset"]: i for i, r in enumerate(reserves)}
    index_of_asset = np.array([place.get(asset, -1) for asset in rows.assets], dtype=np.int64)
    named = np.array([reserve != "" for reserve in rows.reserves], dtype=bool)
    index = index_of_asset[rows.asset]
    record, matched = _records_of(found.owner, found.index * 2 + found.kind, 2 * len(reserves), len(kept),
                                  rows.owner, index * 2 + rows.debt)
    matched &= (index >= 0) & ~named[rows.reserve]
    again[rows.owner[~matched]] = True
    again[found.owner[np.bincount(record[matched], minlength=len(found.owner)) != 1]] = True

    balance = wideint.taken(found.balance, record)
    decimals = np.array([r["config"]["decimals"] for r in reserves], dtype=np.int64)
    return Carried(wideint.quotient_floats(balance, decimals[found.index[record]]), wideint.decimal_text(balance),
                   again)


def _records_of(owner: np.ndarray, local: np.ndarray, width: int, accounts: int, row_owner: np.ndarray,
                row_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (its account's place and its key ``row_local`` below ``width``): the record of that
    account with that key (``owner``, ascending, and ``local``; any one where there is none) and
    whether there is one.

    Each account's records are contiguous (and, as a lens writes them, in key order): a row's
    record is found by bisecting its account's few, all rows at once, as many steps as the most
    records of one account take (2 on mainnet-scale). Whatever the rows' order: a sorted search
    of the rows' keys among all records took 2.5 ms with the rows in the records' order and
    21 ms shuffled (a binary search over 115,639 records per row), this 4 and 7 ms."""
    key = owner * width + local
    order = None if bool((np.diff(key) > 0).all()) else np.argsort(key)
    if order is not None:
        local = local[order]
    counts = np.bincount(owner, minlength=accounts)
    end = np.cumsum(counts)[row_owner]
    low, high = end - counts[row_owner], end
    last = len(local) - 1
    for _ in range(int(counts.max()).bit_length()):
        middle = (low + high) >> 1
        below = local[np.minimum(middle, last)] < row_local
        low = np.where(below, middle + 1, low)
        high = np.where(below, high, middle)
    at = np.minimum(low, last)
    matched = (low < end) & (local[at] == row_local)
    return (at if order is None else order[at]), matched
