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
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import wideint


class KeptState:
    """Accounts' kept words as one ragged array: account ``i``'s words are the ``lengths[i]``
    words from ``starts[i]`` on.

    A state read from chunks holds its words as they are stored, with no Python integer: every
    word as int64 (``narrow``; 0 for those past int64) and the few past int64 beside them, at
    ``wide_at``, as the limbs of their sizes (:mod:`analyzer.wideint`) and their signs. Words at
    given positions come as int64 with a mask of the wide ones (:meth:`ints`), as exact limbs
    of their sizes (:meth:`limbs`) or as Python integers (:meth:`values`). ``wide`` and
    ``words`` (every word as a Python integer) are built when first asked for, for callers that
    want Python integers (``words``: 0.07 s on mainnet-scale's 1.2 million words).

    Attributes
    ----------
    accounts : numpy.ndarray
        Checksummed addresses (object array of str). A state may be built of their ASCII bytes
        (a fixed-width bytes array, as a rescan loads them: :mod:`analyzer.carry`): made Python
        strings when first asked for (10^5 of them: 40 ms), kept as bytes by :meth:`take` and
        :meth:`concat` (:attr:`names`).
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
                 wide: np.ndarray | None = None, wide_limbs: np.ndarray | None = None,
                 wide_negative: np.ndarray | None = None):
        """Of ``words`` (Python integers), or of ``narrow``, ``wide_at`` and the wide words, as
        Python integers (``wide``) or as the limbs of their sizes and their signs."""
        self._accounts = accounts
        self._decoded: np.ndarray | None = None     # the names as strings, when asked for
        self.lengths = lengths
        self._held: _Held | None = None
        if words is not None:
            self.__dict__["words"] = words      # what the cached property returns from now on
        elif narrow is not None and wide_at is not None and wide is not None:
            self._held = _Held(narrow, wide_at, *_signed_limbs(np.asarray(wide, dtype=object)))
        elif narrow is not None and wide_at is not None and wide_limbs is not None and wide_negative is not None:
            self._held = _Held(narrow, wide_at, wide_limbs, wide_negative)
        else:
            raise TypeError("a KeptState is built of its words, or of narrow, wide_at and the wide words")

    @classmethod
    def empty(cls) -> KeptState:
        return cls(np.array([], dtype=object), np.array([], dtype=np.int64), narrow=np.array([], dtype=np.int64),
                   wide_at=np.array([], dtype=np.int64), wide_limbs=np.zeros((1, 0), dtype=np.uint64),
                   wide_negative=np.array([], dtype=bool))

    @classmethod
    def from_lists(cls, accounts: Sequence[str], lengths: Sequence[int], words: Sequence[int]) -> KeptState:
        return cls(np.array(accounts, dtype=object), np.array(lengths, dtype=np.int64), objects(words))

    @classmethod
    def from_state(cls, state: Mapping[str, Sequence[int]]) -> KeptState:
        """From a reader's ``Rows["_state"]`` (account -> words)."""
        return cls.from_lists(list(state), [len(w) for w in state.values()], list(chain.from_iterable(state.values())))

    @classmethod
    def concat(cls, parts: Iterable[KeptState]) -> KeptState:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls._of(_names_joined([p.names for p in parts]), np.concatenate([p.lengths for p in parts]),
                       _joined([p._form() for p in parts]))

    @classmethod
    def _of(cls, accounts: np.ndarray, lengths: np.ndarray, held: _Held) -> KeptState:
        return cls(accounts, lengths, narrow=held.narrow, wide_at=held.wide_at, wide_limbs=held.wide_limbs,
                   wide_negative=held.wide_negative)

    @staticmethod
    def chunk_of(state: Mapping[str, Sequence[int]]) -> dict[str, Any]:
        """A reader's ``Rows["_state"]`` in the stored shape (:meth:`to_chunk`), without arrays."""
        lengths = [len(w) for w in state.values()]
        words = np.fromiter(chain.from_iterable(state.values()), dtype=object, count=sum(lengths))
        return _stored(list(state), lengths, _split(words, mine=True))

    def to_chunk(self) -> dict[str, Any]:
        """The stored shape (what :class:`analyzer.scan_chunks.ChunkCache` writes): the accounts as
        a list, then bytes: the lengths and the words as int64 (0 for the wide ones), where the
        wide ones are, their sizes' limbs as uint32 and their signs."""
        return _stored(self.accounts.tolist(), self.lengths, self._form())

    def to_named_chunk(self, width: int) -> dict[str, Any] | None:
        """:meth:`to_chunk` with the accounts as one run of ASCII bytes, ``width`` each (``names``),
        read back without a Python string per account (:meth:`from_named_chunk`); None when an
        account is not ``width`` ASCII bytes."""
        names = fixed_width(self.names, width)
        if names is None:
            return None
        return dict(_stored([], self.lengths, self._form()), accounts=None, names=names.tobytes(), width=width)

    @classmethod
    def from_named_chunk(cls, chunk: Any) -> KeptState | None:
        """The state stored by :meth:`to_named_chunk`, its accounts as bytes (:attr:`names`); None
        when ``chunk`` is not one (damaged, older)."""
        if not isinstance(chunk, dict) or not isinstance(chunk.get("names"), bytes) or \
                not isinstance(chunk.get("width"), int) or chunk["width"] < 1 or len(chunk["names"]) % chunk["width"]:
            return None
        names = np.frombuffer(chunk["names"], dtype=f"S{chunk['width']}")
        found = _parts(chunk, len(names))
        return None if found is None else cls._of(names, found[0], found[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as arrays (names as bytes, :meth:`from_arrays`): lengths and words as int64,
        the wide words' places, their sizes' limbs (rows of uint32) and signs."""
        held = self._form()
        return {"names": self.names, "lengths": np.asarray(self.lengths, dtype=INT64),
                "words": np.asarray(held.narrow, dtype=INT64), "wide_at": np.asarray(held.wide_at, dtype=INT64),
                "wide": wideint.trimmed(held.wide_limbs).astype(LIMB),
                "negative": held.wide_negative.astype(np.uint8)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> KeptState | None:
        """The state of :meth:`arrays` (as read back: the arrays are used as they are); None
        when they do not fit together."""
        try:
            names, lengths, words, wide_at, limbs, negative = (
                arrays[key] for key in ("names", "lengths", "words", "wide_at", "wide", "negative"))
        except KeyError:
            return None
        count = len(wide_at)
        if names.dtype.kind not in "SO" or lengths.dtype != INT64 or words.dtype != INT64 or wide_at.dtype != INT64 or \
                limbs.dtype != LIMB or limbs.ndim != 2 or limbs.shape[1] != count or len(limbs) < 1 or \
                negative.dtype != np.uint8 or len(negative) != count or len(lengths) != len(names) or \
                (len(lengths) and int(lengths.min()) < 0) or int(lengths.sum()) != len(words):
            return None
        if count and not (int(wide_at[0]) >= 0 and int(wide_at[-1]) < len(words) and (np.diff(wide_at) > 0).all()
                          and (limbs < wideint.BASE).all() and int(negative.max()) <= 1):
            return None
        return cls._of(names, lengths, _Held(words, wide_at, limbs.astype(np.uint64), negative.astype(bool)))

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
        parts: list[_Held] = []
        for chunk in chunks:
            found = _parts(chunk)
            if found is None:
                return None
            accounts += chunk["accounts"]
            lengths.append(found[0])
            parts.append(found[1])
        if not lengths:
            return cls.empty()
        return cls._of(np.fromiter(accounts, dtype=object, count=len(accounts)), np.concatenate(lengths),
                       _joined(parts))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def accounts(self) -> np.ndarray:
        if self._accounts.dtype.kind != "S":
            return self._accounts
        if self._decoded is None:
            self._decoded = self._accounts.astype("U").astype(object)
        return self._decoded

    @property
    def names(self) -> np.ndarray:
        """The accounts as given: Python strings (object array), or ASCII bytes (fixed width)
        where the state was built of those."""
        return self._accounts

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum(self.lengths) - self.lengths

    @cached_property
    def words(self) -> np.ndarray:
        held = self._held
        assert held is not None
        words = held.narrow.astype(object)
        words[held.wide_at] = _python_ints(held.wide_limbs, held.wide_negative)
        return words

    @property
    def narrow(self) -> np.ndarray:
        return self._form().narrow

    @property
    def wide_at(self) -> np.ndarray:
        return self._form().wide_at

    @property
    def wide(self) -> np.ndarray:
        held = self._form()
        return _python_ints(held.wide_limbs, held.wide_negative)

    def _form(self) -> _Held:
        """The words as held: as built, or of ``words`` where the state holds them."""
        words = self.__dict__.get("words")
        if words is not None:
            return _split(words)
        assert self._held is not None
        return self._held

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
            bool, the words past int64 (their value: :meth:`limbs` or :meth:`values`).
        """
        held = self._at(at)
        wide = np.zeros(len(held.narrow), dtype=bool)
        wide[held.wide_at] = True
        return held.narrow, wide

    def limbs(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The words at positions ``at``, exactly, as the limbs of their sizes (``|word|``,
        :mod:`analyzer.wideint`) and a mask of the negative ones: the int64 ones by
        :func:`analyzer.wideint.from_int64`, the wide ones as held."""
        held = self._at(at)
        limbs, negative = wideint.from_int64(held.narrow)
        negative[held.wide_at] = held.wide_negative
        return wideint.put(limbs, held.wide_at, held.wide_limbs), negative

    def values(self, at: np.ndarray) -> np.ndarray:
        """The words at positions ``at`` as Python integers (object array): for a few words, or a check."""
        held = self._at(at)
        out = held.narrow.astype(object)
        out[held.wide_at] = _python_ints(held.wide_limbs, held.wide_negative)
        return out

    def _at(self, at: np.ndarray) -> _Held:
        """The words at ``at`` as held (``wide_at``: positions in ``at``)."""
        at = np.asarray(at, dtype=np.int64)
        words = self.__dict__.get("words")
        if words is not None:
            return _split(words[at])
        held = self._form()
        which = self._wide_of[at]
        where = np.flatnonzero(which >= 0)
        which = which[where]
        return _Held(held.narrow[at], where, wideint.taken(held.wide_limbs, which), held.wide_negative[which])

    @cached_property
    def _wide_of(self) -> np.ndarray:
        """Per word: its place among the wide words, -1 for the int64 ones (one gather per lookup)."""
        held = self._form()
        out = np.full(len(held.narrow), -1, dtype=np.int64)
        out[held.wide_at] = np.arange(len(held.wide_at))
        return out

    def take(self, rows: np.ndarray) -> KeptState:
        """The accounts where the boolean mask ``rows`` is set."""
        mask = np.repeat(rows, self.lengths)
        words = self.__dict__.get("words")
        if words is not None:
            return KeptState(self.names[rows], self.lengths[rows], words[mask])
        held = self._form()
        kept = mask[held.wide_at]
        return KeptState._of(self.names[rows], self.lengths[rows],
                             _Held(held.narrow[mask], (np.cumsum(mask) - 1)[held.wide_at[kept]],
                                   held.wide_limbs[:, kept], held.wide_negative[kept]))

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
        owner = np.repeat(np.arange(len(self)), count)
        within = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        return owner, (self.starts + first)[owner] + width * within


def _names_joined(parts: list[np.ndarray]) -> np.ndarray:
    """Account names of several states as one array: as bytes where some are bytes and the others
    fit their width (strings made bytes, not the bytes strings), else as strings."""
    widths = {p.dtype.itemsize for p in parts if p.dtype.kind == "S"}
    if len(widths) == 1:
        width = widths.pop()
        as_bytes = [fixed_width(p, width) for p in parts]
        if all(b is not None for b in as_bytes):
            return np.concatenate(as_bytes)      # type: ignore[arg-type]  # none is None
    return np.concatenate([p.astype("U").astype(object) if p.dtype.kind == "S" else p for p in parts])


def fixed_width(names: np.ndarray, width: int) -> np.ndarray | None:
    """Account names (Python strings, or bytes of one width) as ASCII bytes of ``width`` each (a
    numpy ``S`` array: ordered, searched and stored as bytes); None when one is not ``width``
    ASCII characters."""
    if names.dtype.kind == "S":
        return names if names.dtype.itemsize == width or not len(names) else None
    try:
        texts = pa.array(names, type=pa.string())
    except (pa.ArrowException, TypeError):
        return None
    return fixed_width_texts(texts, width) if pc.all(pc.string_is_ascii(texts)).as_py() is not False else None


def fixed_width_texts(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray | None:
    """Arrow text as bytes of ``width`` each, read in place where every text has that width (the
    offsets step by it); None where one has not, or one is missing."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = [np.zeros(0, dtype=f"S{width}")]
    for chunk in chunks:
        if not len(chunk):
            continue
        if chunk.null_count:
            return None
        large = pa.types.is_large_string(chunk.type)
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if large else np.int32)[
            chunk.offset:chunk.offset + len(chunk) + 1]
        if not (np.diff(offsets) == width).all():
            return None
        out.append(np.frombuffer(chunk.buffers()[2], dtype=f"S{width}", count=len(chunk), offset=int(offsets[0])))
    return np.concatenate(out) if len(out) > 2 else out[-1]


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


class _Held(NamedTuple):
    """Words as a state holds them: int64 (``narrow``, 0 where past it), and the ones past it at
    ``wide_at`` (ascending) as the limbs of their sizes (``(k, m)`` uint64, :mod:`analyzer.wideint`)
    and their signs."""

    narrow: np.ndarray
    wide_at: np.ndarray
    wide_limbs: np.ndarray
    wide_negative: np.ndarray


FORMAT = 3      # the stored shape of a kept state (:func:`_stored`): a chunk of another is read again
INT64 = np.dtype("<i8")
LIMB = np.dtype("<u4")      # a limb is below 10^8


def _signed_limbs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Python integers (an object array, any size) as the limbs of their sizes and their signs."""
    negative = np.asarray(values < 0, dtype=bool) if len(values) else np.zeros(0, dtype=bool)
    sizes = values.copy()
    sizes[negative] = -sizes[negative]
    return wideint.from_ints(sizes) if len(values) else np.zeros((1, 0), dtype=np.uint64), negative


def _python_ints(limbs: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Signed Python integers (an object array) of the limbs of their sizes and their signs."""
    out = wideint.to_ints(limbs)
    out[negative] = -out[negative]
    return out


def _split(words: np.ndarray, mine: bool = False) -> _Held:
    """Integers (an object array; ``mine``: one the caller leaves to it) as a state holds them."""
    try:    # a float tells, but at ±2^63 (its rounding is monotone, and ±2^63 are floats)
        floats = np.asarray(words, dtype=np.float64)
        beyond = (floats > 2.0**63) | (floats < -(2.0**63))
        edge = np.flatnonzero(np.abs(floats) == 2.0**63)
    except OverflowError:   # past a float's range (a word wider than 1023 bits): each one tells
        beyond, edge = np.zeros(len(words), dtype=bool), np.arange(len(words))
    if len(edge):
        beyond[edge[[not -(2**63) <= w < 2**63 for w in words[edge].tolist()]]] = True
    wide_at = np.flatnonzero(beyond)
    limbs, negative = _signed_limbs(np.asarray(words[wide_at], dtype=object))
    narrow = words if mine else words.copy()
    narrow[wide_at] = 0
    return _Held(narrow.astype(INT64), wide_at.astype(INT64), limbs, negative)


def _joined(parts: Sequence[_Held]) -> _Held:
    """States' words in turn, as one (each part's wide limbs padded to the widest's)."""
    if len(parts) == 1:
        return parts[0]
    ends = np.cumsum([len(p.narrow) for p in parts]) - [len(p.narrow) for p in parts]
    rows = max(len(p.wide_limbs) for p in parts)
    return _Held(np.concatenate([p.narrow for p in parts]),
                 np.concatenate([p.wide_at + start for p, start in zip(parts, ends.tolist(), strict=True)]),
                 np.concatenate([wideint.widened(p.wide_limbs, rows) for p in parts], axis=1),
                 np.concatenate([p.wide_negative for p in parts]))


def _stored(accounts: list[str], lengths: Sequence[int] | np.ndarray, held: _Held) -> dict[str, Any]:
    """A state as stored: the accounts, then bytes: the lengths, every word as int64 (0 for the
    wide ones), where the wide ones are, their sizes' limbs (``limbs`` rows of uint32) and signs."""
    limbs = wideint.trimmed(held.wide_limbs)
    return {"kept": FORMAT, "accounts": accounts, "lengths": np.asarray(lengths, dtype=INT64).tobytes(),
            "words": np.asarray(held.narrow, dtype=INT64).tobytes(),
            "wide_at": np.asarray(held.wide_at, dtype=INT64).tobytes(), "limbs": len(limbs),
            "wide": limbs.astype(LIMB).tobytes(), "negative": held.wide_negative.astype(np.uint8).tobytes()}


def _parts(chunk: Any, accounts: int | None = None) -> tuple[np.ndarray, _Held] | None:
    """A stored state's lengths and words, checked against each other and against its accounts
    (a list, or ``accounts`` of them stored otherwise); None when ``chunk`` is not a stored state
    of this format."""
    if not isinstance(chunk, dict) or chunk.get("kept") != FORMAT:
        return None
    if accounts is None:
        if not isinstance(chunk.get("accounts"), list):
            return None
        accounts = len(chunk["accounts"])
    binary = [b for b in (chunk.get(key) for key in ("lengths", "words", "wide_at", "wide", "negative"))
              if isinstance(b, bytes)]
    rows = chunk.get("limbs")
    if len(binary) < 5 or not isinstance(rows, int) or rows < 1 or any(len(b) % INT64.itemsize for b in binary[:3]):
        return None
    lengths, words, wide_at = (np.frombuffer(b, dtype=INT64) for b in binary[:3])
    count = len(wide_at)
    if len(binary[3]) != rows * count * LIMB.itemsize or len(binary[4]) != count:
        return None
    limbs = np.frombuffer(binary[3], dtype=LIMB).reshape(rows, count)
    negative = np.frombuffer(binary[4], dtype=np.uint8)
    if len(lengths) != accounts or (len(lengths) and int(lengths.min()) < 0) or \
            int(lengths.sum()) != len(words):
        return None
    if count and not (int(wide_at[0]) >= 0 and int(wide_at[-1]) < len(words) and (np.diff(wide_at) > 0).all()
                      and (limbs < wideint.BASE).all() and int(negative.max()) <= 1):
        return None
    return lengths, _Held(words, wide_at, limbs.astype(np.uint64), negative.astype(bool))


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


@dataclass(frozen=True)
class KeptRows:
    """An earlier scan's positions rows of one market's untouched accounts, as codes: what a
    rescan carries to its block (:meth:`protocols.base.Reader.carry_accounts`), their texts kept
    as they were (:mod:`analyzer.carry`).

    Attributes
    ----------
    owner : numpy.ndarray
        int64 per row: its account's place in the kept state given beside these rows.
    asset, reserve : numpy.ndarray
        int64 per row: the row's ``asset`` as a place in :attr:`assets`, its ``reserve`` in
        :attr:`reserves`.
    debt : numpy.ndarray
        bool per row: the row's side is ``"debt"`` (else ``"collateral"``).
    assets, reserves : list of str
        The distinct texts of the rows' ``asset`` and ``reserve`` columns (as in the table).
    """

    owner: np.ndarray
    asset: np.ndarray
    reserve: np.ndarray
    debt: np.ndarray
    assets: list[str]
    reserves: list[str]

    def __len__(self) -> int:
        return len(self.owner)

    @classmethod
    def of(cls, kept: KeptState, positions: pd.DataFrame) -> KeptRows:
        """The rows of ``positions`` (one market's table) whose account ``kept`` holds, as codes,
        by plain Python lookups: for tests and checks (a rescan has the codes stored beside the
        earlier tables)."""
        place = {account: i for i, account in enumerate(kept.accounts.tolist())}
        mine = positions[positions["account"].map(place.__contains__).astype(bool)]
        assets, reserves = sorted(set(mine["asset"])), sorted(set(mine["reserve"]))
        codes = lambda values, texts: np.array([texts.index(v) for v in values], dtype=np.int64)  # noqa: E731
        return cls(np.array([place[a] for a in mine["account"]], dtype=np.int64), codes(mine["asset"], assets),
                   codes(mine["reserve"], reserves), (mine["side"] == "debt").to_numpy(dtype=bool), assets, reserves)


@dataclass(frozen=True)
class Carried:
    """A plugin's answer for the rows a rescan carries (:meth:`protocols.base.Reader.carry_accounts`).

    Attributes
    ----------
    amount : numpy.ndarray
        float64 per row of the :class:`KeptRows` given: the position's ``amount`` at this block.
    raw : pyarrow.Array
        Text per row: its ``raw`` at this block (a non-negative integer's decimal text).
    again : numpy.ndarray
        bool per kept account: read in full at this block (its earlier rows are dropped, whatever
        ``amount`` and ``raw`` hold for them): an account whose rows would change shape (a balance
        come to zero, one that grows at its own rate), or that the plugin cannot compute.
    changed : numpy.ndarray or None
        bool per kept account: those whose kept words at this block differ from the ones given,
        their new words in ``state`` (in order); None: every kept word is unchanged.
    state : KeptState
        The new words of the ``changed`` accounts.
    params : pyarrow.Array or None
        Per kept account: its ``accounts`` row's ``params`` text at this block, where it changes
        with the block (taken only for the accounts that have an accounts row); None: unchanged.
    """

    amount: np.ndarray
    raw: Any
    again: np.ndarray
    changed: np.ndarray | None = None
    state: KeptState = field(default_factory=KeptState.empty)
    params: Any = None
