"""What an incremental rescan computes at once over arrays (analyzer.kept and analyzer.textcolumns, the readers' refresh)
agrees with the plain per-value reference it replaces: the ragged kept state, exact amounts and
string columns, Comet's present value and isLiquidatable."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from analyzer.kept import KeptState, Refreshed, exact_amounts, objects
from analyzer.model import raw_to_amount
from analyzer.scan_chunks import KEPT, MAX_REFERENCES, STATE, ChunkCache, _kept_chunk, kept_state
from analyzer.textcolumns import decimal_strings, labels, repeated, text
from protocols.comet import exact
from protocols.comet.lens import liquidatable, present_value, signed


def test_kept_state_round_trips_and_finds_each_accounts_records():
    state = {"0xA": [7, 1, 10, 11, 12], "0xB": [8, 0], "0xC": [9, 2, 20, 21, 22, 23, 24, 25, 2**255]}
    kept = KeptState.from_chunk(KeptState.chunk_of(state))
    assert kept is not None and kept.accounts.tolist() == ["0xA", "0xB", "0xC"]
    assert kept.column(0).tolist() == [7, 8, 9]
    # records of width 3 after 2 words: one for A, none for B, two for C (the last word left over)
    owner, at = kept.entries(2, 3)
    assert owner.tolist() == [0, 2, 2] and kept.words[at].tolist() == [10, 20, 23]
    # a head of its own length per account (C: three words), whole records only
    owner, at = kept.entries(np.array([2, 2, 3]), 2)
    assert owner.tolist() == [0, 2, 2, 2] and kept.words[at].tolist() == [10, 21, 23, 25]
    assert KeptState.from_chunk({"accounts": ["0xA"], "lengths": [3], "words": [1]}) is None
    assert KeptState.from_state(state).without(["0xB"]).accounts.tolist() == ["0xA", "0xC"]
    # stored states in turn, made one at once: the same accounts, lengths and words in order
    joined = KeptState.from_chunks([KeptState.chunk_of(state), KeptState.chunk_of({"0xD": [5]})])
    assert joined is not None and joined.accounts.tolist() == ["0xA", "0xB", "0xC", "0xD"]
    assert joined.lengths.tolist() == [5, 2, 9, 1] and joined.words.tolist() == [*kept.words.tolist(), 5]
    assert KeptState.from_chunks([KeptState.chunk_of(state), {"accounts": ["0xA"], "lengths": [3], "words": [1]}]) \
        is None and KeptState.from_chunks([None]) is None and KeptState.from_chunks([{"words": []}]) is None
    twice = KeptState.concat([kept, KeptState.from_state({"0xA": [1, 1]})]).without([])
    assert twice.accounts.tolist() == ["0xB", "0xC", "0xA"] and twice.column(0).tolist() == [8, 9, 1]



def test_stored_words_come_back_exactly_and_a_damaged_or_older_chunk_is_refused(tmp_path):
    """Words are stored as int64 bytes with the wide ones beside them: every integer comes back
    the same Python int (across the int64 and uint64 edges, up to 2^256), through the file."""
    rng = random.Random(3)
    edges = [0, 1, 256, 257, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**255, 2**256 - 1, -1, -(2**63), -(2**63) - 1]
    state = {f"0x{n:040x}": [rng.choice(edges) if rng.random() < 0.3 else rng.getrandbits(rng.choice([1, 8, 62, 63, 64,
                             65, 127, 200, 256])) for _ in range(rng.randrange(0, 12))] for n in range(300)}
    state["0xnarrow"], state["0xwide"], state["0xnone"] = [5, 2**63 - 1], [2**256 - 1, 2**64], []
    cache = ChunkCache(tmp_path)
    cache.put("s", KeptState.chunk_of(state))
    kept = KeptState.from_chunk(cache.get("s"))
    assert kept is not None and kept.accounts.tolist() == list(state)
    assert kept.lengths.dtype == np.int64 and kept.lengths.tolist() == [len(w) for w in state.values()]
    expected = [w for words in state.values() for w in words]
    assert kept.words.dtype == object and kept.words.tolist() == expected
    assert all(type(w) is int for w in kept.words)
    # what a rescan writes of a KeptState, and two stored states joined, the same
    again = KeptState.from_chunks([kept.to_chunk(), KeptState.chunk_of({"0xD": [2**70, 3]})])
    assert again is not None and again.words.tolist() == [*expected, 2**70, 3]
    assert again.accounts.tolist() == [*state, "0xD"] and again.lengths.tolist()[-1] == 2
    assert KeptState.from_chunks([]) is not None and len(KeptState.from_chunk(KeptState.chunk_of({}))) == 0
    # a truncated file is not read; a stored state whose parts disagree, or of the older shape, is refused
    path = tmp_path / f"s{ChunkCache.SUFFIX}"
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 10):
        path.write_bytes(data[:cut])
        assert KeptState.from_chunk(cache.get("s")) is None
    good = KeptState.chunk_of({"0xA": [1, 2**64], "0xB": [3]})
    for damaged in ({**good, "kept": 1}, {**good, "lengths": good["lengths"][:-8]}, {**good, "words": good["words"][:-1]},
                    {**good, "wide": []}, {**good, "wide_at": np.array([3], dtype=np.int64).tobytes()},
                    {**good, "lengths": np.array([-1, 4], dtype=np.int64).tobytes()}, {**good, "accounts": "0xA"},
                    {key: value for key, value in good.items() if key != "wide_at"},
                    {"accounts": ["0xA", "0xB"], "lengths": [2, 1], "words": [1, 2**64, 3]}, None, []):
        assert KeptState.from_chunk(damaged) is None, damaged
        assert KeptState.from_chunks([good, damaged]) is None
    assert KeptState.from_chunk(good) is not None

def test_a_rescans_kept_state_refers_to_the_earlier_one_for_the_accounts_it_carries(tmp_path):
    def at(block: int) -> ChunkCache:
        return ChunkCache(tmp_path / str(block) / "plugin" / "key")

    first = {"0xA": [1, 10], "0xB": [2, 20], "0xC": [3, 30], "0xD": [4, 40]}
    at(5).put(STATE + "x", KeptState.chunk_of(first))
    at(5).put("positions-x", {"positions": []})
    previous = kept_state(at(5))
    assert previous is not None
    # a rescan 5 -> 9: D was touched (read in full at 9), C's words changed, A and B are carried
    untouched = previous.without(["0xD"])
    refreshed = Refreshed({}, KeptState.from_state({"0xC": [3, 31]}), [], carried=np.array([True, True, False]))
    chunk = _kept_chunk(refreshed, untouched, {"0xD"}, 5, 9, by_reference=True)
    assert chunk["base"] == 5 and chunk["dropped"] == ["0xC", "0xD"]     # C's words are in the chunk
    at(9).put(f"{KEPT}5", chunk)
    at(9).put(STATE + "y", KeptState.chunk_of({"0xD": [4, 41]}))
    at(9).put("positions-y", {"positions": []})
    later = kept_state(at(9))
    assert later is not None
    assert dict(zip(later.accounts.tolist(), later.column(1).tolist(), strict=True)) == \
        {"0xA": 10, "0xB": 20, "0xC": 31, "0xD": 41}
    # written in full: without a reference (an account list, too many references in a row) it is
    # the same state
    full = _kept_chunk(refreshed, untouched, {"0xD"}, 5, 9, by_reference=False)
    assert "base" not in full and sorted(full["accounts"]) == ["0xA", "0xB", "0xC"]
    # the earlier scan's cache gone: no state (the rescan reads every account)
    for path in (tmp_path / "5").rglob("*.chunk"):
        path.unlink()
    assert kept_state(at(9)) is None
    # a reference to a later or the same block is never followed, nor a chain past MAX_REFERENCES
    at(12).put(f"{KEPT}12", {"base": 12, "dropped": [], "changed": KeptState.chunk_of({})})
    assert kept_state(at(12)) is None
    at(0).put(STATE + "z", KeptState.chunk_of(first))
    at(0).put("positions-z", {"positions": []})
    for block in range(1, MAX_REFERENCES + 2):
        at(block).put(f"{KEPT}{block - 1}", {"base": block - 1, "dropped": [], "changed": KeptState.chunk_of({})})
    assert kept_state(at(MAX_REFERENCES)) is not None and kept_state(at(MAX_REFERENCES + 1)) is None



def test_a_chain_of_references_is_the_state_built_block_by_block(tmp_path):
    """Rescans in a row, each keeping its carried accounts by reference to the block before: the
    state loaded at once equals the one built block by block as plain lists (each block: its own
    chunks, then the earlier state less what it dropped, each account once, the last kept, then
    its changed words), with two scans' chunks at one block (an account twice)."""
    rng = random.Random(13)

    def at(block: int) -> ChunkCache:
        return ChunkCache(tmp_path / str(block) / "plugin" / "key")

    def once_each(rows: list) -> list:
        last = {account: i for i, (account, _) in enumerate(rows)}
        return [row for i, row in enumerate(rows) if last[row[0]] == i]

    names = [f"0x{n:040x}" for n in range(60)]

    def some(k: int) -> list:
        return [(a, [rng.getrandbits(rng.choice([8, 70, 256])) for _ in range(rng.randrange(1, 5))])
                for a in rng.sample(names, k)]

    def put(block: int, name: str, rows: list) -> None:
        at(block).put(STATE + name, KeptState.chunk_of(dict(rows)))
        at(block).put("positions-" + name, {"positions": []})

    expected: dict[int, list] = {}
    own = sorted(some(30)), sorted(some(20))
    put(0, "a", own[0])
    put(0, "b", own[1])       # another scan's chunk of the same block: accounts twice
    expected[0] = own[0] + own[1]
    for block in range(1, 6):
        read = some(3)
        dropped = sorted({a for a, _ in read} | set(rng.sample(names, 5)))
        changed = some(4)
        put(block, "r", read)
        at(block).put(f"{KEPT}{block - 1}", {"base": block - 1, "dropped": dropped,
                                             "changed": KeptState.chunk_of(dict(changed))})
        earlier = once_each([row for row in expected[block - 1] if row[0] not in dropped])
        expected[block] = read + earlier + changed
        got = kept_state(at(block))
        assert got is not None
        rows = [(a, got.words[s:s + n].tolist()) for a, s, n in zip(got.accounts.tolist(), got.starts.tolist(),
                                                                     got.lengths.tolist(), strict=True)]
        assert rows == expected[block], block

