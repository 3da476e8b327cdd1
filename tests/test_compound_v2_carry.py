"""Compound V2's carried rows (``carry.carry_accounts``): each earlier positions row of an untouched
account, given as codes in any order, gets the ``amount`` and ``raw`` the full read builds
(``rows_from_figures``, Python integers) from the account's figures at the later block; an account
the refresh reads again, or whose kept records and rows do not correspond one to one, is read
again; only the words of a borrow kept as a balance and read again change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyzer.kept import KeptRows, KeptState
from protocols.compound_v2 import carry, lens
from tests.test_compound_v2_refresh import market, random_book, reader, without_unused_indices

BEFORE = [market(0, 18, 200_000_000_000_000_000_000_000_000, 10**18), market(1, 6, 204_000_000_000_000, 2 * 10**18),
          market(2, 8, 20_000_000_000_000_000, 10**18)]
AFTER = [market(0, 18, 200_000_000_000_123_456_789_000_000, 11 * 10**17),
         market(1, 6, 204_000_000_654_321, 2 * 10**18), market(2, 8, 20_000_000_000_000_007, 10**18)]


def shuffled(positions: dict, seed: int = 5) -> pd.DataFrame:
    """A positions table (rows_from_figures' columns) in another order."""
    frame = pd.DataFrame(positions)
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def expected_values(positions: dict) -> dict[tuple[str, str, str], tuple[float, str]]:
    """(account, reserve, side) -> (amount, raw) of a full read's positions."""
    return {(a, r, s): (amount, raw) for a, r, s, amount, raw in
            zip(positions["account"], positions["reserve"], positions["side"], positions["amount"], positions["raw"],
                strict=True)}


def carried_values(kept: KeptState, rows: KeptRows, carried) -> dict[tuple[str, str, str], tuple[float, str]]:
    """(account, reserve, side) -> (amount, raw) of the carried rows of accounts not read again."""
    raw = carried.raw.to_pylist()
    return {(kept.accounts[o], rows.reserves[r], "debt" if d else "collateral"): (carried.amount[i], raw[i])
            for i, (o, r, d) in enumerate(zip(rows.owner.tolist(), rows.reserve.tolist(), rows.debt.tolist(),
                                              strict=True)) if not carried.again[o]}


def same_bits(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, (amount, raw) in want.items():
        assert np.float64(got[key][0]).tobytes() == np.float64(amount).tobytes(), key     # bit for bit
        assert got[key][1] == raw, key


@pytest.mark.parametrize("listed", [5, 70])
def test_random_books_carry_the_full_reads_values_at_the_later_block(monkeypatch, listed):
    # as test_compound_v2_refresh's random books: principals past 2^63 and 2^100, pairs and
    # balances (their index moved or not), rows given shuffled; in 5 markets, or in the last 5
    # of 70 (past a set of markets in 64 bits: rows are searched)
    book = random_book(23, 500, listed)
    earlier = lens.rows_from_figures(reader(book.before), book.figures_before, book.pairs)
    monkeypatch.setattr(lens, "borrows_stored", book.borrows_stored)
    kept = KeptState.from_state(earlier["_state"])
    rows = KeptRows.of(kept, shuffled(earlier["positions"]))
    carried = carry.carry_accounts(reader(book.after), kept, rows)
    expected = lens.rows_from_figures(reader(book.after), book.figures_after, book.pairs)
    assert not carried.again.any()
    assert len(rows) == len(expected["positions"]["account"]) > 900
    same_bits(carried_values(kept, rows, carried), expected_values(expected["positions"]))
    # the accounts with a balance read again change: their words are the full read's (the index
    # kept beside no borrow aside), in kept order
    assert carried.changed is not None
    moved = sorted({a for a, _ in book.fresh})
    assert kept.accounts[carried.changed].tolist() == carried.state.accounts.tolist() == moved
    words, ends = carried.state.words.tolist(), np.cumsum(carried.state.lengths).tolist()
    for account, count, end in zip(moved, carried.state.lengths.tolist(), ends, strict=True):
        assert without_unused_indices(words[end - count:end]) == without_unused_indices(expected["_state"][account])


ACCOUNTS = [f"0x{k:040x}" for k in range(0xA0, 0xA9)]


def book(monkeypatch, fresh_balance: int | None = 7 * 10**18):
    """Nine accounts kept at the earlier block, each with a collateral and a debt row: a pair
    borrow in market 1 (computed at the new index), or a balance in market 0 (its index moved:
    read again through the lens, as ``fresh_balance``, None: the node refused)."""
    figures = {a: ([0, 1], {0: (10**8 + k, 0, 0), 1: (0, 5 * 10**6 + k, 0)}) for k, a in enumerate(ACCOUNTS[:-1])}
    figures[ACCOUNTS[-1]] = ([0], {0: (10**9, 6 * 10**18, 0)})      # a balance kept with market 0's old index
    pairs = {a: {1: (5 * 10**6 + k, 10**18)} for k, a in enumerate(ACCOUNTS[:-1])}
    earlier = lens.rows_from_figures(reader(BEFORE), figures, pairs)
    monkeypatch.setattr(lens, "borrows_stored", lambda _reader, moved: None if fresh_balance is None else
                        [[fresh_balance] for _ in moved])
    return earlier, KeptState.from_state(earlier["_state"])


def book_at_later_block() -> dict[tuple[str, str, str], tuple[float, str]]:
    """The full read's values of :func:`book`'s rows at the later block: each pair at market 1's
    index now (principal × 2e18 / 1e18), the balance as the lens gives it."""
    figures = {x: ([0, 1], {0: (10**8 + k, 0, AFTER[0]["exchange_rate_mantissa"]),
                            1: (0, (5 * 10**6 + k) * 2, AFTER[1]["exchange_rate_mantissa"])})
               for k, x in enumerate(ACCOUNTS[:-1])}
    figures[ACCOUNTS[-1]] = ([0], {0: (10**9, 7 * 10**18, AFTER[0]["exchange_rate_mantissa"])})
    return expected_values(lens.rows_from_figures(reader(AFTER), figures, {})["positions"])


def again_of(kept: KeptState, carried) -> list[str]:
    return kept.accounts[carried.again].tolist()


def test_a_book_with_nothing_odd_carries_every_account(monkeypatch):
    earlier, kept = book(monkeypatch)
    rows = KeptRows.of(kept, shuffled(earlier["positions"]))
    carried = carry.carry_accounts(reader(AFTER), kept, rows)
    assert again_of(kept, carried) == []
    same_bits(carried_values(kept, rows, carried), book_at_later_block())
    assert carried.params is None
    # the balance read again: its words change, with the balance and market 0's index now
    assert kept.accounts[carried.changed].tolist() == [ACCOUNTS[-1]]
    assert carried.state.words.tolist() == [earlier["_state"][ACCOUNTS[-1]][0], 1, 0,
                                            0, 10**9, 7 * 10**18, AFTER[0]["borrow_index"], 0]


def test_records_kept_out_of_market_order_are_found(monkeypatch):
    earlier, _ = book(monkeypatch)
    state = {a: list(w) for a, w in earlier["_state"].items()}
    a = ACCOUNTS[0]
    state[a] = state[a][:4] + state[a][9:] + state[a][4:9]      # its market-1 record first
    kept = KeptState.from_state(state)
    rows = KeptRows.of(kept, shuffled(earlier["positions"]))
    carried = carry.carry_accounts(reader(AFTER), kept, rows)
    assert again_of(kept, carried) == []
    same_bits(carried_values(kept, rows, carried), book_at_later_block())


def test_accounts_the_refresh_reads_again_are_read_again(monkeypatch):
    earlier, _ = book(monkeypatch)
    state = {a: list(w) for a, w in earlier["_state"].items()}
    a, b, c, d = ACCOUNTS[:4]
    state[a][4] = 7             # a market past the list
    state[b][5] = 2**64         # a cToken balance past int64
    state[c][0] = 12345         # kept under another market list
    state[d][11] = -5           # a negative borrow word
    kept = KeptState.from_state(state)
    positions = shuffled(earlier["positions"])
    carried = carry.carry_accounts(reader(AFTER), kept, KeptRows.of(kept, positions[positions["account"] != c]))
    assert again_of(kept, carried) == [a, b, c, d]      # c without its rows too: its words are not ours to read


def test_a_pair_in_a_market_without_borrow_index_is_read_again(monkeypatch):
    earlier, kept = book(monkeypatch)
    after = [*AFTER[:1], {**AFTER[1], "borrow_index": None}, *AFTER[2:]]
    carried = carry.carry_accounts(reader(after), kept, KeptRows.of(kept, shuffled(earlier["positions"])))
    assert again_of(kept, carried) == ACCOUNTS[:-1]     # every pair is in market 1


@pytest.mark.parametrize("fresh_balance", [None, 0])
def test_a_balance_the_node_refuses_or_gives_as_zero_is_read_again(monkeypatch, fresh_balance):
    # None: the lens refused; 0: the record gives no debt row where one was (its rows would change)
    earlier, kept = book(monkeypatch, fresh_balance)
    carried = carry.carry_accounts(reader(AFTER), kept, KeptRows.of(kept, shuffled(earlier["positions"])))
    assert again_of(kept, carried) == [ACCOUNTS[-1]]
    assert carried.changed is None and len(carried.state) == 0


def test_accounts_whose_rows_and_records_differ_are_read_again(monkeypatch):
    earlier, kept = book(monkeypatch)
    positions = pd.DataFrame(earlier["positions"])
    a, b, c, d, e, f = ACCOUNTS[:6]
    row = positions[positions["account"] == a].iloc[[0]]
    positions = pd.concat([
        positions[positions["account"] != b],           # b's rows gone: records without rows
        positions[(positions["account"] == c) & (positions["side"] == "debt")],     # c's debt row twice
        row.assign(reserve=AFTER[2]["ctoken"], asset=AFTER[2]["underlying"]),  # a row where a has no record
        row.assign(account=d, reserve="0x" + "de" * 20),    # d: a reserve not among the markets
        row.assign(account=e, side="debt"),                 # e: a debt row in the market it only supplies
    ])
    positions.loc[(positions["account"] == f) & (positions["side"] == "debt"), "asset"] = AFTER[0]["underlying"]
    kept_rows = KeptRows.of(kept, positions.sample(frac=1, random_state=3))
    carried = carry.carry_accounts(reader(AFTER), kept, kept_rows)
    assert again_of(kept, carried) == [a, b, c, d, e, f]
    # the others' rows are carried with the full read's values
    same_bits(carried_values(kept, kept_rows, carried),
              {k: v for k, v in book_at_later_block().items() if k[0] in ACCOUNTS[6:]})


def test_a_debt_row_where_nothing_is_borrowed_is_read_again(monkeypatch):
    suppliers = {a: ([0], {0: (10**8, 0, 0)}) for a in ACCOUNTS[:2]}
    earlier = lens.rows_from_figures(reader(BEFORE), suppliers, {})
    kept = KeptState.from_state(earlier["_state"])
    positions = pd.DataFrame(earlier["positions"])
    positions.loc[0, "side"] = "debt"
    carried = carry.carry_accounts(reader(AFTER), kept, KeptRows.of(kept, positions))
    assert again_of(kept, carried) == ACCOUNTS[:1]
    assert carried.amount[1] == 10**8 * AFTER[0]["exchange_rate_mantissa"] / 10**18 / 10**18


def test_without_a_lens_every_account_is_read_again(monkeypatch):
    earlier, kept = book(monkeypatch)
    no_lens = reader(AFTER)
    no_lens.ctx.lens = None
    carried = carry.carry_accounts(no_lens, kept, KeptRows.of(kept, pd.DataFrame(earlier["positions"])))
    assert carried.again.all() and len(carried.amount) == len(carried.raw) == 18
