"""Aave's carried rescan (protocols.aave_v3.carry) against the full read's rows: each carried
row's amount and raw are the ones rows_from_lens writes of the account's lens row with its
balances at the block (with_balances, Python integers), whatever the rows' order, under both
rounding rules (half up before 3.5, floor / ceil after); and every account whose rows it cannot
prove from its kept records is read again."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pandas as pd
import pytest

from analyzer.kept import KeptRows, KeptState
from analyzer.model import to_table
from protocols.aave_v3.carry import carry_accounts
from protocols.aave_v3.lens import rows_from_lens, with_balances
from tests.test_aave_v3_refresh import held_both_ways
from tests.test_scan_incremental_kept import _AaveMarket, _kept_aave_rows


def lens_positions(market, state: dict[str, list[int]]) -> pd.DataFrame:
    """The positions a full read writes of these lens rows at the market's block."""
    rows = with_balances(market, [list(r) for r in state.values()])
    return to_table("positions", rows_from_lens(market, list(state), rows)["positions"])


def shuffled(rows: KeptRows, rng: random.Random) -> KeptRows:
    order = np.array(rng.sample(range(len(rows)), len(rows)), dtype=np.int64)
    return dataclasses.replace(rows, owner=rows.owner[order], asset=rows.asset[order], reserve=rows.reserve[order],
                               debt=rows.debt[order])


def assert_rows_are_the_full_reads(kept: KeptState, rows: KeptRows, carried, expected: pd.DataFrame) -> None:
    """Every row of an account not read again has the full read's amount (bit for bit) and raw."""
    by_key = {(a, asset, side): (amount, raw) for a, asset, side, amount, raw in
              zip(expected["account"], expected["asset"], expected["side"], expected["amount"], expected["raw"],
                  strict=True)}
    accounts, raws = kept.accounts.tolist(), carried.raw.to_pylist()
    assert len(carried.amount) == len(raws) == len(rows)
    checked = 0
    for j, (owner, asset, debt) in enumerate(zip(rows.owner.tolist(), rows.asset.tolist(), rows.debt.tolist(),
                                                 strict=True)):
        if carried.again[owner]:
            continue
        amount, raw = by_key[(accounts[owner], rows.assets[asset], "debt" if debt else "collateral")]
        assert np.float64(carried.amount[j]).tobytes() == np.float64(amount).tobytes() and raws[j] == raw
        checked += 1
    assert checked > len(rows) // 2


@pytest.mark.parametrize("version", ["3.3", "3.6"])
@pytest.mark.parametrize("in_reserve_order", [True, False])
def test_carried_rows_are_the_full_reads_at_the_block(version, in_reserve_order):
    """Rows in any order; records as a lens writes them (in reserve order) or not."""
    rng = random.Random(41)
    market = _AaveMarket(rng, version)
    state = _kept_aave_rows(rng, shared_bits=[12, 80], own_bits=[8, 90], shared=5)
    if not in_reserve_order:
        for words in state.values():
            records = [words[k:k + 3] for k in range(2, len(words), 3)]
            rng.shuffle(records)
            words[2:] = [w for record in records for w in record]
    expected = lens_positions(market, state)
    assert int(expected["raw"].map(int).max()) >= 2**64      # wide balances among them
    for kept in held_both_ways(state):
        rows = shuffled(KeptRows.of(kept, expected), rng)
        carried = carry_accounts(market, kept, rows)
        assert not carried.again.any()
        assert carried.changed is None and carried.params is None and len(carried.state) == 0
        assert_rows_are_the_full_reads(kept, rows, carried, expected)


def test_the_rounding_rules_differ_on_these_balances():
    """The two versions' rows differ (each rule is tested, not one for both)."""
    rng = random.Random(41)
    market = _AaveMarket(rng, "3.3")
    state = _kept_aave_rows(rng, shared_bits=[12, 80], own_bits=[8, 90], shared=5)
    half_up = lens_positions(market, state)
    market.version = "3.6"
    assert (half_up["raw"] != lens_positions(market, state)["raw"]).sum() > 10


