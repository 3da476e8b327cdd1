"""What a scan keeps of its accounts for an incremental rescan, as arrays.

A reader keeps, per account, a list of integers (``Rows["_state"]``: its lens row, or what it needs
to compute the account at a later block). A rescan computes every account no event touched at
once, so the kept lists of one protocol market are held as one ragged array (:class:`KeptState`:
accounts, lengths, and every word in a row) and stored in that shape in a chunk
(:mod:`analyzer.scan_chunks`), not one object per account: the lengths and the words that fit
in int64 as bytes, the others as integers (:func:`_stored`). Words are Python integers in object
arrays: the protocols' balances and indices are up to 256 bits, and numpy applies Python's exact
integer operators element by element (``a * b // c`` over a column is one line, and exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class KeptState:
    """Accounts' kept words as one ragged array: account ``i``'s words are
    ``words[starts[i]:starts[i] + lengths[i]]``.

    Attributes
    ----------
    accounts : numpy.ndarray
        Checksummed addresses (object array of str).
    lengths : numpy.ndarray
        int64, the number of words of each account.
    words : numpy.ndarray
        Every account's words in turn (object array of Python int).
    """

    accounts: np.ndarray
    lengths: np.ndarray
    words: np.ndarray

    @classmethod
    def empty(cls) -> KeptState:
        return cls(np.array([], dtype=object), np.array([], dtype=np.int64), np.array([], dtype=object))

    @classmethod
    def from_lists(cls, accounts: Sequence[str], lengths: Sequence[int], words: Sequence[int]) -> KeptState:
        return cls(np.array(accounts, dtype=object), np.array(lengths, dtype=np.int64), objects(words))

    @classmethod
    def from_state(cls, state: Mapping[str, Sequence[int]]) -> KeptState:
        """From a reader's ``Rows["_state"]`` (account -> words)."""
        return cls.from_lists(list(state), [len(w) for w in state.values()], list(chain.from_iterable(state.values())))

    @classmethod
    def concat(cls, parts: Iterable[KeptState]) -> KeptState:
        parts = [p for p in parts if len(p.accounts)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.accounts for p in parts]), np.concatenate([p.lengths for p in parts]),
                   np.concatenate([p.words for p in parts]))

    @staticmethod
    def chunk_of(state: Mapping[str, Sequence[int]]) -> dict[str, Any]:
        """A reader's ``Rows["_state"]`` in the stored shape (:meth:`to_chunk`), without arrays."""
        lengths = [len(w) for w in state.values()]
        words = np.fromiter(chain.from_iterable(state.values()), dtype=object, count=sum(lengths))
        return _stored(list(state), lengths, words, mine=True)

    def to_chunk(self) -> dict[str, Any]:
        """The stored shape (what :class:`analyzer.scan_chunks.ChunkCache` writes): the accounts as
        a list, the lengths and the words that fit in int64 as binary, the others as integers."""
        return _stored(self.accounts.tolist(), self.lengths, self.words, mine=False)

    @classmethod
    def from_chunk(cls, chunk: Any) -> KeptState | None:
        """The state stored by :meth:`to_chunk`; None when ``chunk`` is not one (damaged, older)."""
        return cls.from_chunks([chunk])

    @classmethod
    def from_chunks(cls, chunks: Iterable[Any]) -> KeptState | None:
        """The states stored by :meth:`to_chunk`, in turn, as one; None when one is not a stored
        state of this format (damaged, older). Their binary words are joined and made Python
        integers at once (``astype(object)``), then the wide ones put in place: marshal reads a
        list of 10^6 integers five times slower than it copies their bytes."""
        accounts: list[str] = []
        lengths: list[np.ndarray] = []
        words: list[np.ndarray] = []
        wide_at: list[np.ndarray] = []
        wide: list[int] = []
        count = 0
        for chunk in chunks:
            parts = _parts(chunk)
            if parts is None:
                return None
            more_lengths, more_words, more_wide_at = parts
            accounts += chunk["accounts"]
            lengths.append(more_lengths)
            words.append(more_words)
            wide_at.append(more_wide_at + count)
            wide += chunk["wide"]
            count += len(more_words)
        if not lengths:
            return cls.empty()
        values = np.concatenate(words).astype(object)
        values[np.concatenate(wide_at)] = np.fromiter(wide, dtype=object, count=len(wide))
        return cls(np.fromiter(accounts, dtype=object, count=len(accounts)), np.concatenate(lengths), values)

    def __len__(self) -> int:
        return len(self.accounts)

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    def take(self, rows: np.ndarray) -> KeptState:
        """The accounts where the boolean mask ``rows`` is set."""
        return KeptState(self.accounts[rows], self.lengths[rows], self.words[np.repeat(rows, self.lengths)])

    def without(self, accounts: Iterable[str]) -> KeptState:
        """The accounts not in ``accounts``, each once (the last kept where one appears twice)."""
        gone = set(accounts)
        listed = self.accounts.tolist()
        rows = ~np.fromiter(map(gone.__contains__, listed), dtype=bool, count=len(listed))
        once = last_of_each(listed)     # two scans' chunks of one block
        return self.take(rows if once is None else rows & once)

    def column(self, offset: int) -> np.ndarray:
        """Each account's word at ``offset`` (every account has more than ``offset`` words)."""
        return self.words[self.starts + offset]

    def entries(self, first: np.ndarray | int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Fixed-width records after each account's first ``first`` words (a number, or one per
        account): (the account row of each record, the position of its first word in ``words``)."""
        first = np.broadcast_to(np.asarray(first, dtype=np.int64), self.lengths.shape)
        count = (self.lengths - first) // width
        owner = np.repeat(np.arange(len(self.accounts)), count)
        within = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        return owner, (self.starts + first)[owner] + width * within


def objects(values: Sequence[int]) -> np.ndarray:
    """Python integers as an object array (never a fixed-width numpy integer: words reach 2^256)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def last_of_each(names: list[str]) -> np.ndarray | None:
    """A mask of the last place of each name in ``names``; None when each is there once. A dict
    keeps the last place of a key (pandas' ``duplicated`` takes 10 times longer: it converts
    10^5 addresses to Arrow strings first)."""
    if len(set(names)) == len(names):
        return None
    once = np.zeros(len(names), dtype=bool)
    once[list(dict(zip(names, range(len(names)), strict=True)).values())] = True
    return once


