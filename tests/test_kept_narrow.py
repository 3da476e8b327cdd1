"""A kept state read from chunks holds its words as int64 with the wide ones beside them
(analyzer.kept.KeptState: narrow, wide_at, wide), never a Python int per word: every operation
a rescan makes of it (join, take, leave out, positions as int64, limbs, Python ints, written
back) agrees with the same operation on plain Python lists, across the int64 edges and past
them, on empty states and through chains of rescans' references."""

from __future__ import annotations

import random

import numpy as np
import pytest

from analyzer import wideint
from analyzer.kept import KeptState
from analyzer.scan_chunks import KEPT, STATE, ChunkCache, kept_state

EDGES = [0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64 - 1, 2**64, -(2**64), 2**255, 2**256 - 1,
         -(2**255), 2**300, 10**30]


def _fits(word: int) -> bool:
    return -(2**63) <= word < 2**63


def _random_state(rng: random.Random, count: int, prefix: str = "0x") -> dict[str, list[int]]:
    def word() -> int:
        if rng.random() < 0.25:
            return rng.choice(EDGES)
        value = rng.getrandbits(rng.choice([1, 8, 62, 63, 64, 65, 100, 256]))
        return -value if rng.random() < 0.2 else value
    return {f"{prefix}{n:038x}": [word() for _ in range(rng.randrange(0, 9))] for n in range(count)}


def _stored(state: dict[str, list[int]]) -> KeptState:
    kept = KeptState.from_chunk(KeptState.chunk_of(state))
    assert kept is not None
    return kept


def _rows(kept: KeptState) -> list[tuple[str, list[int]]]:
    """The state as plain lists, through its narrow form only (int64 words, the wide ones put back
    one by one as Python ints)."""
    words = [int(w) for w in kept.narrow.tolist()]
    for place, value in zip(kept.wide_at.tolist(), kept.wide.tolist(), strict=True):
        assert words[place] == 0 and not _fits(value)
        words[place] = value
    starts = np.cumsum(kept.lengths) - kept.lengths
    return [(a, words[s:s + n]) for a, s, n in zip(kept.accounts.tolist(), starts.tolist(), kept.lengths.tolist(),
                                                    strict=True)]


def _narrow_only(kept: KeptState) -> bool:
    """The state never made every word a Python int (``words`` not built)."""
    return "words" not in vars(kept)


def test_stored_words_are_held_as_int64_and_the_wide_ones_beside_them():
    rng = random.Random(5)
    state = _random_state(rng, 400)
    kept = _stored(state)
    flat = [w for words in state.values() for w in words]
    assert kept.narrow.dtype == np.int64 and kept.narrow.tolist() == [w if _fits(w) else 0 for w in flat]
    assert kept.wide_at.tolist() == [i for i, w in enumerate(flat) if not _fits(w)]
    assert kept.wide.tolist() == [w for w in flat if not _fits(w)] and all(type(w) is int for w in kept.wide)
    assert set(EDGES) <= set(flat)      # every edge drawn: ±2^63 - 1 and -2^63 narrow, 2^63 wide
    assert _narrow_only(kept)
    # words, built when asked for: every word a Python int, in order
    assert kept.words.tolist() == flat and all(type(w) is int for w in kept.words.tolist())


def test_positions_come_as_int64_limbs_and_python_ints_as_the_lists_give_them():
    rng = random.Random(7)
    state = _random_state(rng, 300)
    flat = [w for words in state.values() for w in words]
    for kept in (_stored(state), KeptState.from_state(state)):    # held as stored, or built of words
        at = np.array([rng.randrange(len(flat)) for _ in range(2000)] + [i for i, w in enumerate(flat) if w in EDGES],
                      dtype=np.int64)
        expected = [flat[i] for i in at.tolist()]
        values, wide = kept.ints(at)
        assert values.dtype == np.int64
        assert values.tolist() == [w if _fits(w) else 0 for w in expected]
        assert wide.tolist() == [not _fits(w) for w in expected]
        limbs, negative = kept.limbs(at)
        assert wideint.to_ints(limbs).tolist() == [abs(w) for w in expected]
        assert negative.tolist() == [w < 0 for w in expected]
        assert kept.values(at).tolist() == expected
        some = kept.take(kept.lengths > 0)
        assert some.column(0).tolist() == [words[0] for words in state.values() if words]
        empty = np.zeros(0, dtype=np.int64)
        assert kept.ints(empty)[0].tolist() == [] and kept.limbs(empty)[1].tolist() == [] and kept.values(empty).size == 0
    assert _narrow_only(kept := _stored(state)) and kept.values(np.array([0])).tolist() == flat[:1] and _narrow_only(kept)


