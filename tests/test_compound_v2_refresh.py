"""Compound V2's refresh of untouched accounts (``refresh.refresh_accounts``) gives the rows the full
read builds (``rows_from_figures``) from the accounts' figures at the later block, and keeps, for
the next rescan, only the words that changed: a borrow kept as its balance whose market's index
moved, read again, written with the new balance and index."""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from analyzer.kept import KeptState
from protocols.compound_v2 import lens, refresh

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
    monkeypatch.setattr(lens, "borrows_stored", fresh_borrows)
    refreshed = refresh.refresh_accounts(reader(after), previous)
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


@dataclass
class RandomBook:
    """A random Compound V2 book (:func:`random_book`): the markets at the earlier and the later
    block, each account's figures at both (``rows_from_figures``' input), the borrows kept as pairs,
    and the balances the lens gives at the later block for the borrows kept as balances whose
    market's index moved, by (account, market's place in the list)."""

    before: list[dict]
    after: list[dict]
    figures_before: dict
    figures_after: dict
    pairs: dict
    fresh: dict[tuple[str, int], int]

    def borrows_stored(self, _reader, moved: dict[str, int]) -> list[list[int]]:
        """A fake ``lens.borrows_stored``: each moved account's fresh balances, in market order."""
        return [[self.fresh[(a, j)] for j in range(len(self.after)) if mask >> j & 1] for a, mask in moved.items()]


def random_book(seed: int, accounts: int, listed: int = 5) -> RandomBook:
    """Accounts with cToken balances and borrows in 5 markets of 18, 6, 8, 18 and 18 decimals (the
    last ``listed`` - 5 unused markets listed before them: the used ones' places are offset):
    18-decimal principals past 2^63 (and past 2^100), interest indices from 1e18 to 2^62, borrows
    kept as pairs (principal, interestIndex) and as balances (their market's index moved or not,
    market 3's did not). Each account's borrow at the later block is computed here in Python
    integers: principal × borrowIndex // interestIndex, or the balance the lens returns."""
    rng = random.Random(seed)
    decimals = [18, 6, 8, 18, 18]
    index_before = [rng.randrange(10**18, 2**61) for _ in decimals]
    index_after = [i + rng.randrange(0, i // 1000) for i in index_before]
    index_after[3] = index_before[3]        # a market whose index did not move
    before = [market(k, decimals[k], rng.randrange(10**14, 10**27), index_before[k]) for k in range(len(decimals))]
    after = [market(k, decimals[k], rng.randrange(10**14, 10**27), index_after[k]) for k in range(len(decimals))]
    unused = [market(k, 18, 10**26, 10**18) for k in range(len(decimals), listed)]
    before, after = unused + before, unused + after
    first = len(unused)     # the place of market 0 in the list
    figures_before, figures_after, pairs, fresh = {}, {}, {}, {}
    for n in range(accounts):
        account = f"0x{0x1000 + n:040x}"
        entered = [first + j for j in rng.sample(range(len(decimals)), rng.randrange(0, 4))]   # any order, or none
        held_before, held_after, proven = {}, {}, {}
        for j in rng.sample(range(len(decimals)), rng.randrange(1, 4)):
            ctoken_balance = rng.choice([0, rng.randrange(1, 2 ** rng.randrange(1, 63))])
            borrowed = rng.choice([0, rng.randrange(1, 2 ** rng.randrange(1, 110))])
            if not (ctoken_balance or borrowed):
                continue
            if borrowed and rng.random() < 0.7:     # kept as its pair (principal, interestIndex)
                interest_index = rng.randrange(10**18, index_before[j] + 1)
                proven[first + j] = (borrowed, interest_index)
                now = borrowed * index_after[j] // interest_index
            elif borrowed and index_after[j] != index_before[j]:    # a balance, read again at the new index
                now = borrowed + rng.randrange(0, 10**6)
                fresh[(account, first + j)] = now
            else:
                now = borrowed
            held_before[first + j] = (ctoken_balance, borrowed, 0)
            held_after[first + j] = (ctoken_balance, now, after[first + j]["exchange_rate_mantissa"])
        figures_before[account] = (entered, held_before)
        figures_after[account] = (entered, held_after)
        if proven:
            pairs[account] = proven
    return RandomBook(before, after, figures_before, figures_after, pairs, fresh)


def test_random_books_equal_the_full_read_at_the_later_block(monkeypatch):
    # random books (random_book): the expected rows are the full read's (rows_from_figures,
    # Python integers) of each borrow at the later block
    book = random_book(17, 400)
    earlier = lens.rows_from_figures(reader(book.before), book.figures_before, book.pairs)
    monkeypatch.setattr(lens, "borrows_stored", book.borrows_stored)
    refreshed = refresh.refresh_accounts(reader(book.after), KeptState.from_state(earlier["_state"]))
    expected = lens.rows_from_figures(reader(book.after), book.figures_after, book.pairs)
    assert refreshed.again == []
    for name in ("positions", "accounts"):
        got = refreshed.tables[name].astype(object)
        want = pd.DataFrame(expected[name]).astype(object)
        key = list(want.columns)
        pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True),
                                      want.sort_values(key).reset_index(drop=True), check_dtype=False, check_exact=True)
    # the accounts with a balance read again are written again, with their balances and the new
    # index (the index kept beside no borrow is never used, and not written again)
    words, ends = refreshed.state.words.tolist(), np.cumsum(refreshed.state.lengths).tolist()
    written = {a: words[end - n:end] for a, n, end in zip(refreshed.state.accounts.tolist(),
                                                            refreshed.state.lengths.tolist(), ends, strict=True)}
    assert set(written) == {a for a, _ in book.fresh}
    assert {a: without_unused_indices(w) for a, w in written.items()} == \
        {a: without_unused_indices(expected["_state"][a]) for a in written}


def without_unused_indices(words: list[int]) -> list[int | None]:
    """Kept words (rows_from_figures) with the index of each record without a borrow as None."""
    first = 2 + words[1]
    return words[:first] + [None if k % 5 == 3 and not words[first + k - 1] else w
                            for k, w in enumerate(words[first:])]


def test_accounts_kept_under_another_market_list_or_with_unexpected_words_are_read_again():
    markets = [market(0, 18, 2 * 10**26, 10**18), market(1, 6, 2 * 10**14, 10**18)]
    a, b, c, d = (f"0x{k:040x}" for k in range(0xA, 0xE))
    kept = lens.rows_from_figures(reader(markets), {a: ([0], {0: (10**8, 0, 0)}), b: ([1], {1: (10**8, 0, 0)}),
                                                    c: ([0], {0: (10**8, 0, 0)})}, {})["_state"]
    other = lens.rows_from_figures(reader(markets[:1]), {d: ([0], {0: (10**8, 0, 0)})}, {})["_state"]
    kept[b][3] = 2          # a market past the list
    kept[c][4] = 2**64      # a cToken balance past int64
    refreshed = refresh.refresh_accounts(reader(markets), KeptState.from_state({**kept, **other}))
    assert sorted(refreshed.again) == [b, c, d]
    assert refreshed.tables["accounts"]["account"].tolist() == [a]
