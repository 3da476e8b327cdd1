"""Comet's carried rescan (protocols/comet/carry.py) against the full read's rows at the later
block (:func:`protocols.comet.lens.rows_from_lens`, Python integers): each carried row's amount and
raw text, each account's params and changed words; and the accounts read again, exactly those
whose earlier rows are not the rows of the full read (a principal whose sign flipped or came to
zero, one come from zero, a row dropped, added, of another asset or reserve, twice) and those the
refresh reads again."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from analyzer.kept import KeptRows, KeptState
from protocols.comet import carry as comet_carry
from protocols.comet import lens as comet_lens
from protocols.comet import refresh as comet_refresh
from tests.test_comet_refresh import fake_reader, market_state, untouched_accounts

ODD = ("0x" + "0D" * 20, "0x" + "0E" * 20)     # an assetsIn past a uint16, more words than the market lists


def full_read(reader, rows: dict) -> dict:
    """The full read's tables of lens ``rows`` (an empty row: nothing open, no rows), positions
    with their ``reserve`` (Comet writes none) as a frame."""
    read = comet_lens.rows_from_lens(reader, list(rows), list(rows.values()))
    return {"positions": pd.DataFrame(read["positions"]).assign(reserve=""),
            "params": dict(zip(read["accounts"]["account"], read["accounts"]["params"], strict=True))}


def keys(positions: pd.DataFrame) -> dict[str, list[tuple[str, str, str]]]:
    """Each account's rows' keys (asset, reserve, side), as a sorted list (a row twice: twice)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for account, asset, reserve, side in zip(*(positions[c] for c in ("account", "asset", "reserve", "side")),
                                             strict=True):
        out.setdefault(account, []).append((asset, reserve, side))
    return {a: sorted(k) for a, k in out.items()}


def silent_moves(rng: random.Random, principals: dict, now: dict) -> dict[str, list[str]]:
    """Principals moved with no event besides :func:`untouched_accounts`' (borrowers borrowing
    more): a borrower's come to a supply (its base row changes side) or to zero (its base row
    goes), a zero principal's come to a borrow (a base row comes)."""
    moves: dict[str, list[str]] = {"flip": [], "zero": [], "from zero": []}
    for account, principal in principals.items():
        if now[account] != principal:
            continue
        if principal < 0 and rng.random() < 0.05:
            kind = rng.choice(["flip", "zero"])
            now[account] = rng.getrandbits(rng.choice([20, 70])) + 1 if kind == "flip" else 0
            moves[kind].append(account)
        elif principal == 0 and rng.random() < 0.1:
            now[account] = -rng.getrandbits(40) - 1
            moves["from zero"].append(account)
    return moves


