"""Rescans that carry the earlier scan's rows instead of building every row again.

A market's scan ends by storing its rows as codes with its kept state, aligned (:func:`store`):
the kept accounts' names (fixed-width ASCII bytes) with an order that sorts them, their words
(:class:`analyzer.kept.KeptState`), and per positions row its account's place among the kept
(``owner``), its asset and reserve as places in short lists and its side; per accounts row its
account's place, its category and its ``params`` text. A rescan from that block (:func:`plan`)
loads them, finds the accounts the change events named by binary search, asks the plugin for
every other account's rows' ``amount`` and ``raw`` at its block
(:meth:`protocols.base.Reader.carry_accounts`: arrays in, arrays out, no text but ``raw``), and
reads in full only the named accounts and those the plugin cannot compute. :meth:`Carry.tables`
labels the carried rows from their codes (every column as it was, but ``amount`` and ``raw``, and
``params`` where the plugin gives them); :func:`store_rescan` stores them with the rows read for
the next rescan. Nothing here names a protocol.

The kept state also stays readable the way rescans read it before (``kept-from-*`` chunks by
reference, :func:`analyzer.scan_chunks.incremental_plan`), the path of plugins that do not carry
and of scans of an account list.
"""

from __future__ import annotations

import json
import logging
import mmap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer.atomic import atomic_write_bytes
from analyzer.kept import Carried, KeptRows, KeptState, fixed_width, fixed_width_texts
from analyzer.model import SIDES
from analyzer.textcolumns import labels, repeated, text

log = logging.getLogger(__name__)

FORMAT = 2
NAME_WIDTH = 42     # a checksummed address: "0x" and 40 hex digits
FILE_NAME = "carried.arrays"    # a market's carried rows and kept state, in its cache folder
CODES = ("owner", "asset", "reserve", "holder", "category")     # int64 columns as stored


@dataclass(frozen=True)
class CarriedRows:
    """A market's positions and accounts rows as codes.

    Attributes
    ----------
    owner, asset, reserve, debt : numpy.ndarray
        Per positions row: its account's place in the kept state (int64), its asset's and
        reserve's places in :attr:`CarriedTables.assets` and ``reserves`` (int64), whether its side
        is ``"debt"`` (bool).
    holder, category : numpy.ndarray
        Per accounts row: its account's place in the kept state, its category (int64).
    params : pyarrow.LargeStringArray
        Per accounts row: its ``params`` text.
    """

    owner: np.ndarray
    asset: np.ndarray
    reserve: np.ndarray
    debt: np.ndarray
    holder: np.ndarray
    category: np.ndarray
    params: pa.Array

    def taken(self, rows: np.ndarray, accounts: np.ndarray) -> CarriedRows:
        """The positions ``rows`` and the accounts rows ``accounts`` (places)."""
        return CarriedRows(self.owner[rows], self.asset[rows], self.reserve[rows], self.debt[rows],
                           self.holder[accounts], self.category[accounts], self.params.take(pa.array(accounts)))


@dataclass(frozen=True)
class CarriedTables:
    """A market's rows at one block as codes, with its kept state, aligned.

    Attributes
    ----------
    kept : KeptState
        Every kept account's words, its accounts as bytes (:attr:`KeptState.names`).
    order : numpy.ndarray
        int64: ``kept.names[order]`` ascending (binary search of accounts).
    protocol, market : str
        The market's rows' ``protocol`` and ``market``.
    assets, reserves : list of str
        The texts the positions' asset and reserve codes stand for.
    rows : CarriedRows
        The rows.
    refers : int
        How many earlier blocks the ``kept-from-*`` chunk at this block refers through
        (:data:`analyzer.scan_chunks.MAX_REFERENCES`).
    """

    kept: KeptState
    order: np.ndarray
    protocol: str
    market: str
    assets: list[str]
    reserves: list[str]
    rows: CarriedRows
    refers: int

    def places(self, accounts: Sequence[str]) -> np.ndarray:
        """Each account's place in ``kept`` (int64), -1 where it holds none."""
        listed = list(accounts)
        wanted = fixed_width(np.asarray(listed, dtype=object), NAME_WIDTH)
        if wanted is None:      # some name of another shape: none of those is kept
            shaped = [len(a) == NAME_WIDTH and a.isascii() for a in listed]
            out = np.full(len(listed), -1, dtype=np.int64)
            out[np.flatnonzero(shaped)] = self.places([a for a, ok in zip(listed, shaped, strict=True) if ok])
            return out
        return _find(self.kept.names, self.order, wanted)

    def frames(self, rows: CarriedRows, amount: np.ndarray, raw: pa.Array) -> dict[str, pd.DataFrame]:
        """``rows`` (codes of this table's) as the snapshot's frames, with positions' ``amount`` and ``raw``."""
        names = _name_texts(self.kept.names)
        n, m = len(rows.owner), len(rows.holder)
        positions = pd.DataFrame({
            "protocol": repeated(self.protocol, n), "market": repeated(self.market, n),
            "account": text(names.take(pa.array(rows.owner))),
            "asset": labels(pa.array(self.assets, type=pa.string()), rows.asset),
            "reserve": labels(pa.array(self.reserves, type=pa.string()), rows.reserve),
            "side": labels(SIDES, rows.debt.astype(np.int64)), "amount": amount, "raw": text(raw)}, copy=False)
        accounts = pd.DataFrame({
            "protocol": repeated(self.protocol, m), "market": repeated(self.market, m),
            "account": text(names.take(pa.array(rows.holder))), "category": rows.category,
            "params": text(rows.params)}, copy=False)
        return {"positions": positions, "accounts": accounts}


