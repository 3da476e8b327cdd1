"""Rescans that carry the earlier scan's tables (analyzer.carry): the carried tables stored after
a scan hold exactly its rows and kept words, aligned; and a rescan that carries them, through a
plugin answer computed independently (carry_by_refresh: the plugin's refresh_accounts frames
looked up row by row in Python), equals a full scan at its block, and so does a rescan of it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analyzer import carry
from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.kept import Carried, KeptRows, KeptState
from analyzer.multicall import Call
from analyzer.scan import ScanStats, scan
from analyzer.scan_chunks import ChunkCache, _kept_pieces_state
from protocols import plugins
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal
from tests.test_scan_incremental import send


def carry_by_refresh(reader, kept: KeptState, rows: KeptRows) -> Carried:
    """A plugin's answer made of its refresh_accounts frames, each row looked up by its texts."""
    refreshed = reader.refresh_accounts(kept)
    names = kept.accounts.tolist()
    found = {}
    positions = refreshed.tables.get("positions", pd.DataFrame(columns=["account"]))
    for row in positions.itertuples(index=False):
        found[(row.account, row.asset, row.reserve, row.side)] = (row.amount, row.raw)
    again = set(refreshed.again)
    amount, raw = [], []
    for owner, asset, reserve, debt in zip(rows.owner.tolist(), rows.asset.tolist(), rows.reserve.tolist(),
                                           rows.debt.tolist(), strict=True):
        key = (names[owner], rows.assets[asset], rows.reserves[reserve], "debt" if debt else "collateral")
        value = found.pop(key, None)
        if value is None:
            again.add(names[owner])
            value = (0.0, "0")
        amount.append(value[0])
        raw.append(value[1])
    again |= {key[0] for key in found}      # a row the refresh gives that the earlier table had not
    accounts = refreshed.tables.get("accounts", pd.DataFrame(columns=["account", "params"]))
    params = dict(zip(accounts["account"], accounts["params"], strict=True))
    changed = None
    state = KeptState.empty()
    if refreshed.carried is not None or len(refreshed.state):
        words = {a: w for a, w in zip(refreshed.state.accounts.tolist(), _words(refreshed.state), strict=True)}
        changed = np.array([n in words for n in names], dtype=bool)
        state = KeptState.from_state({n: words[n] for n in names if n in words})
    return Carried(np.array(amount, dtype=np.float64), pa.array(raw, type=pa.string()),
                   np.array([n in again for n in names], dtype=bool), changed, state,
                   pa.array([params.get(n, "") for n in names], type=pa.string()))


def by_account(state: KeptState) -> dict[str, list[int]]:
    return dict(zip(state.accounts.tolist(), _words(state), strict=True))


def _words(state: KeptState) -> list[list[int]]:
    words = state.words.tolist()
    return [words[s:s + n] for s, n in zip(state.starts.tolist(), state.lengths.tolist(), strict=True)]


@pytest.fixture
def carrying(monkeypatch):
    """Every lender's reader carries through carry_by_refresh."""
    for name in ("aave-v3", "compound-v2", "comet"):
        monkeypatch.setattr(plugins()[name].reader, "carry_accounts", carry_by_refresh)


def stored_rows_equal(cache: ChunkCache, snapshot, protocol: str, market: str) -> None:
    """The rows stored at a scan's block, labelled from their codes (each row's account from its
    owner's place in the kept state stored with them), are the scan's rows of the market, but
    for positions' amount and raw (not stored: a rescan computes them)."""
    carried = carry.load(cache)
    assert carried is not None
    count = len(carried.rows.owner)
    frames = carried.frames(carried.rows, np.zeros(count), pa.array(["0"] * count))
    for name, frame in frames.items():
        mine = snapshot.table(name)
        mine = mine[(mine["protocol"] == protocol) & (mine["market"] == market)]
        key = [c for c in mine.columns if c not in ("amount", "raw")]
        pd.testing.assert_frame_equal(frame[key].sort_values(key).reset_index(drop=True).astype(object),
                                      mine[key].sort_values(key).reset_index(drop=True).astype(object))
    names = carried.kept.accounts.tolist()
    assert sorted(names) == [names[i] for i in carried.order.tolist()]


def stored_tables_hold(tmp_path, chain_id: int, block: int, snapshot) -> None:
    """Every market's carried tables at ``block`` hold the snapshot's rows (stored_rows_equal)."""
    markets = {(p, m) for p, m in zip(snapshot.positions["protocol"], snapshot.positions["market"], strict=True)}
    folders = list((tmp_path / str(chain_id) / str(block)).glob("*/*"))
    assert len(folders) == len(markets) == 4
    for folder in folders:
        carried = carry.load(ChunkCache(folder))
        assert carried is not None, folder
        assert carried.protocol == folder.parent.name
        stored_rows_equal(ChunkCache(folder), snapshot, carried.protocol, carried.market)