def tampered(rng: random.Random, positions: pd.DataFrame, untouched: list[str], state: dict,
             principals: dict) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Earlier rows that are not those of the accounts' words: a row dropped (a source with no
    row), a collateral row added where the account holds none, a base supply where it has no
    principal, one of an asset the market does not list instead, one given a reserve, one
    collateral given the debt side, a row twice (rows with no source, or one source's twice)."""
    kinds = ("dropped", "added", "unknown asset", "reserve", "debt", "twice")
    chosen = rng.sample(untouched, 5 * len(kinds))
    cases = {kind: chosen[5 * k:5 * k + 5] for k, kind in enumerate(kinds)}
    cases["base added"] = rng.sample([a for a in untouched if principals[a] == 0 and a not in chosen], 5)
    drop = [positions.index[positions["account"] == a][0] for a in cases["dropped"]]
    extra = []
    for account in cases["added"]:
        held = set(positions["asset"][positions["account"] == account])
        free = [a["asset"] for a in state["assets"] if a["asset"] not in held]
        extra.append((account, free[0] if free else "0x" + "99" * 20, "", "collateral"))
    extra += [(a, state["base_token"], "", "collateral") for a in cases["base added"]]
    positions = positions.copy()
    first = {kind: [positions.index[positions["account"] == a][0] for a in cases[kind]]
             for kind in ("unknown asset", "reserve")}     # the base row where there is one
    positions.loc[first["unknown asset"], "asset"] = "0x" + "99" * 20
    positions.loc[first["reserve"], "reserve"] = "0x" + "77" * 20
    collateral = positions["asset"] != state["base_token"]
    cases["debt"] = [a for a in cases["debt"] if ((positions["account"] == a) & collateral).any()]
    positions.loc[[positions.index[(positions["account"] == a) & collateral][0] for a in cases["debt"]], "side"] = "debt"
    twice = positions[positions["account"].isin(cases["twice"])].drop_duplicates("account")
    added = pd.DataFrame(extra, columns=["account", "asset", "reserve", "side"])
    return pd.concat([positions.drop(index=drop), added, twice], ignore_index=True), cases


@pytest.mark.parametrize("names", ["strings", "ASCII bytes, through a chunk"])
def test_carried_rows_are_the_full_reads_rows_at_this_block(names):
    """Earlier rows (shuffled) of accounts some of whose principals moved with no event, some of
    whose rows are not their words': exactly the accounts whose rows the full read at this block
    gives otherwise are read again (and those the refresh reads again); every other row has the
    full read's amount (bit for bit) and raw text, every other account its params, and the
    accounts whose principal moved their new words."""
    rng = random.Random(43)
    state = market_state()
    words, principals, now = untouched_accounts(rng)
    moves = silent_moves(rng, principals, now)
    reader, asked = fake_reader(state, now)
    earlier = full_read(reader, words)
    untouched = [a for a in words if now[a] == principals[a]]
    positions, cases = tampered(rng, earlier["positions"], untouched, state, principals)
    # two accounts the refresh reads again: an assetsIn past a uint16, one more collateral than listed
    odd = {ODD[0]: [5, 2**70, 0, 0, 0, 1, 0, 0], ODD[1]: [5, 1, 0, 0, 0, 1, 0, 0, 7]}
    now.update(dict.fromkeys(ODD, 5))
    positions = pd.concat([positions, pd.DataFrame([(a, state["base_token"], "", "collateral") for a in ODD],
                                                   columns=["account", "asset", "reserve", "side"])])
    # accounts with nothing open at this block and no rows (no accounts row either: read again)
    empty = {f"0x{k:040X}": [2**256 - 9, 0, 0, 0, 0, 0, 0, 0] for k in range(10**6, 10**6 + 3)}
    now.update(dict.fromkeys(empty, 0))
    principals.update(dict.fromkeys(empty, -9))
    kept = KeptState.from_state({**words, **odd, **empty})
    rows = KeptRows.of(kept, positions.sample(frac=1, random_state=7))      # in any order
    if names != "strings":
        chunked = KeptState.from_chunks([kept.to_chunk()])
        kept = KeptState(kept.accounts.astype("S42"), chunked.lengths, narrow=chunked.narrow,
                         wide_at=chunked.wide_at, wide=chunked.wide)

    carried = comet_carry.carry_accounts(reader, kept, rows)

    later = full_read(reader, {a: [now[a] % 2**256, *w[1:]] if now[a] or any(w[5:]) else [] for a, w in words.items()})
    accounts = kept.accounts.tolist()
    given, read = keys(positions), keys(later["positions"])
    expected = [a in ODD or given.get(a) != read.get(a) or a not in later["params"] for a in accounts]
    assert carried.again.tolist() == expected
    again = {a for a, flag in zip(accounts, expected, strict=True) if flag}
    assert sorted(asked) == sorted(a for a in [*words, *empty] if principals[a] <= 0)      # suppliers: not read
    for kind, which in {**moves, **cases, "nothing open": list(empty)}.items():     # each kind is here, read again
        assert len(which) >= 3 and again >= set(which), kind
    assert len(again) < len(accounts) // 5

    # every row of an account carried: the full read's amount (bit for bit) and raw text
    truth = {(a, asset, side): (amount, raw) for a, asset, side, amount, raw in
             zip(*(later["positions"][c] for c in ("account", "asset", "side", "amount", "raw")), strict=True)}
    row_account = np.array(accounts, dtype=object)[rows.owner]
    mine = np.flatnonzero([a not in again for a in row_account.tolist()])
    got = [(float(carried.amount[k]).hex(), carried.raw[k].as_py()) for k in mine.tolist()]
    want = [truth[(row_account[k], rows.assets[rows.asset[k]], "debt" if rows.debt[k] else "collateral")]
            for k in mine.tolist()]
    assert got == [(amount.hex(), raw) for amount, raw in want]
    assert len(mine) > 4000 and any(int(raw) >= 2**64 for _, raw in want) and any(rows.debt[mine])
    assert len(carried.amount) == len(rows) and len(carried.raw) == len(rows)

    # params of every account carried; the words of those whose principal moved, and only theirs
    params = carried.params.to_pylist()
    assert [params[k] for k, a in enumerate(accounts) if a not in again] == \
        [later["params"][a] for a in accounts if a not in again]
    assert any('"is_liquidatable": true' in p for p in later["params"].values())
    moved = [a for a in accounts if a not in again and now[a] != principals.get(a)]
    assert len(moved) > 50 and carried.changed.tolist() == [a in moved for a in accounts]
    assert carried.state.accounts.tolist() == moved
    starts = carried.state.starts
    assert [list(map(int, carried.state.values(starts[i] + np.arange(8)))) for i in range(len(moved))] \
        == [[now[a], words[a][1], 0, 0, 0, *words[a][5:]] for a in moved]


def test_accounts_refresh_would_read_again_are_read_again():
    """Without lens calls the principals cannot be read again: every borrower and every account
    with no principal is read again (as the refresh reads them), the suppliers are carried."""
    state = market_state()
    words, principals, now = untouched_accounts(random.Random(5), 600)
    reader, _ = fake_reader(state, now)
    earlier = full_read(reader, words)
    kept = KeptState.from_state(words)
    reader.ctx.lens = None
    carried = comet_carry.carry_accounts(reader, kept, KeptRows.of(kept, earlier["positions"]))
    assert carried.again.tolist() == [principals[a] <= 0 for a in words]
    assert set(comet_refresh.refresh_accounts(reader, kept).again) == {a for a in words if principals[a] <= 0}
    assert carried.changed is None and 0 < (~carried.again).sum() < len(words)


def test_no_rows_and_no_accounts():
    reader, _ = fake_reader(market_state(), {})
    empty = KeptState.from_state({})
    carried = comet_carry.carry_accounts(reader, empty, KeptRows.of(empty, pd.DataFrame(
        columns=["account", "asset", "reserve", "side"])))
    assert len(carried.amount) == len(carried.raw) == len(carried.again) == len(carried.params) == 0


def test_addresses_as_ascii_bytes_are_packed_as_their_strings():
    """A kept state's names as ASCII bytes go to the principals lens as the same 20 bytes each
    as the checksummed strings; a digit that is not hex, or no 0x, is refused."""
    rng = random.Random(2)
    accounts = [f"0x{rng.getrandbits(160):040x}" for _ in range(300)] + ["0x" + "aB" * 20]
    packed = comet_lens.packed_addresses(np.array(accounts, dtype="S42"))
    assert packed == b"".join(bytes.fromhex(a[2:]) for a in accounts) == comet_lens.packed_addresses(accounts)
    assert comet_lens.packed_addresses(np.array([], dtype="S42")) == b""
    for bad in ("0x" + "g" * 40, "1x" + "a" * 40):
        with pytest.raises(ValueError):
            comet_lens.packed_addresses(np.array([accounts[0], bad], dtype="S42"))
