"""The books of a cascade state: the prepared books, shared, plus copies of only the rows written.

A cascade liquidates a few thousand accounts of books that hold hundreds of thousands. Copying a
whole book at its first liquidation (so that the prepared one, shared by every scenario of a
sweep, stays as read) cost more than the round's rule did. :class:`StateBooks` keeps, per book,
the base book (the prepared one until the state owns a copy: after interest, a forced sale) and
the rows the cascade has written since, in arrays that hold those rows only. The keepers read
accounts through :meth:`StateBooks.take` and write them back through :meth:`StateBooks.write`;
indexing (``books[s]``) gives the whole book as it stands, copied once and only when asked (the
reference implementation, interest accrual, a Morpho vault's write-down, the settle phase).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from protocols.base import LendingBook


def book_wide(book: LendingBook) -> dict:
    """The entries of ``book.extra`` that are not per account (a protocol's reserves, inventories)."""
    return {k: v for k, v in book.extra.items() if k not in book.per_account}


def write_rows(target: LendingBook, rows: np.ndarray, source: LendingBook) -> None:
    """``target``'s accounts ``rows`` set to ``source``'s (a book of just those accounts): collateral,
    debt and the per-account entries of ``extra`` (an Aave account's deficit written off at its
    liquidation), and the book-wide entries carried on (a protocol's reserves)."""
    target.collateral[rows] = source.collateral
    target.debt[rows] = source.debt
    for key in target.per_account:
        if key in source.extra and key in target.extra:
            target.extra[key][rows] = source.extra[key]
    target.extra.update(book_wide(source))


class _Written:
    """The rows of one book written by the cascade: ``place`` (n,) the index of each account in the
    arrays below (-1: not written), ``book`` a LendingBook whose first ``count`` rows are those
    accounts as they stand (more rows are allocated than used, doubling as it fills)."""

    def __init__(self, base: LendingBook):
        self.place = np.full(len(base.accounts), -1, dtype=np.intp)
        self.rows = np.zeros(0, dtype=np.intp)
        self.book = base.take(self.rows)
        self.book.extra = {k: v for k, v in self.book.extra.items() if k in base.per_account}
        self.wide: dict = {}
        self.count = 0

    def places(self, base: LendingBook, rows: np.ndarray) -> np.ndarray:
        """The places of accounts ``rows``, new ones appended with their values in ``base``."""
        place = self.place[rows]
        new = np.flatnonzero(place < 0)
        if len(new) == 0:
            return place
        added = rows[new]
        start, stop = self.count, self.count + len(added)
        if stop > len(self.rows):
            self._grow(max(stop, 2 * len(self.rows), 64))
        self.rows[start:stop] = added
        fresh = base.take(added)
        self.book.collateral[start:stop] = fresh.collateral
        self.book.debt[start:stop] = fresh.debt
        for key, values in self.book.extra.items():
            values[start:stop] = fresh.extra[key]
        place[new] = self.place[added] = np.arange(start, stop)
        self.count = stop
        return place

    def _grow(self, capacity: int) -> None:
        def grown(values: np.ndarray) -> np.ndarray:
            out = np.zeros((capacity,) + values.shape[1:], dtype=values.dtype)
            out[:self.count] = values[:self.count]
            return out

        self.rows = grown(self.rows)
        self.book.collateral, self.book.debt = grown(self.book.collateral), grown(self.book.debt)
        self.book.extra = {k: grown(np.asarray(v)) for k, v in self.book.extra.items()}


class StateBooks:
    """Per book slot: the base book and the rows written since (module docstring). ``owned`` (one
    bool per slot): the base is the state's own copy (after a forced sale, interest, a merge), so it
    may be written in place."""

    def __init__(self, books: list[LendingBook], owned: list[bool]):
        self._base = list(books)
        self.owned = owned
        self._written: list[_Written | None] = [None] * len(self._base)

    def __len__(self) -> int:
        return len(self._base)

    def __iter__(self) -> Iterator[LendingBook]:
        return (self[s] for s in range(len(self)))

    def __getitem__(self, s: int) -> LendingBook:
        """The whole book ``s`` as it stands (the written rows merged into the state's own copy)."""
        written = self._written[s]
        if written is None:
            return self._base[s]
        book = self._base[s] if self.owned[s] else self._base[s].copy()
        n = written.count
        book.collateral[written.rows[:n]] = written.book.collateral[:n]
        book.debt[written.rows[:n]] = written.book.debt[:n]
        for key, values in written.book.extra.items():
            if key in book.extra:
                book.extra[key][written.rows[:n]] = values[:n]
        book.extra.update(written.wide)
        self._base[s], self.owned[s], self._written[s] = book, True, None
        return book

    def __setitem__(self, s: int, book: LendingBook) -> None:
        """Book ``s`` replaced by ``book``, the state's own (interest accrued, the reference's rows)."""
        self._base[s], self.owned[s], self._written[s] = book, True, None

    def changed(self, s: int) -> bool:
        """Whether book ``s`` may differ from the one the state started from (rows written, or replaced)."""
        return self.owned[s] or self._written[s] is not None

    def accounts(self, s: int) -> int:
        return len(self._base[s].accounts)

    def take(self, s: int, rows: np.ndarray) -> LendingBook:
        """Accounts ``rows`` of book ``s`` as they stand, as a book of their own (copies of the rows,
        as :meth:`LendingBook.take`)."""
        out = self._base[s].take(rows)
        written = self._written[s]
        if written is None:
            return out
        place = written.place[rows]
        hit = np.flatnonzero(place >= 0)
        if len(hit):
            at = place[hit]
            out.collateral[hit] = np.take(written.book.collateral, at, axis=0)
            out.debt[hit] = np.take(written.book.debt, at, axis=0)
            for key, values in written.book.extra.items():
                if key in out.extra:
                    out.extra[key][hit] = np.take(values, at, axis=0)
        out.extra.update(written.wide)
        return out

    def write(self, s: int, rows: np.ndarray, source: LendingBook) -> None:
        """Accounts ``rows`` of book ``s`` set to ``source``'s (a book of just those accounts), as
        :func:`write_rows` does on a whole book."""
        base = self._base[s]
        written = self._written[s]
        if written is None:
            written = self._written[s] = _Written(base)
        place = written.places(base, rows)
        written.book.collateral[place] = source.collateral
        written.book.debt[place] = source.debt
        for key, values in written.book.extra.items():
            if key in source.extra:
                values[place] = source.extra[key]
        written.wide.update(book_wide(source))

    def column_sums(self, s: int, columns: np.ndarray) -> np.ndarray:
        """(len(columns),) collateral of book ``s`` summed over its accounts, per column ``columns``
        (the same floats as the whole book's ``collateral.sum(0)`` at those columns: numpy sums a
        C-ordered block over its rows in row order, column by column, unless the block is a single
        column, which it sums pairwise, so a lone column is summed beside a neighbour)."""
        columns = np.asarray(columns, dtype=np.intp)
        width = self._base[s].collateral.shape[1]
        summed = columns if len(columns) != 1 or width == 1 else np.array([columns[0], (columns[0] + 1) % width])
        values = np.ascontiguousarray(self._base[s].collateral[:, summed])
        written = self._written[s]
        if written is not None and written.count:
            values[written.rows[:written.count]] = written.book.collateral[:written.count][:, summed]
        return values.sum(0)[:len(columns)]
