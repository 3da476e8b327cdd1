"""Compound V2's refresh of untouched accounts (``lens.refresh_accounts``) gives the rows the full
read builds (``rows_from_figures``) from the accounts' figures at the later block, and keeps, for
the next rescan, only the words that changed: a borrow kept as its balance whose market's index
moved, read again, written with the new balance and index."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from analyzer.kept import KeptState
from protocols.compound_v2 import lens

MANTISSA = 10**18


def reader(markets: list[dict]) -> SimpleNamespace:
    return SimpleNamespace(comptroller="0x" + "c0" * 20, ctx=SimpleNamespace(lens=object()), holdings=None,
                           markets=lambda: markets)


def market(k: int, decimals: int, rate: int, borrow_index: int) -> dict:
    return {"ctoken": f"0x{k:040x}", "underlying": f"0x{k + 100:040x}", "underlying_decimals": decimals,
            "exchange_rate_mantissa": rate, "borrow_index": borrow_index}


def test_refreshed_rows_are_the_full_reads_and_only_moved_borrows_are_written_again(monkeypatch):
    # the earlier scan's market data, then the later block's (indices and rates moved)
    before = [market(0, 18, 200_000_000_000_000_000_000_000_000, 10**18),
              market(1, 6, 204_000_000_000_000, 2 * 10**18)]
    after = [market(0, 18, 200_000_000_000_123_456_789_000_000, 11 * 10**17),
             market(1, 6, 204_000_000_654_321, 2 * 10**18)]
    a, b, c, d = (f"0x{k:040x}" for k in range(0xA, 0xE))
    whale = 2**70       # a borrow past int64: Python integers
    earlier = lens.rows_from_figures(reader(before), {
        a: ([0], {0: (5 * 10**8, 100 * 10**18, 0)}),                          # its borrow kept as a balance
        b: ([0, 1], {0: (7 * 10**9, 0, 0), 1: (0, 3 * 10**6, 0)}),            # a pair in market 1
        c: ([1], {1: (123_456_789, 0, 0)}),                                   # a supplier
        d: ([1, 0], {0: (10**8, 0, 0), 1: (0, whale, 0)}),                    # a balance whose index did not move
    }, {b: {1: (3 * 10**6 // 2, 10**18)}})
    previous = KeptState.from_state(earlier["_state"])
    asked = []

    def fresh_borrows(_reader, moved):
        asked.append(moved)
        return [[101 * 10**18]]     # a's borrowBalanceStored in market 0 at the later block
    monkeypatch.setattr(lens, "_borrows", fresh_borrows)
    refreshed = lens.refresh_accounts(reader(after), previous)
    assert asked == [{a: 1}]        # only a's market-0 borrow: the index moved, no pair
    # the full read at the later block: b's pair at the new index (3e6/2 × 2e18 / 1e18), a's read again
    expected = lens.rows_from_figures(reader(after), {
        a: ([0], {0: (5 * 10**8, 101 * 10**18, after[0]["exchange_rate_mantissa"])}),
        b: ([0, 1], {0: (7 * 10**9, 0, after[0]["exchange_rate_mantissa"]),
                     1: (0, 3 * 10**6, after[1]["exchange_rate_mantissa"])}),
        c: ([1], {1: (123_456_789, 0, after[1]["exchange_rate_mantissa"])}),
        d: ([1, 0], {0: (10**8, 0, after[0]["exchange_rate_mantissa"]), 1: (0, whale, after[1]["exchange_rate_mantissa"])}),
    }, {b: {1: (3 * 10**6 // 2, 10**18)}})
    for name in ("positions", "accounts"):
        got = refreshed.tables[name].astype(object)
        want = pd.DataFrame(expected[name]).astype(object)
        key = list(want.columns)
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                      want.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert refreshed.again == []
    # carried: every account but a, whose words are written again with the new balance and index
    assert refreshed.carried.tolist() == [False, True, True, True]
    assert refreshed.state.accounts.tolist() == [a]
    assert refreshed.state.words.tolist() == expected["_state"][a]
    assert np.array_equal(refreshed.state.words, np.array(expected["_state"][a], dtype=object))