@pytest.mark.parametrize("version", ["3.3", "3.6"])
def test_accounts_whose_rows_the_records_do_not_prove_are_read_again(version):
    rng = random.Random(43)
    market = _AaveMarket(rng, version)
    asset = [r["asset"] for r in market.reserves()]
    state = _kept_aave_rows(rng, shared_bits=[12, 80], own_bits=[8, 90], shared=5, accounts=60)
    special = {
        # its debt grows at its own rate (its row: the reserve's debt, as a full read writes it)
        "stable": [5, 0, 3 * 1 + 0, 10**20, 0, 3 * 2 + 2, 10**18, 10**18],
        "zero": [5, 0, 3 * 0 + 0, 10**20, 0, 3 * 3 + 1, 0, 0],      # its debt came to zero
        "unknown reserve": [5, 0, 3 * 0 + 0, 10**20, 0, 3 * 6 + 0, 10**20, 0],      # the 7th of 6 reserves
        "past int64": [5, 0, 3 * 0 + 0, 10**20, 0, 2**64 + 3 * 4 + 1, 10**20, 0],
    }
    names = {what: f"0x{0xee00 + n:040x}" for n, what in enumerate(special)}
    state.update({names[what]: row for what, row in special.items()})
    # a row of no reserve of the pool, of the account kept after one holding the last reserve
    # (its key must not be that one's: this one is read again, that one carried)
    before, after = "0x" + "b0" * 20, "0x" + "b1" * 20
    state[before], state[after] = [5, 0, 3 * 5 + 0, 10**20, 0], [5, 0, 3 * 0 + 0, 10**20, 0]
    plain = {a: r for a, r in state.items() if a not in names.values() and a != after or a == names["stable"]}
    expected = lens_positions(market, plain)
    # the earlier rows of the others: their records' reserves and sides as the earlier scan wrote them
    earlier = [expected, row(after, "0x" + "de" * 20, "collateral"), row(names["zero"], asset[0], "collateral"), row(names["zero"], asset[3], "debt"),
               row(names["unknown reserve"], asset[0], "collateral"), row(names["unknown reserve"], asset[5], "collateral"),
               row(names["past int64"], asset[0], "collateral"), row(names["past int64"], asset[4], "debt")]
    ordinary = [a for a in state if a not in names.values() and a not in (before, after)]
    held = {a: set(zip(expected["asset"][expected["account"] == a], expected["side"][expected["account"] == a],
                       strict=True)) for a in ordinary}
    # a row without its record, a record without its row, a row of no reserve of the pool, a row
    # naming a reserve, one row twice
    missing = next(a for a in ordinary if (asset[2], "debt") not in held[a])
    several = [a for a in ordinary if len(held[a]) >= 2 and a != missing]
    earlier.append(row(missing, asset[2], "debt"))
    dropped = several[0]
    drop = expected.index[expected["account"] == dropped][:1]
    earlier[0] = expected.drop(index=drop)
    earlier.append(row(several[1], "0x" + "de" * 20, "collateral"))
    named = expected[expected["account"] == several[2]].head(1).assign(reserve="0x" + "c0" * 20)
    twice = expected[expected["account"] == several[3]].head(1)
    earlier[0] = earlier[0].drop(index=named.index)
    earlier += [named, twice]
    unproven = {names[what] for what in special} | {after, missing, dropped, *several[1:4]}
    for kept in held_both_ways(state):
        rows = shuffled(KeptRows.of(kept, pd.concat(earlier, ignore_index=True)), rng)
        carried = carry_accounts(market, kept, rows)
        assert set(kept.accounts[carried.again].tolist()) == unproven
        assert_rows_are_the_full_reads(kept, rows, carried, expected)


def test_no_records_prove_no_rows():
    rng = random.Random(47)
    market = _AaveMarket(rng, "3.6")
    kept = KeptState.from_state({"0x" + "01" * 20: [0, 0], "0x" + "02" * 20: [0, 0]})
    rows = KeptRows(np.array([1]), np.array([0]), np.array([0]), np.array([False]), [market.reserves()[0]["asset"]],
                    [""])
    assert carry_accounts(market, kept, rows).again.tolist() == [False, True]


def row(account: str, asset: str, side: str) -> pd.DataFrame:
    """One positions row (only its codes matter: account, asset, reserve, side)."""
    return to_table("positions", [{"protocol": "aave-v3", "market": "0x" + "a1" * 20, "account": account,
                                   "asset": asset, "side": side, "amount": 1.0, "raw": "1"}])