def test_exact_amounts_and_string_columns_match_the_per_value_conversions():
    rng = random.Random(7)
    raw = [rng.getrandbits(rng.choice([1, 40, 64, 90, 130, 200])) for _ in range(2000)]
    decimals = [rng.choice([0, 6, 8, 18, 24, 77]) for _ in raw]
    got = exact_amounts(objects(raw), np.array(decimals))
    assert got.tolist() == [raw_to_amount(r, d) for r, d in zip(raw, decimals, strict=True)]
    words = [str(r) for r in raw] + ["", "{\"entered\": []}", "é"]
    assert pd.Series(text(words)).equals(pd.Series(words, dtype="string"))
    codes = np.array([rng.randrange(3) for _ in range(50)])
    names = ["collateral", "debt", ""]
    assert pd.Series(labels(names, codes)).tolist() == [names[c] for c in codes]
    assert pd.Series(repeated("0xAbC", 4)).tolist() == ["0xAbC"] * 4 and len(repeated("x", 0)) == 0


def test_decimal_strings_equal_str_across_the_int64_edges():
    """Arrow's int64 text where a column fits, ``str`` where it does not, signed: as ``str``."""
    rng = random.Random(5)
    edges = [0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**64, 2**256 - 1, -(2**255)]
    fitting = [rng.randrange(-(2**63), 2**63) for _ in range(500)] + edges[:5]
    for column in (fitting, fitting + [edges[5]], [edges[6]] + fitting, edges, [], [rng.getrandbits(200)]):
        assert decimal_strings(objects(column)).to_pylist() == [str(v) for v in column]
    unsigned = np.array([0, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)    # never read as int64: no wrap
    assert decimal_strings(unsigned).to_pylist() == ["0", str(2**63 - 1), str(2**63), str(2**64 - 1)]
    assert decimal_strings(np.array([-(2**63), 7], dtype=np.int64)).to_pylist() == [str(-(2**63)), "7"]


def test_comet_values_and_liquidatable_match_the_contract_reference():
    rng = random.Random(11)
    assets = [{"scale": 10**18, "liquidate_collateral_factor": 85 * 10**16},
              {"scale": 10**8, "liquidate_collateral_factor": 7 * 10**17}]
    state = {"totals": [10**15 + 12345, 10**15 + 987654], "prices": [10**8, 3000 * 10**8, 60000 * 10**8],
             "base_scale": 10**6, "assets": assets}
    principal = [rng.choice([-1, 1, 0]) * rng.getrandbits(rng.choice([20, 40, 50])) for _ in range(3000)]
    held = [[rng.choice([0, rng.getrandbits(60)]), rng.choice([0, rng.getrandbits(24)])] for _ in principal]
    reference = exact.CometState(
        supply_index=state["totals"][0], borrow_index=state["totals"][1], total_supply_base=0, total_borrow_base=0,
        base_balance=0, base_price=state["prices"][0], base_scale=state["base_scale"],
        asset_scale=[a["scale"] for a in assets], asset_price=state["prices"][1:],
        liquidate_collateral_factor=[a["liquidate_collateral_factor"] for a in assets],
        liquidation_factor=[0, 0], principal=dict(enumerate(principal)), collateral=dict(enumerate(held)))
    flagged = liquidatable(state, objects(principal), np.array(held, dtype=object).reshape(len(held), 2))
    assert flagged.tolist() == [reference.is_liquidatable(i) for i in range(len(principal))]
    assert 0 < flagged.sum() < len(principal)      # both answers occur
    values = present_value(objects(principal), 10**15 + 5, 10**15 + 7)
    assert values.tolist() == [exact.present_value(p, 10**15 + 5, 10**15 + 7) for p in principal]
    words = objects([p % 2**256 for p in principal])
    assert signed(words).tolist() == principal


def test_the_discovery_cache_is_keyed_by_how_accounts_are_picked():
    """Logs cached by a reader that picked accounts out of them otherwise are not reused: the key
    holds the declared fields (what discovery decodes), or the plugin's source without them."""
    import dataclasses

    from analyzer.scan import account_picking, reader_digest
    from protocols import plugins
    from protocols.base import AccountEvents, EventField

    topic = "0x" + "11" * 32
    by_topic_2 = AccountEvents(("0x" + "aa" * 20,), (topic,), lambda log: [], account_fields=(EventField(topic, topic=2),))
    by_topic_1 = dataclasses.replace(by_topic_2, account_fields=(EventField(topic, topic=1),))
    plugin = plugins()["aave-v3"]
    assert account_picking(by_topic_2, plugin) != account_picking(by_topic_1, plugin)
    undeclared = dataclasses.replace(by_topic_2, account_fields=())
    assert account_picking(undeclared, plugin) == reader_digest(plugin)


class _AaveMarket:
    """What the Aave refresh and its per-account reference read of a reader: reserves, version,
    pool, the normalized indices at the block (given, not read) and the reader's own rows."""

    from protocols.aave_v3.reader import AaveV3Reader
    _position = AaveV3Reader._position

    def __init__(self, rng: random.Random, version: str):
        self.version, self.pool = version, "0x" + "a1" * 20
        ids = rng.sample(range(40), 6)     # reserve ids are not their places in the list
        self._reserves = [{"asset": f"0x{i:040x}", "id": reserve_id, "config": {"decimals": rng.choice([6, 8, 18])}}
                          for i, reserve_id in enumerate(ids)]
        self._normalized_indices = [(10**27 + rng.getrandbits(88), 10**27 + rng.getrandbits(88)) for _ in ids]

    def reserves(self) -> list[dict]:
        return self._reserves


def _kept_aave_rows(rng: random.Random, shared_bits: list[int], own_bits: list[int], shared: int,
                    accounts: int = 400) -> dict[str, list[int]]:
    """Random kept Aave rows of ``accounts`` accounts over six reserves: most share one of ``shared``
    configurations (of ``shared_bits`` bits), the others have their own (``own_bits``); e-modes;
    supplies and variable debts of 20 to 100 bits (balance words 0: a refresh computes them)."""
    common = [rng.getrandbits(rng.choice(shared_bits)) for _ in range(shared)]
    state: dict[str, list[int]] = {}
    for n in range(accounts):
        config = rng.choice(common) if rng.random() < 0.8 else rng.getrandbits(rng.choice(own_bits))
        row = [config, rng.choice([0, 0, 1, 3])]
        for place in sorted(rng.sample(range(6), rng.randrange(1, 4))):
            for kind in sorted(rng.sample((0, 1), rng.randrange(1, 3))):
                row += [3 * place + kind, 1 + rng.getrandbits(rng.choice([20, 64, 100])), 0]
        state[f"0x{n:040x}"] = row
    return state


def test_aave_refresh_equals_the_per_account_rows_of_the_lens_read():
    """The Aave refresh (balances at once, accounts rows once per configuration) against
    rows_from_lens, the per-account path a full read takes, on random kept rows: shared and
    distinct configurations, collateral flags off, e-modes, both rounding rules."""
    from analyzer.model import to_table
    from protocols.aave_v3.lens import refresh_accounts, rows_from_lens, with_balances
    from tests.test_aave_v3_refresh import held_both_ways

    rng = random.Random(23)
    for version in ("3.3", "3.6"):
        market = _AaveMarket(rng, version)
        state = _kept_aave_rows(rng, shared_bits=[12, 80, 160], own_bits=[8, 90, 200], shared=5)
        expected = rows_from_lens(market, list(state), with_balances(market, [list(r) for r in state.values()]))
        for previous in held_both_ways(state):
            refreshed = refresh_accounts(market, previous)
            assert refreshed.again == [] and refreshed.carried is not None and refreshed.carried.all()
            for name in ("positions", "accounts"):
                got = to_table(name, refreshed.tables[name])
                assert got.equals(to_table(name, expected[name])), name
        params = to_table("accounts", expected["accounts"])["params"]
        assert len(params) and (~params.str.contains('"collateral_off": []', regex=False)).any()