def test_take_without_concat_and_written_back_are_the_lists_operations():
    rng = random.Random(11)
    parts = [_random_state(rng, rng.randrange(0, 60), prefix=f"0x{p:02x}") for p in range(4)] + [{}]
    model = [(a, w) for state in parts for a, w in state.items()]
    joined = KeptState.concat([_stored(state) for state in parts])
    assert _rows(joined) == model and _narrow_only(joined)
    loaded = KeptState.from_chunks([KeptState.chunk_of(state) for state in parts])
    assert loaded is not None and _rows(loaded) == model
    for _ in range(20):
        mask = np.array([rng.random() < 0.5 for _ in model], dtype=bool)
        taken = joined.take(mask)
        assert _rows(taken) == [row for row, keep in zip(model, mask.tolist(), strict=True) if keep]
        assert _narrow_only(taken)
        again = KeptState.from_chunk(taken.to_chunk())
        assert again is not None and _rows(again) == _rows(taken)
    gone = {a for a, _ in rng.sample(model, 40)}
    assert _rows(joined.without(gone)) == [row for row in model if row[0] not in gone]
    # an account twice (two scans' chunks of one block): the last one kept
    twice = KeptState.concat([joined, _stored(dict(model[:3]))]).without([])
    assert _rows(twice) == model[3:] + model[:3]
    # a state built of words joined with stored ones: the same lists
    mixed = KeptState.concat([_stored(parts[0]), KeptState.from_state(parts[1]), _stored(parts[2])])
    assert _rows(mixed) == [(a, w) for state in parts[:3] for a, w in state.items()]
    # empty states: of nothing, taken to nothing, joined
    empty = KeptState.empty()
    for nothing in (empty, joined.take(np.zeros(len(model), dtype=bool)), KeptState.concat([empty, empty]),
                    _stored({}), KeptState.from_chunks([])):
        assert nothing is not None and _rows(nothing) == [] and len(nothing) == 0
        assert nothing.ints(np.zeros(0, dtype=np.int64))[0].size == 0
    assert _rows(KeptState.concat([empty, joined])) == model


def test_writing_into_the_words_of_a_taken_state_changes_the_state():
    """A caller that builds a changed state writes into ``words`` of a taken one (Compound V2's
    moved borrows): what is stored and read back is the changed words."""
    state = {"0xA": [1, 2**64], "0xB": [3, 4, 5], "0xC": [-(2**70)]}
    taken = _stored(state).take(np.array([True, True, False]))
    taken.words[1] = 7
    taken.words[3] = 2**80
    assert _rows(taken) == [("0xA", [1, 7]), ("0xB", [3, 2**80, 5])]
    assert taken.ints(np.array([1, 3]))[1].tolist() == [False, True]
    stored = KeptState.from_chunk(taken.to_chunk())
    assert stored is not None and _rows(stored) == [("0xA", [1, 7]), ("0xB", [3, 2**80, 5])]


def test_a_break_in_the_wide_words_places_is_caught():
    """The checks above can fail: a state whose wide words sit one place off reads as other lists."""
    state = {"0xA": [1, 2**64, 2], "0xB": [3, 2**70]}
    kept = _stored(state)
    shifted = KeptState(kept.accounts, kept.lengths, narrow=kept.narrow, wide_at=kept.wide_at - 1, wide=kept.wide)
    with pytest.raises(AssertionError):
        assert _rows(shifted) == list(state.items())
    assert shifted.values(np.array([0, 1])).tolist() == [2**64, 0] != [1, 2**64]


