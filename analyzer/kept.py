"""What a scan keeps of its accounts for an incremental rescan, as arrays.

A reader keeps, per account, a list of integers (``Rows["_state"]``: its lens row, or what it needs
to compute the account at a later block). A rescan computes every account no event touched at
once, so the kept lists of one protocol market are held as one ragged array (:class:`KeptState`:
accounts, lengths, and every word in a row) and stored in that shape in a chunk
(:mod:`analyzer.scan_chunks`), not one object per account: the lengths and the words that fit
in int64 as bytes, the others as integers (:func:`_stored`). A state read back holds them so:
int64 words, and the few wide ones (balances and indices reach 256 bits) as Python integers
beside them, which a reader's refresh takes as int64 columns or as exact limbs
(:mod:`analyzer.wideint`), not a Python integer per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from analyzer import wideint


class KeptState:
    """Accounts' kept words as one ragged array: account ``i``'s words are the ``lengths[i]``
    words from ``starts[i]`` on.

    A state read from chunks holds its words as they are stored, not a Python integer per word:
    every word as int64 (``narrow``; 0 for those past int64) and the few past int64 beside them
    (``wide``, Python integers, at ``wide_at``). Words at given positions come as int64 with a
    mask of the wide ones (:meth:`ints`), as exact limbs of their sizes (:meth:`limbs`,
    :mod:`analyzer.wideint`) or as Python integers (:meth:`values`); ``words``, all of them as
    Python integers, is built when first asked for (for callers that want them: 0.07 s on
    mainnet-scale's 1.2 million words).

    Attributes
    ----------
    accounts : numpy.ndarray
        Checksummed addresses (object array of str).
    lengths : numpy.ndarray
        int64, the number of words of each account.
    narrow : numpy.ndarray
        int64, every account's words in turn, 0 for those past int64.
    wide_at : numpy.ndarray
        int64, ascending: where in ``narrow`` the words past int64 are.
    wide : numpy.ndarray
        Those words (object array of Python int, any size, either sign).
    words : numpy.ndarray
        Every word as a Python int (object array). A state built of ``words``, or whose ``words``
        were asked for, holds its words there: writing into them (as a caller that builds a
        changed state from a taken one does) changes the state.
    """

    def __init__(self, accounts: np.ndarray, lengths: np.ndarray, words: np.ndarray | None = None, *,
                 narrow: np.ndarray | None = None, wide_at: np.ndarray | None = None,
                 wide: np.ndarray | None = None):
        self.accounts = accounts
        self.lengths = lengths
        if words is not None:
            self.__dict__["words"] = words      # what the cached property returns from now on
        elif narrow is None or wide_at is None or wide is None:
            raise TypeError("a KeptState is built of its words, or of narrow, wide_at and wide")
        self._narrow, self._wide_at, self._wide = narrow, wide_at, wide

    @classmethod
    def empty(cls) -> KeptState:
        return cls(np.array([], dtype=object), np.array([], dtype=np.int64), narrow=np.array([], dtype=np.int64),
                   wide_at=np.array([], dtype=np.int64), wide=np.array([], dtype=object))

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
        forms = [p._form() for p in parts]
        ends = np.cumsum([len(narrow) for narrow, _, _ in forms])
        return cls(np.concatenate([p.accounts for p in parts]), np.concatenate([p.lengths for p in parts]),
                   narrow=np.concatenate([narrow for narrow, _, _ in forms]),
                   wide_at=np.concatenate([at + (end - len(narrow)) for (narrow, at, _), end in zip(forms, ends.tolist(),
                                                                                                  strict=True)]),
                   wide=np.concatenate([wide for _, _, wide in forms]))

    @staticmethod
    def chunk_of(state: Mapping[str, Sequence[int]]) -> dict[str, Any]:
        """A reader's ``Rows["_state"]`` in the stored shape (:meth:`to_chunk`), without arrays."""
        lengths = [len(w) for w in state.values()]
        words = np.fromiter(chain.from_iterable(state.values()), dtype=object, count=sum(lengths))
        return _stored(list(state), lengths, *_split(words, mine=True))

    def to_chunk(self) -> dict[str, Any]:
        """The stored shape (what :class:`analyzer.scan_chunks.ChunkCache` writes): the accounts as
        a list, the lengths and the words as int64 bytes (0 for the wide ones), the wide ones'
        places as int64 bytes and they as integers."""
        return _stored(self.accounts.tolist(), self.lengths, *self._form())

    @classmethod
    def from_chunk(cls, chunk: Any) -> KeptState | None:
        """The state stored by :meth:`to_chunk`; None when ``chunk`` is not one (damaged, older)."""
        return cls.from_chunks([chunk])

    @classmethod
    def from_chunks(cls, chunks: Iterable[Any]) -> KeptState | None:
        """The states stored by :meth:`to_chunk`, in turn, as one; None when one is not a stored
        state of this format (damaged, older). Their binary parts are joined as they are: no
        Python integer is made of a word (marshal reads a list of 10^6 integers five times slower
        than it copies their bytes, and making them of the bytes took a tenth of a rescan)."""
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
        return cls(np.fromiter(accounts, dtype=object, count=len(accounts)), np.concatenate(lengths),
                   narrow=np.concatenate(words), wide_at=np.concatenate(wide_at),
                   wide=np.fromiter(wide, dtype=object, count=len(wide)))

    def __len__(self) -> int:
        return len(self.accounts)

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    @cached_property
    def words(self) -> np.ndarray:
        narrow, wide_at, wide = self._held()
        words = narrow.astype(object)
        words[wide_at] = wide
        return words

    @property
    def narrow(self) -> np.ndarray:
        return self._form()[0]

    @property
    def wide_at(self) -> np.ndarray:
        return self._form()[1]

    @property
    def wide(self) -> np.ndarray:
        return self._form()[2]

    def _form(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(narrow, wide_at, wide): as held, or of ``words`` where the state holds them."""
        words = self.__dict__.get("words")
        return self._held() if words is None else _split(words)

    def _held(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(narrow, wide_at, wide) of a state built of them."""
        narrow, wide_at, wide = self._narrow, self._wide_at, self._wide
        assert narrow is not None and wide_at is not None and wide is not None
        return narrow, wide_at, wide

    def ints(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The words at positions ``at`` as int64 (0 where past it), and a mask of those past it.

        Parameters
        ----------
        at : numpy.ndarray
            Positions of words (integers: :attr:`starts` plus an offset, :meth:`entries`).

        Returns
        -------
        values : numpy.ndarray
            int64, each word, 0 where it is past int64.
        wide : numpy.ndarray
            bool, the words past int64 (their value: :meth:`values` or :meth:`limbs`).
        """
        values, where, _ = self._at(at)
        wide = np.zeros(len(values), dtype=bool)
        wide[where] = True
        return values, wide

    def limbs(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The words at positions ``at``, exactly, as the limbs of their sizes (``|word|``,
        :mod:`analyzer.wideint`) and a mask of the negative ones: from their int64, and from
        Python integers for the wide ones only (:func:`analyzer.wideint.from_int64`)."""
        return wideint.from_int64(*self._at(at))

    def values(self, at: np.ndarray) -> np.ndarray:
        """The words at positions ``at`` as Python integers (object array): for a few words, or a check."""
        values, where, wide = self._at(at)
        out = values.astype(object)
        out[where] = wide
        return out

    def _at(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The words at ``at`` in the held form: int64 (0 where past it), which of them (positions
        in ``at``) are past it, and those words."""
        at = np.asarray(at, dtype=np.int64)
        words = self.__dict__.get("words")
        if words is not None:
            return _split(words[at])
        narrow, wide_at, wide = self._held()
        if not len(wide_at):
            return narrow[at], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        rank = np.searchsorted(wide_at, at)
        where = np.flatnonzero(wide_at[np.minimum(rank, len(wide_at) - 1)] == at)
        return narrow[at], where, wide[rank[where]]

    def take(self, rows: np.ndarray) -> KeptState:
        """The accounts where the boolean mask ``rows`` is set."""
        mask = np.repeat(rows, self.lengths)
        words = self.__dict__.get("words")
        if words is not None:
            return KeptState(self.accounts[rows], self.lengths[rows], words[mask])
        narrow, wide_at, wide = self._held()
        kept = mask[wide_at]
        return KeptState(self.accounts[rows], self.lengths[rows], narrow=narrow[mask],
                         wide_at=(np.cumsum(mask) - 1)[wide_at[kept]], wide=wide[kept])

    def without(self, accounts: Iterable[str]) -> KeptState:
        """The accounts not in ``accounts``, each once (the last kept where one appears twice)."""
        gone = set(accounts)
        listed = self.accounts.tolist()
        rows = ~np.fromiter(map(gone.__contains__, listed), dtype=bool, count=len(listed))
        once = last_of_each(listed)     # two scans' chunks of one block
        return self.take(rows if once is None else rows & once)

    def column(self, offset: int) -> np.ndarray:
        """Each account's word at ``offset`` as a Python int (every account has more than
        ``offset`` words; as arrays: :meth:`ints` or :meth:`limbs` of ``starts + offset``)."""
        return self.values(self.starts + offset)

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


def _split(words: np.ndarray, mine: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers (an object array; ``mine``: one the caller leaves to it) as a state holds them:
    int64 (0 for those past it), where those past it are, and they (an object array)."""
    try:    # a float tells, but at ±2^63 (its rounding is monotone, and ±2^63 are floats)
        floats = np.asarray(words, dtype=np.float64)
        beyond = (floats > 2.0**63) | (floats < -(2.0**63))
        edge = np.flatnonzero(np.abs(floats) == 2.0**63)
    except OverflowError:   # past a float's range (a word wider than 1023 bits): each one tells
        beyond, edge = np.zeros(len(words), dtype=bool), np.arange(len(words))
    if len(edge):
        beyond[edge[[not -(2**63) <= w < 2**63 for w in words[edge].tolist()]]] = True
    wide_at = np.flatnonzero(beyond)
    wide = np.asarray(words[wide_at], dtype=object)
    narrow = words if mine else words.copy()
    narrow[wide_at] = 0
    return narrow.astype(INT64), wide_at.astype(INT64), wide


def _stored(accounts: list[str], lengths: Sequence[int] | np.ndarray, narrow: np.ndarray, wide_at: np.ndarray,
            wide: np.ndarray) -> dict[str, Any]:
    """A state as stored: the accounts, the lengths, every word as int64 (0 for the wide ones) and
    where the wide ones are as int64 bytes, and those words (Python integers, any size)."""
    return {"kept": FORMAT, "accounts": accounts, "lengths": np.asarray(lengths, dtype=INT64).tobytes(),
            "words": np.asarray(narrow, dtype=INT64).tobytes(), "wide_at": np.asarray(wide_at, dtype=INT64).tobytes(),
            "wide": wide.tolist()}


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
