"""Exact integer columns of a Compound V2 rescan as int64 where they fit, Python integers only where
they do not (18-decimal borrows past 2^63, about 9.2 tokens): a column is ``(small, wide, values)``,
``small`` the int64 value of each element where ``wide`` is unset, ``values`` (an object array of
Python integers) the value of the others; its text is :func:`analyzer.textcolumns.split_decimal_strings`."""

from __future__ import annotations

import numpy as np

from analyzer.textcolumns import INT64_FLOATS


def int64_where_fits(values: np.ndarray, often_wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative Python integers (an object array) as int64 where they fit: (the int64 values,
    0 where they do not; which do not). ``often_wide``: some are expected not to fit (their
    floats are taken first, not a conversion tried on the whole column and abandoned)."""
    if not often_wide:
        try:
            return values.astype(np.int64), np.zeros(len(values), dtype=bool)
        except OverflowError:
            pass
    # a value below 2^63 whose float rounds up to 2^63 counts as wide (a Python integer): still exact
    wide = values.astype(np.float64) >= INT64_FLOATS
    small = np.zeros(len(values), dtype=np.int64)
    small[~wide] = values[~wide].astype(np.int64)
    return small, wide