@requires_anvil
@pytest.mark.parametrize("references", [8, 1])
def test_a_carrying_rescan_and_its_rescan_equal_full_scans(chain_checkpoint, tmp_path, carrying, monkeypatch,
                                                           references):
    """(references: rescans in a row that keep their kept-from-* chunk by reference; at 1, the
    second rescan writes it in full.)"""
    from analyzer import scan as scan_module
    from analyzer import scan_chunks

    for module in (scan_module, scan_chunks):
        monkeypatch.setattr(module, "MAX_REFERENCES", references)
    devnet = chain_checkpoint
    w3, lenders = devnet.w3, [plugins()[n] for n in ("aave-v3", "compound-v2", "comet")]
    compound, comet = market_of(devnet.book, "compound-v2"), market_of(devnet.book, "comet", "cUSDCv3")["comet"]
    c_usdc = compound["markets"]["USDC"]["cToken"]
    since = w3.eth.block_number
    first = scan(devnet.url, lenders, book=devnet.book, block=since, cache_dir=tmp_path)
    stored_tables_hold(tmp_path, w3.eth.chain_id, since, first)
    silent = [account_address(x) for x in ("comet-8", "comet-7", "pop-0")]
    for days in (30, 1):
        # a borrow accrues Compound's USDC market; Comet base transfers no event names the borrowers of
        send(w3, account_address("pop-5"), Call(c_usdc, "borrow(uint256)(uint256)", (10**6,)))
        send(w3, silent[0], Call(comet, "transfer(address,uint256)(bool)", (silent[1], 1000 * 10**6)))
        send(w3, account_address("comet-lender-1"), Call(comet, "transfer(address,uint256)(bool)", (silent[2], 10**8)))
        w3.provider.make_request("evm_increaseTime", [days * 86400])
        w3.provider.make_request("anvil_mine", ["0x3"])
        block = w3.eth.block_number
        stats = ScanStats()
        rescan = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, since_block=since,
                      stats=stats)
        tables_equal(rescan, scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=None, use_lens=False))
        assert stats.accounts_carried == stats.accounts_refreshed and sum(stats.accounts_carried.values()) > 50
        stored_tables_hold(tmp_path, w3.eth.chain_id, block, rescan)
        # the state a rescan that does not carry reads at this block (kept-from-* chunks by
        # reference) is the carried one, word for word
        for folder in (tmp_path / str(w3.eth.chain_id) / str(block)).glob("*/*"):
            kept, _ = _kept_pieces_state(ChunkCache(folder))
            assert by_account(kept) == by_account(carry.load(ChunkCache(folder)).kept)
        since = block


def test_stored_arrays_read_back_and_damage_reads_as_missing(tmp_path):
    names = np.array(sorted(f"0x{i:040x}" for i in range(5)), dtype=object)
    kept = KeptState.from_lists(names.tolist(), [2, 1, 0, 3, 1], [1, 2**70, -3, 4, 5, -(2**90), 7])
    rows = carry.CarriedRows(np.array([0, 1, 3, 4]), np.array([0, 1, 0, 0]), np.array([0, 0, 0, 0]),
                             np.array([False, True, False, True]), np.array([0, 4]), np.array([1, 0]),
                             pa.array(['{"a": 1}', "{}"], type=pa.large_string()))
    carried = carry.CarriedTables(kept, np.arange(5), "p", "m", ["A", "B"], [""], rows, 3)
    cache = ChunkCache(tmp_path)
    carry.store(cache, carried)
    back = carry.load(cache)
    assert back is not None and carry.stored(cache)
    assert by_account(back.kept) == by_account(kept) and back.refers == 3 and back.assets == ["A", "B"]
    assert back.rows.owner.tolist() == [0, 1, 3, 4] and back.rows.debt.tolist() == [False, True, False, True]
    assert back.rows.params.to_pylist() == ['{"a": 1}', "{}"]
    assert back.places([names[3], "0x" + "f" * 40, "nope"]).tolist() == [3, -1, -1]
    frames = back.frames(back.rows, np.arange(4.0), pa.array(["0", "1", "2", "3"]))
    assert frames["positions"]["account"].tolist() == [names[i] for i in (0, 1, 3, 4)]
    assert frames["positions"]["side"].tolist() == ["collateral", "debt", "collateral", "debt"]
    assert frames["accounts"]["params"].tolist() == ['{"a": 1}', "{}"]
    path = tmp_path / carry.FILE_NAME
    whole = path.read_bytes()
    for cut in (len(whole) - 9, len(whole) // 2, 20):      # cut short: missing, never a misread
        path.write_bytes(whole[:cut])
        assert carry.load(cache) is None and not carry.stored(cache)
    # an order that does not sort the names: a lookup could miss a touched account, so none is used
    carry.store(cache, carry.CarriedTables(kept, np.array([1, 0, 2, 3, 4]), "p", "m", ["A", "B"], [""], rows, 3))
    assert carry.load(cache) is None


def test_an_answer_of_the_wrong_shape_is_refused_naming_the_reader():
    kept = KeptState.from_lists([f"0x{i:040x}" for i in range(3)], [1, 1, 1], [5, 6, 7])
    rows = carry.CarriedRows(np.array([0, 2]), np.array([0, 0]), np.array([0, 0]), np.array([False, True]),
                             np.array([0]), np.array([0]), pa.array(["{}"], type=pa.large_string()))
    earlier = carry.CarriedTables(KeptState.from_arrays(dict(kept.arrays(), names=carry.fixed_width(
        kept.names, carry.NAME_WIDTH))), np.arange(3), "p", "m", ["A"], [""], rows, 0)

    class Short:
        def carry_accounts(self, kept, rows):     # one amount for two rows
            return Carried(np.zeros(1), pa.array(["1"]), np.zeros(len(kept), dtype=bool))

    class Counted:
        def carry_accounts(self, kept, rows):     # again as counts, not booleans
            return Carried(np.zeros(len(rows)), pa.array(["1"] * len(rows)), np.zeros(len(kept), dtype=np.int64))

    for reader in (Short(), Counted()):
        with pytest.raises(ValueError, match=f"{type(reader).__name__}.carry_accounts answered in the wrong shapes"):
            carry.plan(reader, earlier, set())
    assert carry.plan(type("Declines", (), {"carry_accounts": lambda self, k, r: None})(), earlier, set()) is None