def _name_texts(names: np.ndarray) -> pa.Array:
    """Fixed-width bytes as Arrow strings, sharing their buffer."""
    names = np.ascontiguousarray(names)
    width = names.dtype.itemsize
    offsets = (np.arange(len(names) + 1, dtype=np.int64) * width)
    return pa.LargeStringArray.from_buffers(len(names), pa.py_buffer(offsets), pa.py_buffer(names.view(np.uint8)))


def stored(cache) -> bool:
    """Whether ``cache`` holds carried rows of this format (a file of another is written over)."""
    found = None if cache.root is None else read_arrays(cache.root / FILE_NAME)
    return found is not None and found[0].get("carried") == FORMAT


def load(cache) -> CarriedTables | None:
    """The carried rows stored in ``cache`` (a :class:`analyzer.scan_chunks.ChunkCache`), their
    arrays mapped from the file as they are; None when there are none, or they are damaged or of
    another format."""
    found = None if cache.root is None else read_arrays(cache.root / FILE_NAME)
    if found is None:
        return None
    head, arrays = found
    kept = KeptState.from_arrays({key.removeprefix("kept_"): a for key, a in arrays.items() if key.startswith("kept_")})
    texts: list[Any] = [head.get(key) for key in ("protocol", "market")]
    lists: list[Any] = [head.get(key) for key in ("assets", "reserves")]
    if head.get("carried") != FORMAT or kept is None or not all(isinstance(t, str) for t in texts) or \
            not all(isinstance(v, list) for v in lists) or not isinstance(head.get("refers"), int) or \
            any(arrays.get(key) is None or arrays[key].dtype != np.int64 for key in (*CODES, "order", "params_offsets")):
        return None
    owner, asset, reserve, holder, category, order, offsets = (arrays[key] for key in (*CODES, "order", "params_offsets"))
    debt, data = arrays.get("debt"), arrays.get("params_data")
    if debt is None or data is None or debt.dtype != np.uint8 or data.dtype != np.uint8 or \
            len({len(owner), len(asset), len(reserve), len(debt)}) != 1 or \
            len({len(holder), len(category), len(offsets) - 1}) != 1 or len(order) != len(kept) or \
            not _within(owner, len(kept)) or not _within(holder, len(kept)) or not _within(order, len(kept)) or \
            not _within(asset, len(lists[0])) or not _within(reserve, len(lists[1])) or int(debt.max(initial=0)) > 1 or \
            int(offsets[0]) != 0 or int(offsets[-1]) != len(data) or (np.diff(offsets) < 0).any():
        return None
    ranked = kept.names[order]
    if kept.names.dtype != np.dtype(f"S{NAME_WIDTH}") or (ranked[1:] <= ranked[:-1]).any():
        return None     # the order does not sort the names, each once: a lookup could miss one
    params = pa.LargeStringArray.from_buffers(len(holder), pa.py_buffer(offsets), pa.py_buffer(data))
    rows = CarriedRows(owner, asset, reserve, debt.astype(bool), holder, category, params)
    return CarriedTables(kept, order, texts[0], texts[1], lists[0], lists[1], rows, head["refers"])


def _within(codes: np.ndarray, count: int) -> bool:
    return not len(codes) or (int(codes.min()) >= 0 and int(codes.max()) < count)


