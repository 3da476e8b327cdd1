"""Rescans that carry the earlier scan's tables instead of building every row again.

A market's scan ends by storing its tables with its kept state, aligned (:func:`store`): the
kept accounts' names (fixed-width ASCII bytes) with an order that sorts them, their words
(:class:`analyzer.kept.KeptState`), and the market's positions and accounts rows as Arrow, each
row with its account's place among the kept (``owner``). A rescan from that block
(:func:`plan`) loads them, finds the accounts the change events named by binary search, asks
the plugin for every other account's rows' ``amount`` and ``raw`` at its block
(:meth:`protocols.base.Reader.carry_accounts`: arrays in, arrays out, no text but ``raw``), and
reads in full only the named accounts and those the plugin cannot compute. :meth:`Carry.tables`
gives the carried rows, every other column as it was; :func:`store_after` stores them with the
rows read for the next rescan. Nothing here names a protocol.

The stored state also stays readable the way rescans read it before (``kept-from-*`` chunks by
reference, :func:`analyzer.scan_chunks.incremental_plan`), the path of plugins that do not carry
and of scans of an account list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from analyzer.atomic import atomic_write_bytes
from analyzer.kept import Carried, KeptRows, KeptState, fixed_width
from analyzer.model import TABLES

log = logging.getLogger(__name__)

FORMAT = 1
NAME_WIDTH = 42     # a checksummed address: "0x" and 40 hex digits
KEPT_NAME = "carried-kept"      # the ChunkCache entry of the kept state, written last: the tables are whole
TABLE_FILE = "carried-{}.arrow"
CARRIED = ("positions", "accounts")


@dataclass(frozen=True)
class CarriedTables:
    """A market's tables at one block with its kept state, aligned.

    Attributes
    ----------
    kept : KeptState
        Every kept account's words, its accounts as bytes (:attr:`KeptState.names`).
    order : numpy.ndarray
        int64: ``kept.names[order]`` ascending (binary search of accounts).
    tables : dict
        ``positions`` and ``accounts`` as Arrow tables: the snapshot's columns (text as large
        strings), then ``owner`` (int64: the row's account's place in ``kept``); positions also
        ``asset_code`` and ``reserve_code`` (int64: places in ``assets``, ``reserves``).
    assets, reserves : list of str
        The texts the positions' codes stand for.
    refers : int
        How many earlier blocks the ``kept-from-*`` chunk at this block refers through
        (:data:`analyzer.scan_chunks.MAX_REFERENCES`).
    """

    kept: KeptState
    order: np.ndarray
    tables: dict[str, pa.Table]
    assets: list[str]
    reserves: list[str]
    refers: int

    def places(self, accounts: Sequence[str]) -> np.ndarray:
        """Each account's place in ``kept`` (int64), -1 where it holds none."""
        wanted = fixed_width(np.asarray(list(accounts), dtype=object), NAME_WIDTH)
        if wanted is None:      # a name of another shape: looked up one by one
            return np.array([self.places([a])[0] if len(a) == NAME_WIDTH and a.isascii() else -1 for a in accounts],
                            dtype=np.int64)
        names = self.kept.names
        if not len(names) or not len(wanted):
            return np.full(len(wanted), -1, dtype=np.int64)
        at = self.order[np.minimum(np.searchsorted(names, wanted, sorter=self.order), len(names) - 1)]
        return np.where(names[at] == wanted, at, -1)


def stored(cache) -> bool:
    """Whether ``cache`` holds carried tables (whole: their kept state is written last)."""
    return cache.root is not None and (cache.root / f"{KEPT_NAME}{cache.SUFFIX}").is_file()


def load(cache) -> CarriedTables | None:
    """The carried tables stored in ``cache`` (a :class:`analyzer.scan_chunks.ChunkCache`); None
    when there are none, or they are damaged or of another format."""
    if cache.root is None:
        return None
    head = cache.get(KEPT_NAME)
    if not isinstance(head, dict) or head.get("carried") != FORMAT or not isinstance(head.get("kept"), dict):
        return None
    kept = KeptState.from_named_chunk(head["kept"])
    order = head.get("order")
    assets, reserves = head.get("assets"), head.get("reserves")
    if kept is None or not isinstance(order, bytes) or len(order) != 8 * len(kept) or \
            not isinstance(head.get("refers"), int) or not isinstance(assets, list) or not isinstance(reserves, list):
        return None
    tables = {}
    for name in CARRIED:
        table = _read_table(cache.root / TABLE_FILE.format(name))
        if table is None or table.num_rows != head.get(name) or table.schema != schema(name):
            return None
        bounds = [("owner", len(kept))] + ([("asset_code", len(assets)), ("reserve_code", len(reserves))]
                                           if name == "positions" else [])
        for col, count in bounds:
            codes = table.column(col).to_numpy()
            if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= count):
                return None
        tables[name] = table
    return CarriedTables(kept, np.frombuffer(order, dtype=np.int64), tables, assets, reserves, head["refers"])


