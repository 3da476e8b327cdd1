"""The Aave refresh's collateral flags (bits of the user configuration, over its two 64-bit
halves below 2^128, by Python past it) against Python's shifts, and the refresh against
rows_from_lens (the per-account path of a full read) with configurations that all take the
halves' path, reserve ids past 32 (bits past 64) among them."""

from __future__ import annotations

import random

import numpy as np
import pytest

from analyzer import wideint
from analyzer.kept import KeptState, objects
from tests.test_scan_incremental_kept import _AaveMarket, _kept_aave_rows


@pytest.mark.parametrize("widest", [64, 105, 106, 107, 127, 200])
def test_flags_are_the_configurations_bits(widest):
    from protocols.aave_v3.lens import _flags

    rng = random.Random(widest)
    configs = [rng.getrandbits(rng.randint(1, widest)) for _ in range(300)] + [2**64 - 1, 2**64, 2**widest - 1]
    which = np.array([rng.randrange(len(configs)) for _ in range(5000)], dtype=np.int64)
    bits = np.array([rng.randrange(min(widest, 127)) for _ in range(5000)], dtype=np.int64)
    got = _flags(wideint.from_ints(objects(configs)), which, bits)
    assert got.tolist() == [bool(configs[w] >> b & 1) for w, b in zip(which.tolist(), bits.tolist(), strict=True)]


def test_aave_refresh_with_configurations_of_two_halves_equals_the_lens_read():
    from analyzer.model import to_table
    from protocols.aave_v3.lens import refresh_accounts, rows_from_lens, with_balances

    rng = random.Random(31)
    ids = []
    for version in ("3.3", "3.6"):
        market = _AaveMarket(rng, version)
        ids += [r["id"] for r in market.reserves()]
        state = _kept_aave_rows(rng, shared_bits=[12, 70, 80, 127], own_bits=[8, 66, 100], shared=6)
        expected = rows_from_lens(market, list(state), with_balances(market, [list(r) for r in state.values()]))
        for previous in held_both_ways(state):
            refreshed = refresh_accounts(market, previous)
            assert refreshed.again == []
            for name in ("positions", "accounts"):
                assert to_table(name, refreshed.tables[name]).equals(to_table(name, expected[name])), name
        params = to_table("accounts", expected["accounts"])["params"]
        assert (~params.str.contains('"collateral_off": []', regex=False)).any()
    assert max(ids) >= 32       # a collateral bit in the high half


def test_aave_refresh_leaves_out_the_accounts_read_again():
    """An account with stable debt is read again: the others' rows are the lens read's, labelled
    by their accounts (not every kept account's)."""
    from analyzer.model import to_table
    from protocols.aave_v3.lens import refresh_accounts, rows_from_lens, with_balances

    rng = random.Random(37)
    market = _AaveMarket(rng, "3.6")
    state = {f"0x{n:040x}": [rng.getrandbits(70), n % 2, 3 * (n % 6), 1 + rng.getrandbits(80), 0] for n in range(50)}
    stable = "0x" + "ee" * 20
    state[stable] = [rng.getrandbits(70), 0, 3 * 2 + 2, 10**20, 10**20]
    computed = {a: r for a, r in state.items() if a != stable}
    expected = rows_from_lens(market, list(computed), with_balances(market, [list(r) for r in computed.values()]))
    for previous in held_both_ways(state):
        refreshed = refresh_accounts(market, previous)
        assert refreshed.again == [stable]
        for name in ("positions", "accounts"):
            assert to_table(name, refreshed.tables[name]).equals(to_table(name, expected[name])), name


def held_both_ways(state: dict[str, list[int]]):
    """The kept state built of Python ints, and as a rescan loads it (int64 words, the wide ones
    beside them), which the refresh must not turn into a Python int per word."""
    yield KeptState.from_state(state)
    stored = KeptState.from_chunk(KeptState.chunk_of(state))
    assert stored is not None
    yield stored
    assert "words" not in vars(stored)