def test_wideint_limbs_of_int64_and_wide_words_are_their_sizes():
    rng = random.Random(17)
    values = [rng.choice([0, 1, -1, 2**63 - 1, -(2**63), rng.getrandbits(63), -rng.getrandbits(63)])
              for _ in range(5000)]
    wide_at = sorted(rng.sample(range(len(values)), 700))
    wide = [rng.choice([1, -1]) * rng.choice([2**63, 2**64, 2**64 - 1, 2**256 - 1, 2**300, rng.getrandbits(200) + 2**63])
            for _ in wide_at]
    every = list(values)
    for place, value in zip(wide_at, wide, strict=True):
        every[place] = value
    narrow = np.array(values, dtype=np.int64)
    narrow[wide_at] = 0
    limbs, negative = wideint.from_int64(narrow, np.array(wide_at, dtype=np.int64), np.array(wide, dtype=object))
    assert wideint.to_ints(limbs).tolist() == [abs(v) for v in every]
    assert negative.tolist() == [v < 0 for v in every]
    assert (limbs < wideint.BASE).all()
    limbs, negative = wideint.from_int64(narrow)
    assert wideint.to_ints(limbs).tolist() == [abs(v) for v in narrow.tolist()] and len(limbs) == 4


def test_a_chain_of_rescans_reads_back_as_the_lists_block_by_block(tmp_path):
    """States loaded through references to earlier blocks (each block: its own chunks, then the
    earlier state less what it dropped, each account once, the last kept, then its changed
    words) equal the plain lists built block by block, with wide and negative words, and never
    make every word a Python int."""
    rng = random.Random(19)

    def at(block: int) -> ChunkCache:
        return ChunkCache(tmp_path / str(block) / "plugin" / "key")

    names = [f"0x{n:040x}" for n in range(80)]

    def some(k: int) -> list:
        return [(a, [rng.choice(EDGES) if rng.random() < 0.3 else rng.getrandbits(rng.choice([8, 64, 70, 256]))
                     for _ in range(rng.randrange(0, 6))]) for a in rng.sample(names, k)]

    def put(block: int, name: str, rows: list) -> None:
        at(block).put(STATE + name, KeptState.chunk_of(dict(rows)))
        at(block).put("positions-" + name, {"positions": []})

    def once_each(rows: list) -> list:
        last = {account: i for i, (account, _) in enumerate(rows)}
        return [row for i, row in enumerate(rows) if last[row[0]] == i]

    expected = {0: sorted(some(50))}
    put(0, "a", expected[0])
    for block in range(1, 7):
        read, changed = some(4), some(5)
        dropped = sorted({a for a, _ in read + changed} | set(rng.sample(names, 3)))
        put(block, "r", read)
        at(block).put(f"{KEPT}{block - 1}", {"base": block - 1, "dropped": dropped,
                                             "changed": KeptState.chunk_of(dict(changed))})
        expected[block] = read + once_each([row for row in expected[block - 1] if row[0] not in dropped]) + changed
        got = kept_state(at(block))
        assert got is not None and _narrow_only(got)
        assert _rows(got) == expected[block], block


def test_a_stored_state_of_another_format_or_damaged_is_refused():
    """Format 3 stores the wide words as limbs (uint32, each below 10^8) and signs: a chunk of
    format 2 (the wide words as Python ints) is refused (the rescan reads in full), as is one
    whose parts disagree."""
    good = KeptState.chunk_of({"0xA": [1, 2**64, -(2**70)], "0xB": [3]})
    assert good["kept"] == 3 and _rows(KeptState.from_chunk(good)) == [("0xA", [1, 2**64, -(2**70)]), ("0xB", [3])]
    older = {**good, "kept": 2, "wide": [2**64, -(2**70)]}
    limbs = np.frombuffer(good["wide"], dtype="<u4").copy()
    too_big = limbs.copy()
    too_big[0] = 10**8
    for damaged in (older, {**good, "wide": too_big.tobytes()}, {**good, "wide": good["wide"][:-4]},
                    {**good, "negative": b"\x00\x02"}, {**good, "negative": b"\x00"}, {**good, "limbs": 0},
                    {**good, "limbs": good["limbs"] + 1}, {**good, "wide_at": np.array([2, 1], dtype="<i8").tobytes()},
                    {**good, "wide_at": np.array([1, 4], dtype="<i8").tobytes()}, {**good, "limbs": "3"}):
        assert KeptState.from_chunk(damaged) is None, damaged
    assert KeptState.from_chunk({**good, "wide": limbs.tobytes()}) is not None