def store(cache, carried: CarriedTables) -> None:
    """Store ``carried`` in ``cache`` as one file of arrays (no fsync: a damaged one is read as
    missing, and the rescan reads in full)."""
    names = fixed_width(carried.kept.names, NAME_WIDTH)
    if cache.root is None or names is None:
        return
    rows = carried.rows
    params = rows.params.cast(pa.large_string())
    params = pa.concat_arrays([params]) if params.offset else params     # its buffers from its first row
    offsets = np.frombuffer(params.buffers()[1], dtype=np.int64)[:len(params) + 1]
    first, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    data = params.buffers()[2]
    kept = {f"kept_{key}": value for key, value in carried.kept.arrays().items() if key != "names"}
    write_arrays(cache.root / FILE_NAME, {
        "carried": FORMAT, "refers": carried.refers, "protocol": carried.protocol, "market": carried.market,
        "assets": carried.assets, "reserves": carried.reserves, "name_width": NAME_WIDTH}, {
        "kept_names": names, **kept, **{key: np.asarray(getattr(rows, key), dtype=np.int64) for key in CODES},
        "order": np.asarray(carried.order, dtype=np.int64), "debt": rows.debt.astype(np.uint8),
        "params_offsets": offsets - first,
        "params_data": np.frombuffer(data, dtype=np.uint8)[first:end] if data is not None else np.zeros(0, np.uint8)})


MAGIC = b"contagion-arrays\n"


def write_arrays(path: Path, head: dict, arrays: dict[str, np.ndarray]) -> None:
    """``head`` (JSON) and ``arrays`` in one file, each array's bytes as they are (no copy into
    one buffer first), 8-byte aligned: read back mapped (:func:`read_arrays`)."""
    places: list[list] = []
    parts: list[Any] = []
    at = 0
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        places.append([key, array.dtype.str, list(array.shape), at])
        parts.append(array.reshape(-1).view(np.uint8).data)
        pad = -array.nbytes % 8
        parts.append(b"\0" * pad)
        at += array.nbytes + pad
    header = json.dumps({"head": head, "arrays": places}).encode()
    header += b" " * (-(len(MAGIC) + 8 + len(header)) % 8)
    atomic_write_bytes(path, [MAGIC, len(header).to_bytes(8, "little"), header, *parts], durable=False)