FORMAT = 2      # the stored shape of a kept state (:func:`_stored`): a chunk of another is read again
INT64 = np.dtype("<i8")


def _stored(accounts: list[str], lengths: Sequence[int] | np.ndarray, words: np.ndarray, mine: bool) -> dict[str, Any]:
    """Accounts, lengths and words (an object array of integers; ``mine``: one the caller leaves
    to it) as stored: ``words`` holds every word as int64 (0 for the wide ones), ``wide_at`` where
    the words that do not fit are and ``wide`` those words (Python integers, any size)."""
    try:    # a float is exact enough to tell: rounding is monotone and ±2^63 are floats
        floats = words.astype(np.float64)
        wide_at = np.flatnonzero(~((floats > -(2.0**63)) & (floats < 2.0**63)))
    except OverflowError:   # past a float's range (a word wider than 1023 bits)
        wide_at = np.flatnonzero([not -(2**63) <= int(w) < 2**63 for w in words.tolist()])
    wide = words[wide_at].tolist()
    narrow = words if mine else words.copy()
    narrow[wide_at] = 0
    return {"kept": FORMAT, "accounts": accounts, "lengths": np.asarray(lengths, dtype=INT64).tobytes(),
            "words": narrow.astype(INT64).tobytes(), "wide_at": wide_at.astype(INT64).tobytes(), "wide": wide}


def _parts(chunk: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A stored state's lengths, int64 words and wide words' places, checked against each other;
    None when ``chunk`` is not a stored state of this format."""
    if not isinstance(chunk, dict) or chunk.get("kept") != FORMAT:
        return None
    binary = [b for b in (chunk.get(key) for key in ("lengths", "words", "wide_at"))
              if isinstance(b, bytes) and len(b) % INT64.itemsize == 0]
    if len(binary) < 3 or not isinstance(chunk.get("accounts"), list) or not isinstance(chunk.get("wide"), list):
        return None
    lengths, words, wide_at = (np.frombuffer(b, dtype=INT64) for b in binary)
    if len(lengths) != len(chunk["accounts"]) or len(wide_at) != len(chunk["wide"]) or \
            (len(lengths) and int(lengths.min()) < 0) or int(lengths.sum()) != len(words) or \
            (len(wide_at) and not 0 <= int(wide_at.min()) <= int(wide_at.max()) < len(words)):
        return None
    return lengths, words, wide_at


POWERS_OF_TEN = objects([10**d for d in range(78)])   # a token's decimals are within 0..77


FLOAT_POWERS_OF_TEN = np.array([10.0**d for d in range(23)])    # exact: 10^22 = 2^22 · 5^22, 5^22 < 2^53
EXACT_FLOATS = float(2**53)     # every integer below it in size is exact as a float64


def exact_amounts(raw: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    """float64 token units of exact integers, each correctly rounded as
    :func:`analyzer.model.raw_to_amount` (Python's int / int). A value below 2^53 in size over
    10^d with d ≤ 22 is one IEEE division of two exact floats, which rounds the exact quotient
    correctly, as Python's int / int does; only the others are divided one by one as Python ints."""
    if not len(raw):
        return np.array([], dtype=np.float64)
    decimals = np.broadcast_to(np.asarray(decimals, dtype=np.int64), np.shape(raw))
    floats = raw.astype(np.float64)
    amounts = floats / FLOAT_POWERS_OF_TEN[np.minimum(decimals, len(FLOAT_POWERS_OF_TEN) - 1)]
    slow = np.flatnonzero((np.abs(floats) >= EXACT_FLOATS) | (decimals >= len(FLOAT_POWERS_OF_TEN)))
    if len(slow):
        amounts[slow] = (np.asarray(raw, dtype=object)[slow] / POWERS_OF_TEN[decimals[slow]]).astype(np.float64)
    return amounts


@dataclass(frozen=True)
class Refreshed:
    """A rescan's untouched accounts computed at its block (:meth:`protocols.base.Reader.refresh_accounts`).

    Attributes
    ----------
    tables : dict
        ``positions`` and ``accounts`` frames of the accounts computed (columns of
        :data:`analyzer.model.TABLES`).
    state : KeptState
        Their kept words at this block (what a later rescan starts from): every computed account's,
        or with ``carried`` only those whose words changed.
    again : list of str
        The accounts that could not be computed and must be read in full.
    carried : numpy.ndarray or None
        A mask over the ``previous`` accounts refreshed: those computed whose kept words are the
        ones ``previous`` holds (the rescan keeps them by reference to the earlier state, not
        written again: :func:`analyzer.scan_chunks.incremental_plan`); None: ``state`` holds
        every computed account.
    """

    tables: dict[str, pd.DataFrame]
    state: KeptState
    again: list[str]
    carried: np.ndarray | None = None
