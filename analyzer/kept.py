"""What a scan keeps of its accounts for an incremental rescan, as arrays.

A reader keeps, per account, a list of integers (``Rows["_state"]``: its lens row, or what it needs
to compute the account at a later block). A rescan computes every account no event touched at
once, so the kept lists of one protocol market are held as one ragged array (:class:`KeptState`:
accounts, lengths, and every word in a row) and stored in that shape, three flat lists in a chunk
(:mod:`analyzer.scan_chunks`), not one object per account. Words are Python integers in object
arrays: the protocols' balances and indices are up to 256 bits, and numpy applies Python's exact
integer operators element by element (``a * b // c`` over a column is one line, and exact).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

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
    def chunk_of(state: Mapping[str, Sequence[int]]) -> dict[str, list]:
        """A reader's ``Rows["_state"]`` in the stored shape (:meth:`to_chunk`), without arrays."""
        return {"accounts": list(state), "lengths": [len(w) for w in state.values()],
                "words": list(chain.from_iterable(state.values()))}

    def to_chunk(self) -> dict[str, list]:
        """Three flat lists (what :class:`analyzer.scan_chunks.ChunkCache` stores)."""
        return {"accounts": self.accounts.tolist(), "lengths": self.lengths.tolist(), "words": self.words.tolist()}

    @classmethod
    def from_chunk(cls, chunk: Mapping[str, list]) -> KeptState | None:
        """The state stored by :meth:`to_chunk`; None when ``chunk`` is not one (damaged, older)."""
        try:
            kept = cls.from_lists(chunk["accounts"], chunk["lengths"], chunk["words"])
        except (KeyError, TypeError, ValueError):
            return None
        return kept if len(kept.accounts) == len(kept.lengths) and int(kept.lengths.sum()) == len(kept.words) else None

    @classmethod
    def from_chunks(cls, chunks: Iterable[Mapping[str, list]]) -> KeptState | None:
        """The states stored by :meth:`to_chunk`, in turn, as one: their lists joined and made
        arrays once (not an array per chunk, then their concatenation: a third of loading a
        mainnet-scale state); None when one is not a stored state (damaged, older)."""
        accounts: list[str] = []
        lengths: list[int] = []
        words: list[int] = []
        try:
            for chunk in chunks:
                if not isinstance(chunk, Mapping):
                    return None
                more_accounts, more_lengths, more_words = chunk["accounts"], chunk["lengths"], chunk["words"]
                if len(more_accounts) != len(more_lengths) or sum(more_lengths) != len(more_words):
                    return None
                accounts += more_accounts
                lengths += more_lengths
                words += more_words
            return cls.from_lists(accounts, lengths, words)
        except (KeyError, TypeError, ValueError):
            return None

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
        rows = np.fromiter((a not in gone for a in self.accounts.tolist()), dtype=bool, count=len(self.accounts))
        if len(set(self.accounts.tolist())) < len(self.accounts):    # two scans' chunks of one block
            rows &= ~pd.Index(self.accounts).duplicated(keep="last")
        return self.take(rows)

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