def _read_table(path: Path) -> pa.Table | None:
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowException):
        return None


def store(cache, carried: CarriedTables) -> None:
    """Store ``carried`` in ``cache``: the tables first, the kept state last (its presence says
    the tables are whole). No fsync: a damaged file is read as missing (a full rescan)."""
    if cache.root is None:
        return
    chunk = carried.kept.to_named_chunk(NAME_WIDTH)
    if chunk is None:
        return
    for name in CARRIED:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, carried.tables[name].schema) as writer:
            writer.write_table(carried.tables[name])
        atomic_write_bytes(cache.root / TABLE_FILE.format(name), sink.getvalue().to_pybytes(), durable=False)
    cache.put(KEPT_NAME, {"carried": FORMAT, "kept": chunk, "order": np.asarray(carried.order, dtype=np.int64).tobytes(),
                          "refers": carried.refers, "assets": carried.assets, "reserves": carried.reserves,
                          **{name: carried.tables[name].num_rows for name in CARRIED}})


CODES = {"positions": ("owner", "asset_code", "reserve_code"), "accounts": ("owner",)}


def schema(name: str) -> pa.Schema:
    """The stored columns of table ``name``: the snapshot's (text as large strings), then its codes."""
    arrow = {"string": pa.large_string(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}
    return pa.schema([*((col, arrow[dtype]) for col, dtype in TABLES[name].items()),
                      *((col, pa.int64()) for col in CODES[name])])


def arrow_table(name: str, frame: pd.DataFrame, *codes: np.ndarray) -> pa.Table:
    """A snapshot table's frame with each row's codes (:data:`CODES`), in the stored columns."""
    columns = [_whole(frame[col].array) if TABLES[name][col] == "string" else pa.array(frame[col].to_numpy())
               for col in TABLES[name]]
    return pa.Table.from_arrays([*columns, *(pa.array(c, type=pa.int64()) for c in codes)],
                                names=[*TABLES[name], *CODES[name]]).cast(schema(name))


def frame_of(table: pa.Table) -> pd.DataFrame:
    """A stored table's rows as the snapshot's frame (its text columns Arrow-backed, as read)."""
    name = "positions" if "side" in table.column_names else "accounts"
    out: dict[str, Any] = {}
    for col, dtype in TABLES[name].items():
        column = table.column(col)
        out[col] = pd.arrays.ArrowStringArray(column) if dtype == "string" else column.to_numpy()
    return pd.DataFrame(out, copy=False)


def names_of(column: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """A text column of account names as ``NAME_WIDTH`` bytes each (zero-copy where every name
    has that width); None where one has not."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = [np.zeros(0, dtype=f"S{NAME_WIDTH}")]
    for chunk in chunks:
        if not len(chunk):
            continue
        if chunk.null_count:
            return None
        large = pa.types.is_large_string(chunk.type)
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if large else np.int32)[
            chunk.offset:chunk.offset + len(chunk) + 1]
        if not (np.diff(offsets) == NAME_WIDTH).all():
            return None
        out.append(np.frombuffer(chunk.buffers()[2], dtype=f"S{NAME_WIDTH}", count=len(chunk), offset=int(offsets[0])))
    return np.concatenate(out)


# --- a rescan's carried rows ----------------------------------------------------------------------

@dataclass(frozen=True)
class Carry:
    """One market's rescan from carried tables: the rows carried and the accounts read in full.

    Attributes
    ----------
    earlier : CarriedTables
        The earlier block's.
    untouched : numpy.ndarray
        bool per earlier kept account: no event named it (the accounts the plugin was given).
    given : numpy.ndarray
        int64, ascending: the earlier positions rows of the untouched accounts (the rows the
        plugin was given, in this order).
    answer : Carried
        The plugin's, over the untouched accounts and their rows.
    carried : numpy.ndarray
        bool per earlier kept account: its rows carried to this block (untouched, and computed).
    read : list of str
        The accounts read in full at this block: those named, and those the plugin could not
        compute, sorted.
    """

    earlier: CarriedTables
    untouched: np.ndarray
    given: np.ndarray
    answer: Carried
    carried: np.ndarray
    read: list[str]

    def tables(self) -> dict[str, pd.DataFrame]:
        """:attr:`arrow_tables` as the snapshot's frames."""
        return {name: frame_of(table) for name, table in self.arrow_tables.items()}

    @cached_property
    def arrow_tables(self) -> dict[str, pa.Table]:
        """The carried rows at this block, as stored (their codes still the earlier block's): every
        column as it was, but positions' ``amount`` and ``raw``, and accounts' ``params`` where
        the plugin gives them."""
        positions = self.earlier.tables["positions"]
        owner = positions.column("owner").to_numpy()
        chosen = self.carried[owner[self.given]]      # of the rows given: those of accounts carried
        positions = positions.take(pa.array(self.given[chosen]))
        amount = pa.array(np.asarray(self.answer.amount, dtype=np.float64)[chosen])
        raw = _texts(self.answer.raw).filter(pa.array(chosen))
        positions = positions.set_column(positions.schema.get_field_index("amount"), "amount", amount)
        positions = positions.set_column(positions.schema.get_field_index("raw"), "raw", raw)
        accounts = self.earlier.tables["accounts"]
        owner = accounts.column("owner").to_numpy()
        keep = np.flatnonzero(self.carried[owner])
        accounts = accounts.take(pa.array(keep))
        if self.answer.params is not None:      # per untouched account, in order
            among = np.cumsum(self.untouched) - 1
            params = _texts(self.answer.params).take(pa.array(among[owner[keep]]))
            accounts = accounts.set_column(accounts.schema.get_field_index("params"), "params", params)
        return {"positions": positions, "accounts": accounts}


def _whole(values: Any) -> pa.Array:
    """A frame's column (or Arrow strings) as one Arrow array."""
    array = pa.array(values)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _texts(values: Any) -> pa.Array:
    """A plugin's text column (Arrow strings, or a pandas Arrow-backed column) as large strings."""
    return _whole(values).cast(pa.large_string())


def plan(reader, earlier: CarriedTables, touched: set[str]) -> Carry | None:
    """The rescan of one market from ``earlier`` (its carried tables at the block rescanned
    from), given the accounts the change events named since (``touched``): the plugin's answer
    for the others (:meth:`protocols.base.Reader.carry_accounts`), and the accounts to read in
    full; None where the plugin does not carry (:meth:`protocols.base.Reader.refresh_accounts`)."""
    kept = earlier.kept
    named = np.zeros(len(kept), dtype=bool)
    place = earlier.places(sorted(touched))
    named[place[place >= 0]] = True
    untouched = ~named
    positions = earlier.tables["positions"]
    owner = positions.column("owner").to_numpy()
    given = np.flatnonzero(untouched[owner])
    among = np.cumsum(untouched) - 1
    rows = KeptRows(among[owner[given]], positions.column("asset_code").to_numpy()[given],
                    positions.column("reserve_code").to_numpy()[given],
                    positions.column("side").to_numpy(zero_copy_only=False)[given] == "debt",
                    earlier.assets, earlier.reserves)
    taken = kept.take(untouched)
    answer = reader.carry_accounts(taken, rows)
    if answer is None:
        return None
    _check_answer(answer, len(taken), len(rows))
    carried = np.zeros(len(kept), dtype=bool)
    carried[np.flatnonzero(untouched)[~answer.again]] = True
    again = decoded(taken.names[answer.again])
    return Carry(earlier, untouched, given, answer, carried, sorted(touched | set(again)))


def decoded(names: np.ndarray) -> list[str]:
    return names.astype("U").tolist() if names.dtype.kind == "S" else names.tolist()


def _check_answer(answer: Carried, accounts: int, rows: int) -> None:
    """A plugin's answer in the shapes :class:`analyzer.kept.Carried` says (a plugin's fault as
    an error naming it, never a snapshot of misaligned rows)."""
    shapes = [len(answer.amount) == rows, len(answer.raw) == rows, np.shape(answer.again) == (accounts,),
              answer.params is None or len(answer.params) == accounts,
              answer.changed is None or (np.shape(answer.changed) == (accounts,)
                                         and int(np.count_nonzero(answer.changed)) == len(answer.state))]
    if not all(shapes):
        raise ValueError(f"carry_accounts answered in the wrong shapes ({accounts} accounts, {rows} rows)")


# --- storing a block's tables ---------------------------------------------------------------------

def store_rescan(cache, carry: Carry, part_tables: dict[str, pd.DataFrame], fresh: KeptState, refers: int) -> None:
    """Store a carrying rescan's tables at its block (``cache``): ``part_tables``, the market's
    rows (those read in full first, then the carried ones: :func:`analyzer.scan_chunks.scan_protocol`),
    with the kept state of this block: the carried accounts' words (the plugin's where they
    changed), then the words of the accounts read (``fresh``). Not stored where an account read
    has rows but no words (the next rescan reads in full)."""
    earlier, answer = carry.earlier, carry.answer
    changed = np.zeros(len(carry.carried), dtype=bool)
    if answer.changed is not None:
        changed[np.flatnonzero(carry.untouched)[answer.changed]] = True
    same = carry.carried & ~changed
    moved = carry.carried & changed
    # the plugin's new words, of the changed accounts it computed (not those it reads again)
    renewed = answer.state.take(~answer.again[answer.changed]) if answer.changed is not None else KeptState.empty()
    kept = KeptState.concat([earlier.kept.take(same), renewed, fresh])
    names = fixed_width(kept.names, NAME_WIDTH)
    if names is None:
        return
    new_of = np.full(len(carry.carried), -1, dtype=np.int64)
    new_of[same] = np.arange(int(same.sum()))
    new_of[moved] = int(same.sum()) + np.arange(int(moved.sum()))
    fresh_place = {name: int(same.sum() + moved.sum()) + i for i, name in enumerate(decoded(fresh.names))}
    carried = carry.arrow_tables
    tables, assets, reserves = {}, list(earlier.assets), list(earlier.reserves)
    for name in CARRIED:
        frame = part_tables[name]
        read = frame.iloc[:len(frame) - carried[name].num_rows]
        owner = np.array([fresh_place.get(a, -1) for a in read["account"].tolist()], dtype=np.int64)
        if (owner < 0).any():
            return
        codes = [owner]
        if name == "positions":
            codes += [_codes(read["asset"].tolist(), assets), _codes(read["reserve"].tolist(), reserves)]
        old = carried[name].set_column(carried[name].schema.get_field_index("owner"), "owner",
                                       pa.array(new_of[carried[name].column("owner").to_numpy()]))
        tables[name] = pa.concat_tables([arrow_table(name, read, *codes), old])
    store(cache, CarriedTables(kept, _order(names), tables, assets, reserves, refers))


def _codes(values: list[str], texts: list[str]) -> np.ndarray:
    """Each value's place in ``texts``, a value not there added at the end."""
    place = {text: i for i, text in enumerate(texts)}
    out = []
    for value in values:
        if value not in place:
            place[value] = len(texts)
            texts.append(value)
        out.append(place[value])
    return np.array(out, dtype=np.int64)


def _order(names: np.ndarray) -> np.ndarray:
    ascending = bool((names[1:] > names[:-1]).all()) if len(names) > 1 else True
    return np.arange(len(names), dtype=np.int64) if ascending else np.argsort(names, kind="stable").astype(np.int64)


def store_scan(cache, part_tables: dict[str, pd.DataFrame], kept: KeptState, refers: int) -> None:
    """Store a market's tables (``part_tables``) with its kept state at its block (``cache``),
    found by name: after a full scan, or a rescan that did not carry. Not stored where a row's
    account has no kept words, or an account is kept twice."""
    names = fixed_width(kept.names, NAME_WIDTH)
    if names is None:
        return
    order = _order(names)
    ranked = names[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        return
    tables, lists = {}, {}
    for name in CARRIED:
        frame = part_tables[name]
        rows = names_of(_whole(frame["account"].array))
        if rows is None:
            return
        at = order[np.minimum(np.searchsorted(names, rows, sorter=order), max(len(names) - 1, 0))] \
            if len(names) else np.zeros(len(rows), dtype=np.int64)
        if len(rows) and (not len(names) or (names[at] != rows).any()):
            return
        codes = [at]
        if name == "positions":
            for col in ("asset", "reserve"):
                encoded = _whole(frame[col].array).dictionary_encode()
                lists[col] = encoded.dictionary.to_pylist()
                codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        tables[name] = arrow_table(name, frame, *codes)
    store(cache, CarriedTables(kept, order, tables, lists["asset"], lists["reserve"], refers))
