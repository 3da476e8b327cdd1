"""Exact integers of any size and sign as a column without a Python integer per value: int64 where
they fit, the few others (Python integers) beside them (:class:`Ints`). Comet's kept words
(:class:`analyzer.kept.KeptState`, which holds them so) and its packed principals come in this way,
and leave as limbs (:mod:`analyzer.wideint`), floats or decimal text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import wideint

WORD = 1 << 256
SIGNED_WORD = 1 << 255


@dataclass(frozen=True)
class Ints:
    """Integers of any size and sign.

    Attributes
    ----------
    small : numpy.ndarray
        int64, each value, 0 where it does not fit int64.
    wide_at : numpy.ndarray
        int64, ascending: where the values past int64 are.
    wide : numpy.ndarray
        Those values (object array of Python int).
    """

    small: np.ndarray
    wide_at: np.ndarray
    wide: np.ndarray

    @classmethod
    def of(cls, values: list[int] | np.ndarray) -> Ints:
        """Python integers (a list or an object array): for a few values, or a check."""
        values = list(values)
        fits = [-(2**63) <= v < 2**63 for v in values]
        small = np.array([v if f else 0 for v, f in zip(values, fits, strict=True)], dtype=np.int64)
        wide_at = np.flatnonzero(~np.array(fits, dtype=bool))
        return cls(small, wide_at, _objects([values[k] for k in wide_at.tolist()]))

    @classmethod
    def of_int128s(cls, data: bytes) -> Ints:
        """Packed 16-byte two's complement big-endian integers: those within int64 (the high half
        only the low half's sign) by numpy at once, the others one by one."""
        halves = np.frombuffer(data, dtype=">i8").reshape(-1, 2).astype(np.int64)
        fits = halves[:, 0] == halves[:, 1] >> 63
        wide_at = np.flatnonzero(~fits)
        wide = [int.from_bytes(data[16 * k:16 * k + 16], "big", signed=True) for k in wide_at.tolist()]
        return cls(np.where(fits, halves[:, 1], 0), wide_at, _objects(wide))

    def __len__(self) -> int:
        return len(self.small)

    @property
    def is_wide(self) -> np.ndarray:
        mask = np.zeros(len(self.small), dtype=bool)
        mask[self.wide_at] = True
        return mask

    def signed(self) -> Ints:
        """Two's complement 256-bit words as signed integers (values at or past 2^255 less 2^256;
        only wide values can be), those that then fit int64 moved among the small ones."""
        if not len(self.wide):
            return self
        wide = self.wide.copy()
        negative = wide >= SIGNED_WORD
        wide[negative] = wide[negative] - WORD
        fits = (wide >= -(2**63)) & (wide < 2**63)
        if not fits.any():
            return Ints(self.small, self.wide_at, wide)
        small = self.small.copy()
        small[self.wide_at[fits]] = wide[fits].astype(np.int64)
        return Ints(small, self.wide_at[~fits], wide[~fits])

    def negative(self) -> np.ndarray:
        out = self.small < 0
        out[self.wide_at] = (self.wide < 0).astype(bool)
        return out

    def nonzero(self) -> np.ndarray:
        out = self.small != 0
        out[self.wide_at] = True        # wide values are past int64: not zero
        return out

    def taken(self, rows: np.ndarray) -> Ints:
        """The values at ``rows`` (indices, in any order)."""
        if not len(self.wide_at):
            return Ints(self.small[rows], self.wide_at, self.wide)
        where = np.flatnonzero(self.is_wide[rows])
        return Ints(self.small[rows], where, self.wide[np.searchsorted(self.wide_at, rows[where])])

    def replaced(self, rows: np.ndarray, other: Ints) -> Ints:
        """These values with those at ``rows`` (ascending indices) replaced by ``other``'s."""
        small = self.small.copy()
        small[rows] = other.small
        replaced = np.zeros(len(small), dtype=bool)
        replaced[rows] = True
        mine = ~replaced[self.wide_at]
        at = np.concatenate([self.wide_at[mine], rows[other.wide_at]])
        order = np.argsort(at, kind="stable")
        return Ints(small, at[order], np.concatenate([self.wide[mine], other.wide])[order])

    def values(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Python integers (an object array): of a few values, or a check."""
        taken = self if rows is None else self.taken(rows)
        out = taken.small.astype(object)
        out[taken.wide_at] = taken.wide
        return out

    def equal(self, other: Ints) -> np.ndarray:
        """Per value: is it ``other``'s."""
        same = self.small == other.small
        either = np.union1d(self.wide_at, other.wide_at)
        if len(either):
            same[either] = self.values(either) == other.values(either)
        return same

    def floats(self) -> np.ndarray:
        """float64 of each value, correctly rounded (as ``float(int)``)."""
        out = self.small.astype(np.float64)
        out[self.wide_at] = self.wide.astype(np.float64)
        return out

    def limbs(self) -> tuple[np.ndarray, np.ndarray]:
        """The limbs of each value's size (:mod:`analyzer.wideint`) and a mask of the negative ones."""
        return wideint.from_int64(self.small, self.wide_at, self.wide)

    def text(self) -> pa.StringArray:
        """Each value's decimal text, as ``str`` writes it (a sign where negative): Arrow's for the
        int64 ones, ``str``'s for the others."""
        out = pa.array(self.small).cast(pa.string())
        if not len(self.wide_at):
            return out
        mask = np.zeros(len(self.small), dtype=bool)
        mask[self.wide_at] = True
        return pc.replace_with_mask(out, pa.array(mask), pa.array(list(map(str, self.wide.tolist())), type=pa.string()))


def _objects(values: list[int]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