def read_arrays(path: Path) -> tuple[dict, dict[str, np.ndarray]] | None:
    """What :func:`write_arrays` wrote, the arrays mapped from the file (read-only); None when the
    file is missing or not whole."""
    try:
        with open(path, "rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    start = len(MAGIC) + 8
    if len(mapped) < start or mapped[:len(MAGIC)] != MAGIC:
        return None
    size = int.from_bytes(mapped[len(MAGIC):start], "little")
    try:
        found = json.loads(mapped[start:start + size])
        base = start + size
        arrays = {}
        for key, dtype, shape, at in found["arrays"]:
            kind = np.dtype(dtype)
            count = int(np.prod(shape))
            if base + at + count * kind.itemsize > len(mapped):
                return None
            arrays[key] = np.frombuffer(mapped, dtype=kind, count=count, offset=base + at).reshape(shape)
        return found["head"], arrays
    except (ValueError, TypeError, KeyError):
        return None


# --- a rescan's carried rows ----------------------------------------------------------------------

@dataclass(frozen=True)
class Carry:
    """One market's rescan from carried rows: the rows carried and the accounts read in full.

    Attributes
    ----------
    earlier : CarriedTables
        The earlier block's.
    untouched : numpy.ndarray
        bool per earlier kept account: no event named it (the accounts the plugin was given).
    state : KeptState
        Their kept words (as given to the plugin).
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
    state: KeptState
    given: np.ndarray
    answer: Carried
    carried: np.ndarray
    read: list[str]

    @cached_property
    def rows(self) -> tuple[CarriedRows, np.ndarray, pa.Array]:
        """The carried rows (codes of the earlier block's), and their ``amount`` and ``raw`` at this
        block; accounts rows with ``params`` at this block where the plugin gives them."""
        earlier = self.earlier.rows
        chosen = self.carried[earlier.owner[self.given]]      # of the rows given: those of accounts carried
        accounts = np.flatnonzero(self.carried[earlier.holder])
        rows = earlier.taken(self.given[chosen], accounts)
        if self.answer.params is not None:      # per untouched account, in order
            among = np.cumsum(self.untouched) - 1
            rows = replace(rows, params=_texts(self.answer.params).take(pa.array(among[earlier.holder[accounts]])))
        amount = np.asarray(self.answer.amount, dtype=np.float64)[chosen]
        return rows, amount, _texts(self.answer.raw).filter(pa.array(chosen))

    @cached_property
    def changed(self) -> np.ndarray:
        """bool per untouched account: its rows carried, its words changed (the plugin's ``state``)."""
        if self.answer.changed is None:
            return np.zeros(len(self.state), dtype=bool)
        return self.answer.changed & ~self.answer.again

    @cached_property
    def renewed(self) -> KeptState:
        """The new words of :attr:`changed` accounts, in order."""
        if self.answer.changed is None:
            return KeptState.empty()
        return self.answer.state.take(~self.answer.again[self.answer.changed])

    @cached_property
    def kept_now(self) -> tuple[KeptState, np.ndarray]:
        """The carried accounts' kept words at this block: those unchanged, then the changed ones'
        new words; and each earlier kept account's place among them (-1: not carried)."""
        same = ~self.answer.again & ~self.changed
        kept = KeptState.concat([self.state.take(same), self.renewed])
        place = np.full(len(self.state), -1, dtype=np.int64)
        place[same] = np.arange(int(same.sum()))
        place[self.changed] = int(same.sum()) + np.arange(int(self.changed.sum()))
        new_of = np.full(len(self.carried), -1, dtype=np.int64)
        new_of[self.untouched] = place
        return kept, new_of

    def tables(self) -> dict[str, pd.DataFrame]:
        """The carried rows at this block as the snapshot's frames: every column as it was, but
        positions' ``amount`` and ``raw`` (and accounts' ``params`` where the plugin gives them)."""
        return self.earlier.frames(*self.rows)


def _texts(values: Any) -> pa.Array:
    """A text column (Arrow strings, or a pandas Arrow-backed column) as one array of large strings."""
    return _whole(values).cast(pa.large_string())


def plan(reader, earlier: CarriedTables, touched: set[str]) -> Carry | None:
    """The rescan of one market from ``earlier`` (its carried rows at the block rescanned from),
    given the accounts the change events named since (``touched``): the plugin's answer for the
    others (:meth:`protocols.base.Reader.carry_accounts`), and the accounts to read in full;
    None where the plugin does not carry (:meth:`protocols.base.Reader.refresh_accounts`)."""
    kept, rows = earlier.kept, earlier.rows
    named = np.zeros(len(kept), dtype=bool)
    place = earlier.places(sorted(touched))
    named[place[place >= 0]] = True
    untouched = ~named
    given = np.flatnonzero(untouched[rows.owner])
    among = np.cumsum(untouched) - 1
    taken = kept.take(untouched)
    answer = reader.carry_accounts(taken, KeptRows(among[rows.owner[given]], rows.asset[given], rows.reserve[given],
                                                   rows.debt[given], earlier.assets, earlier.reserves))
    if answer is None:
        return None
    _check_answer(type(reader).__name__, answer, len(taken), len(given))
    carried = np.zeros(len(kept), dtype=bool)
    carried[np.flatnonzero(untouched)[~answer.again]] = True
    again = decoded(taken.names[answer.again])
    return Carry(earlier, untouched, taken, given, answer, carried, sorted(touched | set(again)))


def decoded(names: np.ndarray) -> list[str]:
    return names.astype("U").tolist() if names.dtype.kind == "S" else names.tolist()


def _check_answer(reader: str, answer: Carried, accounts: int, rows: int) -> None:
    """A plugin's answer in the shapes :class:`analyzer.kept.Carried` says (a plugin's fault as
    an error naming it, never a snapshot of misaligned rows)."""
    shapes = [len(answer.amount) == rows, len(answer.raw) == rows, np.shape(answer.again) == (accounts,),
              np.asarray(answer.again).dtype == bool,
              answer.changed is None or np.asarray(answer.changed).dtype == bool,
              answer.params is None or len(answer.params) == accounts,
              answer.changed is None or (np.shape(answer.changed) == (accounts,)
                                         and int(np.count_nonzero(answer.changed)) == len(answer.state))]
    if not all(shapes):
        raise ValueError(f"{reader}.carry_accounts answered in the wrong shapes ({accounts} accounts, {rows} rows)")


# --- storing a block's rows -----------------------------------------------------------------------

def store_rescan(cache, carry: Carry, part_tables: dict[str, pd.DataFrame], fresh: KeptState, refers: int) -> None:
    """Store a carrying rescan's rows at its block (``cache``): ``part_tables``, the market's
    rows (those read in full first, then the carried ones: :func:`analyzer.scan_chunks.scan_protocol`),
    with the kept state of this block: the carried accounts' words (the plugin's where they
    changed), then the words of the accounts read (``fresh``). Not stored where an account read
    has rows but no words (the next rescan reads in full)."""
    earlier = carry.earlier
    carried_now, new_of = carry.kept_now
    kept = KeptState.concat([carried_now, fresh])
    names = fixed_width(kept.names, NAME_WIDTH)
    if names is None:
        return
    fresh_place = {name: len(carried_now) + i for i, name in enumerate(decoded(fresh.names))}
    carried = carry.rows[0]
    positions, accounts = (part_tables[name].iloc[:len(part_tables[name]) - count]
                           for name, count in (("positions", len(carried.owner)), ("accounts", len(carried.holder))))
    owner, holder = ([fresh_place.get(a, -1) for a in frame["account"].tolist()] for frame in (positions, accounts))
    if min(owner, default=0) < 0 or min(holder, default=0) < 0:
        return
    assets, reserves = list(earlier.assets), list(earlier.reserves)
    read = CarriedRows(np.array(owner, dtype=np.int64), _codes(positions["asset"].tolist(), assets),
                       _codes(positions["reserve"].tolist(), reserves),
                       (positions["side"] == "debt").to_numpy(dtype=bool), np.array(holder, dtype=np.int64),
                       accounts["category"].to_numpy(dtype=np.int64), _texts(accounts["params"].array))
    rows = CarriedRows(np.concatenate([read.owner, new_of[carried.owner]]), np.concatenate([read.asset, carried.asset]),
                       np.concatenate([read.reserve, carried.reserve]), np.concatenate([read.debt, carried.debt]),
                       np.concatenate([read.holder, new_of[carried.holder]]),
                       np.concatenate([read.category, carried.category]),
                       pa.concat_arrays([read.params, carried.params.cast(pa.large_string())]))
    store(cache, CarriedTables(kept, _order(names), earlier.protocol, earlier.market, assets, reserves, rows, refers))


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
    """Store a market's rows (``part_tables``) with its kept state at its block (``cache``),
    found by name: after a full scan, or a rescan that did not carry. Not stored where a row's
    account has no kept words, an account is kept twice, or the rows are not of one market."""
    names = fixed_width(kept.names, NAME_WIDTH)
    if names is None:
        return
    order = _order(names)
    ranked = names[order]
    if len(ranked) > 1 and (ranked[1:] == ranked[:-1]).any():
        return
    positions, accounts = part_tables["positions"], part_tables["accounts"]
    first = positions if len(positions) else accounts
    protocol, market = (str(first[col].iloc[0]) if len(first) else "" for col in ("protocol", "market"))
    side = _whole(positions["side"].array)
    debt = pc.equal(side, "debt").to_numpy(zero_copy_only=False)
    if not all(_all_equal(frame[col], value) for frame in (positions, accounts)
               for col, value in (("protocol", protocol), ("market", market))) or \
            not (debt | pc.equal(side, "collateral").to_numpy(zero_copy_only=False)).all():
        return      # rows of more than one market, or a side neither collateral nor debt
    places = [_places(names, order, frame["account"]) for frame in (positions, accounts)]
    if places[0] is None or places[1] is None:
        return
    asset, reserve = (_whole(positions[col].array).dictionary_encode() for col in ("asset", "reserve"))
    rows = CarriedRows(places[0], _indices(asset), _indices(reserve), debt, places[1],
                       accounts["category"].to_numpy(dtype=np.int64), _texts(accounts["params"].array))
    store(cache, CarriedTables(kept, order, protocol, market, asset.dictionary.to_pylist(),
                               reserve.dictionary.to_pylist(), rows, refers))


def _all_equal(column: pd.Series, value: str) -> bool:
    return not len(column) or bool(pc.all(pc.equal(_whole(column.array), value)).as_py())


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _places(names: np.ndarray, order: np.ndarray, accounts: pd.Series) -> np.ndarray | None:
    """Each of ``accounts``' place in ``names`` (sorted by ``order``); None where one is not there."""
    wanted = fixed_width_texts(_whole(accounts.array), NAME_WIDTH)
    found = None if wanted is None else _find(names, order, wanted)
    return None if found is None or (found < 0).any() else found


def _find(names: np.ndarray, order: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Each of ``wanted``'s place in ``names`` (bytes, sorted by ``order``), -1 where it is not there."""
    if not len(names) or not len(wanted):
        return np.full(len(wanted), -1, dtype=np.int64)
    at = order[np.minimum(np.searchsorted(names, wanted, sorter=order), len(names) - 1)]
    return np.where(names[at] == wanted, at, -1)


def _whole(values: Any) -> pa.Array:
    """A frame's column as one Arrow array."""
    array = pa.array(values)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
