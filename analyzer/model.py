"""The snapshot: the one hand-off point between the chain and everything offline.

A snapshot is a folder of Parquet tables plus ``meta.json`` (see DESIGN.md). Amounts are
float64 in token units for analysis, with the exact on-chain integer kept beside them as a
decimal string (``raw``), so a reader can be checked to the wei. Addresses are checksummed.

Tables and units
----------------
assets     address, symbol, decimals, price_usd (USD per whole token), receipt_of
           ("<protocol>:<market>:<underlying address>" for aTokens, cTokens, LP tokens: the market
           whose losses write it down; "<protocol>:<underlying address>" when the protocol's
           markets that list the underlying share them; "" otherwise, see :func:`receipt_claim`),
           iv (implied volatility as a fraction, NaN when not an option underlying)
markets    protocol, market (the protocol's market contract: Aave pool, comptroller, comet, option
           market), asset, reserve (the market's own contract for the asset where one market may
           list an asset more than once: Compound V2's cToken, e.g. the legacy cWBTC beside cWBTC2;
           "" where the asset alone names it), oracle_price_usd (the protocol's own oracle), ltv, liquidation_threshold
           (fractions), liquidation_bonus (fraction: 0.05 = 5%), close_factor, protocol_fee
           (fraction of the bonus or of seized collateral, as the protocol defines it),
           supply_cap, borrow_cap (token units, 0 = none), category (Aave e-mode category),
           isolated, borrowable, collateral_enabled, params (JSON: protocol-specific extras)
accounts   protocol, market, account, category (account mode: Aave e-mode id, else 0), params (JSON)
positions  protocol, market, account, asset, reserve (as in markets), side ("collateral" | "debt"),
           amount (token units of ``asset``), raw (exact integer as the protocol stores it, decimal string)
options    protocol, market, account, position_id, kind ("call" | "put"), strike (USD), expiry
           (unix s), size (contracts), side ("long" | "short"), collateral_asset, collateral
           (units of collateral_asset), raw_size, raw_collateral
hedgers    protocol, market, asset, net_delta, net_gamma, net_vega, hedge_position (base units)
venues     protocol, venue (pool address), asset, quote_asset, model ("uniswap_v3",
           "constant_product", "sqrt_law", "linear"), params (JSON: the model's parameters)
option_instruments
           off-chain option open interest, one row per listed instrument (see analyzer/options):
           venue, instrument (the venue's name), currency, asset (the snapshot asset it is on),
           kind, strike (USD), expiry (unix s), as_of (unix s of the venue's data),
           open_interest (underlying units), mark_iv (fraction), underlying_price (USD, the
           forward the venue marks at), dealer_position (underlying units, + = dealers long),
           positioning (where dealer_position came from: "convention:<name>" or "file:<name>")
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analyzer.atomic import atomic_directory, atomic_write_text
from analyzer.errors import ContagionError
from analyzer.rowkeys import has_duplicate_keys
from analyzer.textcolumns import all_decimal, repeated
from analyzer.textcolumns import text as text_column

SCHEMA_VERSION = 1

# column -> pandas dtype; "string" columns hold text (raw integers included), never floats
TABLES: dict[str, dict[str, str]] = {
    "assets": {"address": "string", "symbol": "string", "decimals": "int64", "price_usd": "float64",
               "receipt_of": "string", "iv": "float64"},
    "markets": {"protocol": "string", "market": "string", "asset": "string", "reserve": "string",
                "oracle_price_usd": "float64",
                "ltv": "float64", "liquidation_threshold": "float64", "liquidation_bonus": "float64",
                "close_factor": "float64", "protocol_fee": "float64", "supply_cap": "float64",
                "borrow_cap": "float64", "category": "int64", "isolated": "bool", "borrowable": "bool",
                "collateral_enabled": "bool", "params": "string"},
    "accounts": {"protocol": "string", "market": "string", "account": "string", "category": "int64",
                 "params": "string"},
    "positions": {"protocol": "string", "market": "string", "account": "string", "asset": "string",
                  "reserve": "string", "side": "string", "amount": "float64", "raw": "string"},
    "options": {"protocol": "string", "market": "string", "account": "string", "position_id": "int64",
                "kind": "string", "strike": "float64", "expiry": "int64", "size": "float64",
                "side": "string", "collateral_asset": "string", "collateral": "float64",
                "raw_size": "string", "raw_collateral": "string"},
    "hedgers": {"protocol": "string", "market": "string", "asset": "string", "net_delta": "float64",
                "net_gamma": "float64", "net_vega": "float64", "hedge_position": "float64"},
    "venues": {"protocol": "string", "venue": "string", "asset": "string", "quote_asset": "string",
               "model": "string", "params": "string"},
    "option_instruments": {"venue": "string", "instrument": "string", "currency": "string", "asset": "string",
                           "kind": "string", "strike": "float64", "expiry": "int64", "as_of": "int64",
                           "open_interest": "float64", "mark_iv": "float64", "underlying_price": "float64",
                           "dealer_position": "float64", "positioning": "string"},
}
OPTIONAL_TABLES = ("option_instruments",)
"""Tables a snapshot written before they existed may lack (read as empty)."""
KEYS: dict[str, tuple[str, ...]] = {
    "assets": ("address",),
    "markets": ("protocol", "market", "asset", "reserve"),
    "accounts": ("protocol", "market", "account"),
    "positions": ("protocol", "market", "account", "asset", "reserve", "side"),
    "options": ("protocol", "market", "position_id"),
    "hedgers": ("protocol", "market", "asset"),
    "venues": ("protocol", "venue", "asset"),
    "option_instruments": ("venue", "instrument"),
}
# columns holding a JSON object (or nothing) that plugins read back
JSON_COLUMNS = (("markets", "params"), ("accounts", "params"), ("venues", "params"))
MAX_CATEGORY = 2 ** 16 - 1   # a protocol's risk category id (Aave's e-mode is a uint8)
META_INTEGERS = ("chain_id", "block_number")
META_OPTIONAL_INTEGERS = ("block_timestamp", "from_block", "fork_block")
SIDES = ("collateral", "debt")
OPTION_KINDS = ("call", "put")
OPTION_SIDES = ("long", "short")
# how protocols list a chain's native coin as an asset (Compound's CEther: 0xEeee…)
NATIVE_PLACEHOLDERS = ("0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "0x0000000000000000000000000000000000000000")


@dataclass(frozen=True)
class ReceiptClaim:
    """What a receipt token claims: ``underlying`` from ``protocol``'s ``market`` ("" = the
    protocol's markets that list the underlying)."""

    protocol: str
    market: str
    underlying: str


def receipt_claim(receipt_of: str | None) -> ReceiptClaim | None:
    """Parse an ``assets.receipt_of`` entry; None for a plain asset.

    Examples
    --------
    >>> receipt_claim("aave-v3:0xPool:0xWETH")
    ReceiptClaim(protocol='aave-v3', market='0xPool', underlying='0xWETH')
    >>> receipt_claim("aave-v3:0xWETH").market
    ''
    """
    if not receipt_of or (isinstance(receipt_of, float) and math.isnan(receipt_of)):
        return None
    parts = str(receipt_of).split(":")
    if len(parts) == 2:
        return ReceiptClaim(parts[0], "", parts[1])
    if len(parts) == 3:
        return ReceiptClaim(*parts)
    raise ContagionError(f'assets: receipt_of "{receipt_of}" is not "<protocol>[:<market>]:<underlying>"')


_EMPTY: dict[str, pd.DataFrame] = {}     # built once: a frame of typed empty columns costs 2 ms, a copy 0.1 ms


def empty_table(name: str) -> pd.DataFrame:
    if name not in _EMPTY:
        _EMPTY[name] = pd.DataFrame({col: pd.Series(dtype=dtype) for col, dtype in TABLES[name].items()})
    return _EMPTY[name].copy()


def _as_strings(column: pd.Series) -> pd.Series:
    """A column as the string dtype: None and NaN as "", anything else as ``str(value)``; a column
    that holds only strings (the usual case: 10^5 rows) is converted at once, not value by value."""
    if not column.isna().any() and (column.dtype == "string"
                                    or pd.api.types.infer_dtype(column, skipna=False) == "string"):
        return column.astype("string")
    return column.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype("string")


def _typed(frame: pd.DataFrame, schema: dict[str, str]) -> bool:
    """Whether ``frame`` has the columns of ``schema`` in order, each of its dtype, text without gaps."""
    if frame.columns.tolist() != list(schema) or list(map(str, frame.dtypes.tolist())) != list(schema.values()):
        return False
    return not len(frame) or not any(_has_gaps(frame[col].array) for col, dtype in schema.items() if dtype == "string")


def _has_gaps(values: pd.api.extensions.ExtensionArray) -> bool:
    """Whether a column holds NA: an Arrow column's count of them, kept with it (a snapshot's tables
    are checked each time a Snapshot is made of them; the 2·10^5 positions' text columns: 100 µs,
    a mask of each 250 µs), else its mask."""
    if isinstance(values, pd.arrays.ArrowExtensionArray):
        return values.__arrow_array__().null_count > 0
    return bool(values.isna().any())


Columns: TypeAlias = dict[str, list]
"""A table given as its columns: column name -> its values, one per row, every column as long;
a column left out takes its default, as a key missing from a row dict. A reader gives its many
rows this way (the lens readers' positions and accounts): :func:`to_table` converts each text
column at once, where a list of row dicts is first a frame of Python objects, its text converted
twice (a quarter of a mainnet-scale scan's Python time). Plain lists: a reader's chunk is kept with
marshal (:class:`analyzer.scan_chunks.ChunkCache`)."""

Table: TypeAlias = list[dict] | Columns
"""A reader's rows of one table: row dicts or :data:`Columns`."""

_DEFAULTS = {"string": "", "float64": np.nan, "int64": 0, "bool": False}


def to_table(name: str, rows: list[dict] | Columns | pd.DataFrame) -> pd.DataFrame:
    """Rows (dicts, :data:`Columns` or a frame) as a typed table; unknown columns are an error,
    missing ones default."""
    schema = TABLES[name]
    if isinstance(rows, pd.DataFrame) and _typed(rows, schema):
        return rows.reset_index(drop=True)      # a table already (a snapshot's, passed on): as it is
    if isinstance(rows, dict):
        return _from_columns(name, rows)
    if not isinstance(rows, pd.DataFrame):
        rows = list(rows)
        return _from_columns(name, _columns_of(rows), len(rows))
    frame = rows.copy()
    extra = set(frame.columns) - set(schema)
    if extra:
        raise ContagionError(f"table {name}: unknown columns {sorted(extra)} (known: {', '.join(schema)})")
    for col, dtype in schema.items():
        if col not in frame.columns:
            frame[col] = _DEFAULTS[dtype] if len(frame) else pd.Series(dtype=dtype)
    frame = frame[list(schema)]
    try:
        for col, dtype in schema.items():
            if dtype == "string":
                frame[col] = _as_strings(frame[col])
            else:
                frame[col] = frame[col].astype(dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ContagionError(f"table {name}: column {col} is not {dtype} ({exc})") from None
    return frame.reset_index(drop=True)


def _columns_of(rows: list[dict]) -> Columns:
    """Row dicts as :data:`Columns`, a key some rows lack as NaN in those (where a frame of the rows
    holds NaN): converted a column at a time, not a frame of Python objects set column by column
    (the markets and assets rows of a mainnet-scale scan's four markets: 17 ms, not 40)."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return {key: [row.get(key, np.nan) for row in rows] for key in keys}


def _from_columns(name: str, columns: Columns, count: int = 0) -> pd.DataFrame:
    """:func:`to_table` of :data:`Columns`: the same table as of the same rows given as dicts
    (``count`` rows where there are no columns)."""
    schema = TABLES[name]
    extra = set(columns) - set(schema)
    if extra:
        raise ContagionError(f"table {name}: unknown columns {sorted(extra)} (known: {', '.join(schema)})")
    lengths = {col: len(values) for col, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ContagionError(f"table {name}: columns of different lengths {lengths}")
    count = next(iter(lengths.values()), count)
    out: dict[str, Any] = {}
    try:
        for col, dtype in schema.items():
            values = columns.get(col)
            if dtype == "string":
                out[col] = _text_column(values, count)
            else:
                out[col] = _number_column([_DEFAULTS[dtype]] * count if values is None else values, dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ContagionError(f"table {name}: column {col} is not {dtype} ({exc})") from None
    return pd.DataFrame(out)


_PYTHON_TYPES = {"float64": float, "int64": int, "bool": bool}


def _number_column(values: list, dtype: str) -> np.ndarray:
    """A :data:`Columns` column of numbers as ``dtype``: Python numbers of its own kind (the usual
    case, an int within int64) by numpy at once, anything else as pandas converts it (its errors
    included); the same values either way (a pandas Series of a 37-row column: 100 µs, numpy 3)."""
    kind = _PYTHON_TYPES[dtype]
    if all(type(value) is kind for value in values) and (
            kind is not int or all(-2 ** 63 <= value < 2 ** 63 for value in values)):
        return np.array(values, dtype=dtype)
    return pd.Series(values).astype(dtype).to_numpy()


def _text_column(values: list | None, count: int) -> pd.api.extensions.ExtensionArray:
    """A :data:`Columns` text column (None: ``count`` times "") as the string dtype: a column of
    Python strings (the usual case) converted by Arrow at once, any other as :func:`_as_strings`."""
    if values is None or (values and type(values[0]) is str and values.count(values[0]) == count):
        # one text throughout (a reader's protocol and market): counted by identity mostly, not converted
        return repeated(values[0] if values else "", count)
    try:    # Arrow's own inference: text only where every value is a string (bytes: binary)
        array = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        array = None
    if array is not None and array.type == pa.string() and not array.null_count:
        return pd.arrays.ArrowStringArray(array)
    return _as_strings(pd.Series(values)).array


def concat_tables(name: str, parts: Sequence[Table | pd.DataFrame]) -> pd.DataFrame:
    """Readers' rows of table ``name`` (row dicts or :data:`Columns`, e.g. one per chunk of
    accounts, or frames: the tables a rescan computes) as one table, in order: consecutive parts of
    the same shape are joined first (lists of rows, or the columns of parts with the same columns,
    each column one list), so a table of many chunks is converted at once, and the table is put
    together once."""
    runs: list[Table | pd.DataFrame] = []
    for part in parts:
        if not _row_count(part):
            continue
        last = runs[-1] if runs else None
        if isinstance(part, pd.DataFrame):
            runs.append(part)
        elif isinstance(part, dict) and isinstance(last, dict) and last.keys() == part.keys():
            for col, values in part.items():
                last[col].extend(values)
        elif isinstance(part, list) and isinstance(last, list):
            last.extend(part)
        else:
            runs.append({col: list(values) for col, values in part.items()} if isinstance(part, dict) else list(part))
    if len(runs) <= 1:
        return to_table(name, runs[0] if runs else [])
    return pd.concat([to_table(name, run) for run in runs], ignore_index=True)


def _row_count(part: Table | pd.DataFrame) -> int:
    return len(next(iter(part.values()), ())) if isinstance(part, dict) else len(part)


@dataclass
class Snapshot:
    """The state of the protocols at one block, as typed tables plus metadata.

    Attributes
    ----------
    meta : dict
        Chain id, block number and timestamp, the node (redacted), the protocols read, excluded
        markets, the assumed centralised depth, the tool version.
    assets, markets, accounts, positions, options, hedgers, venues, option_instruments : pandas.DataFrame
        The tables, each with the columns and dtypes of ``TABLES`` (checked on construction).
    """

    meta: dict[str, Any] = field(default_factory=dict)
    assets: pd.DataFrame = field(default_factory=lambda: empty_table("assets"))
    markets: pd.DataFrame = field(default_factory=lambda: empty_table("markets"))
    accounts: pd.DataFrame = field(default_factory=lambda: empty_table("accounts"))
    positions: pd.DataFrame = field(default_factory=lambda: empty_table("positions"))
    options: pd.DataFrame = field(default_factory=lambda: empty_table("options"))
    hedgers: pd.DataFrame = field(default_factory=lambda: empty_table("hedgers"))
    venues: pd.DataFrame = field(default_factory=lambda: empty_table("venues"))
    option_instruments: pd.DataFrame = field(default_factory=lambda: empty_table("option_instruments"))

    def __post_init__(self) -> None:
        for name in TABLES:
            setattr(self, name, to_table(name, getattr(self, name)))

    @classmethod
    def of_tables(cls, meta: dict[str, Any], tables: dict[str, pd.DataFrame]) -> Snapshot:
        """A snapshot of tables :func:`to_table` (or :func:`concat_tables`) just made, taken as they
        are (a Snapshot of them checks each again: 2 ms of a scan's every market); the others empty."""
        snapshot = cls.__new__(cls)
        snapshot.meta = meta
        for name in TABLES:
            setattr(snapshot, name, tables[name] if name in tables else empty_table(name))
        return snapshot

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    # ---- lookups used everywhere ----
    # the columns as lists first: iterating an Arrow text column makes each value through pandas
    def price_of(self) -> dict[str, float]:
        return dict(zip(self.assets["address"].tolist(), self.assets["price_usd"].tolist(), strict=True))

    def symbol_of(self) -> dict[str, str]:
        return dict(zip(self.assets["address"].tolist(), self.assets["symbol"].tolist(), strict=True))

    def wrapped_native_of(self) -> dict[str, str]:
        """{native coin placeholder: its wrapped token}: ETH (``0xEeee…`` or the zero address, as
        Compound's CEther market lists it) and WETH are one asset, priced by the same feed and sold
        by wrapping, when the snapshot holds both (the wrapped one named "W" + the coin's symbol)."""
        addresses, symbols = self.assets["address"].tolist(), self.assets["symbol"].tolist()
        by_symbol = dict(zip(symbols, addresses, strict=True))
        out = {}
        for address, symbol in zip(addresses, symbols, strict=True):
            if str(address).lower() in NATIVE_PLACEHOLDERS and f"W{symbol}" in by_symbol:
                out[str(address)] = str(by_symbol[f"W{symbol}"])
        return out

    def address_of(self, symbol: str) -> str:
        """The address of the asset named ``symbol`` (or ``symbol`` itself if it is an address)."""
        hits = self.assets.loc[(self.assets["symbol"] == symbol) | (self.assets["address"] == symbol), "address"]
        if hits.empty:
            known = ", ".join(sorted(self.assets["symbol"].tolist())[:12])
            raise ContagionError(f'asset "{symbol}" is not in the snapshot (known: {known})')
        return str(hits.iloc[0])

    # ---- validation ----
    def validate(self) -> Snapshot:
        """Raise ContagionError naming the first problem found; return self when sound."""
        allowed = self._validate_keys()
        self._validate_assets(allowed)
        self._validate_positions(allowed)
        self._validate_options()
        for name in ("markets", "accounts"):
            category = self.table(name)["category"]
            if ((category < 0) | (category > MAX_CATEGORY)).any():
                raise ContagionError(f"{name}: category must be within 0..{MAX_CATEGORY}, got "
                                     f"{category[(category < 0) | (category > MAX_CATEGORY)].iloc[0]}")
        for name, col in JSON_COLUMNS:
            _check_json_objects(name, col, self.table(name)[col])
        self._validate_meta()
        return self

    def _validate_keys(self) -> dict[str, np.ndarray]:
        """No two rows of a table share a key (:data:`KEYS`); returns each position's asset and side
        as its place among the allowed values (one Arrow pass each), by column, where every value is
        allowed: the duplicate check hashes these codes, not the texts again."""
        pos = self.positions
        allowed = {col: codes for col, values in (("asset", self.assets["address"].tolist()), ("side", SIDES))
                   if col in pos.columns and (codes := _places_in(pos[col], values)) is not None}
        for name, keys in KEYS.items():
            frame = self.table(name)
            if has_duplicate_keys(frame, keys, allowed if name == "positions" else None):
                row = frame.loc[frame.duplicated(list(keys), keep=False)].iloc[0]
                raise ContagionError(f"{name}: duplicate key {', '.join(f'{k}={row[k]}' for k in keys)}")
        return allowed

    def _validate_assets(self, allowed: dict[str, np.ndarray]) -> None:
        """Assets priced and sized soundly, and every table's asset among them (positions' assets
        already found so by :meth:`_validate_keys` where ``allowed`` has them)."""
        assets = set(self.assets["address"])
        prices = self.assets.set_index("address")["price_usd"]
        bad_price = prices[~np.isfinite(prices) | (prices < 0)]
        if len(bad_price):
            raise ContagionError(f"assets: missing or negative price_usd for {bad_price.index[0]}")
        if (self.assets["decimals"] < 0).any() or (self.assets["decimals"] > 77).any():
            raise ContagionError("assets: decimals must be within 0..77")
        for name, col in (("markets", "asset"), ("positions", "asset"), ("venues", "asset"),
                          ("hedgers", "asset"), ("options", "collateral_asset")):
            frame = self.table(name)
            if name == "positions" and col in allowed:
                continue
            values = frame[col][frame[col] != ""] if name == "options" else frame[col]
            unknown = set(values.unique()) - assets
            if unknown:
                raise ContagionError(f"{name}: {col} {sorted(unknown)[0]} is not in the assets table")

    def _validate_positions(self, allowed: dict[str, np.ndarray]) -> None:
        """Positions' sides known, amounts finite and non-negative, raw texts non-negative integers;
        options' sizes, collateral and strikes finite and non-negative."""
        pos = self.positions
        if "side" not in allowed and (~pos["side"].isin(SIDES)).any():
            raise ContagionError(f"positions: side must be one of {SIDES}, got {pos.loc[~pos['side'].isin(SIDES), 'side'].iloc[0]!r}")
        for name, cols in (("positions", ("amount",)), ("options", ("size", "collateral", "strike"))):
            for col in cols:
                values = self.table(name)[col]
                if (~np.isfinite(values) | (values < 0)).any():
                    raise ContagionError(f"{name}: {col} must be finite and non-negative")
        # ASCII digits only, at least one: an Arrow column's bytes at once (all_decimal), else each text
        raw = pos["raw"].array
        if not (isinstance(raw, pd.arrays.ArrowStringArray) and all_decimal(raw.__arrow_array__())):
            digits = pc.ascii_is_decimal(pa.array(raw, type=pa.string()))
            bad = ~digits.fill_null(False).to_numpy(zero_copy_only=False)
            if bad.any():
                raise ContagionError(f"positions: raw must be a non-negative integer string, got {pos['raw'][bad].iloc[0]!r}")

    def _validate_options(self) -> None:
        """Options' and option instruments' kinds, sides, figures and assets."""
        opts = self.options
        if (~opts["kind"].isin(OPTION_KINDS)).any() or (~opts["side"].isin(OPTION_SIDES)).any():
            raise ContagionError("options: kind must be call|put and side long|short")
        inst = self.option_instruments
        if (~inst["kind"].isin(OPTION_KINDS)).any():
            raise ContagionError("option_instruments: kind must be call|put")
        for col in ("strike", "open_interest", "mark_iv", "underlying_price", "dealer_position"):
            values = inst[col].to_numpy(float)
            if (~np.isfinite(values)).any() or (col != "dealer_position" and (values < 0).any()):
                raise ContagionError(f"option_instruments: {col} must be finite" +
                                     ("" if col == "dealer_position" else " and non-negative"))
        unknown = set(inst["asset"]) - set(self.assets["address"])
        if unknown:
            raise ContagionError(f"option_instruments: asset {sorted(unknown)[0]} is not in the assets table")
        if (opts["expiry"] < 0).any() or (opts["position_id"] < 0).any():
            raise ContagionError("options: expiry (unix seconds) and position_id must be non-negative")

    def _validate_meta(self) -> None:
        for key in META_INTEGERS + META_OPTIONAL_INTEGERS:
            if key not in self.meta:
                if key in META_INTEGERS:
                    raise ContagionError(f"meta.json: missing {key}")
                continue
            value = self.meta[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 63:
                raise ContagionError(f"meta.json: {key} must be a non-negative integer, got {value!r}")
        for key, kind in (("protocols", dict), ("rpc", str), ("tool_version", str), ("venue_models", dict)):
            if key in self.meta and not isinstance(self.meta[key], kind):
                raise ContagionError(f"meta.json: {key} must be a JSON {'object' if kind is dict else 'string'}")

    # ---- persistence ----
    def write(self, path: str | Path) -> Path:
        """Write the snapshot folder atomically (validated first).

        Parameters
        ----------
        path
            The folder: one Parquet file per table and ``meta.json``; replaced as a whole.

        Returns
        -------
        Path
            ``path``.

        Raises
        ------
        ContagionError
            The snapshot fails validation (a column of the wrong type, an unknown asset).
        """
        self.validate()
        path = Path(path)
        with atomic_directory(path) as tmp:
            for name in TABLES:
                frame = self.table(name)
                table = pa.Table.from_pandas(frame, preserve_index=False)
                pq.write_table(table, tmp / f"{name}.parquet")
            meta = dict(self.meta, schema_version=SCHEMA_VERSION)
            atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path, *, expect_chain_id: int | None = None,
             expect_block: int | None = None) -> Snapshot:
        """Read and validate a snapshot folder.

        Parameters
        ----------
        path
            A folder written by :meth:`write` (``contagion scan --out``).
        expect_chain_id, expect_block
            Refuse a snapshot of another chain or block.

        Returns
        -------
        Snapshot

        Raises
        ------
        ContagionError
            The folder is missing, incomplete or invalid, or of another chain or block.
        """
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise ContagionError(f"{path}: not a snapshot (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ContagionError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ContagionError(f"{meta_path}: expected a JSON object")
        if meta.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ContagionError(f"{meta_path}: schema_version {meta.get('schema_version')} (this tool reads {SCHEMA_VERSION})")
        if expect_chain_id is not None and meta.get("chain_id") != expect_chain_id:
            raise ContagionError(f"{path}: snapshot of chain {meta.get('chain_id')}, expected chain {expect_chain_id}")
        if expect_block is not None and meta.get("block_number") != expect_block:
            raise ContagionError(f"{path}: snapshot at block {meta.get('block_number')}, expected block {expect_block}")
        tables = {}
        for name in TABLES:
            file = path / f"{name}.parquet"
            if not file.is_file() and name in OPTIONAL_TABLES:
                continue
            if not file.is_file():
                raise ContagionError(f"{path}: missing {name}.parquet")
            try:
                table = pq.read_table(file)
                table.validate(full=True)   # e.g. strings that are not UTF-8: Arrow reads them as they are
                tables[name] = table.to_pandas()
            except Exception as exc:  # a damaged file fails in many ways (Arrow, Thrift, UTF-8, ...)
                raise ContagionError(f"{file}: unreadable Parquet ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:160]})") from None
        try:
            snapshot = cls(meta=meta, **tables)
        except ContagionError as exc:
            raise ContagionError(f"{path}: {exc}") from None
        except Exception as exc:  # columns of the wrong kind inside a readable file
            raise ContagionError(f"{path}: malformed table ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
        return snapshot.validate()

    def merge(self, *others: Snapshot) -> Snapshot:
        """Tables of all the snapshots (same chain and block), as merging them in turn; assets
        deduplicated by address. Merged at once: a scan's markets in one concatenation per table,
        not one per market."""
        meta = dict(self.meta)
        for other in others:
            for key in ("chain_id", "block_number"):
                if key in meta and key in other.meta and meta[key] != other.meta[key]:
                    raise ContagionError(f"cannot merge snapshots with different {key}: {meta[key]} vs {other.meta[key]}")
            # protocols: {plugin: {market: deployment}}; two markets of one plugin both stay
            protocols = {name: {**other.meta.get("protocols", {}).get(name, {}), **markets}
                         for name, markets in meta.get("protocols", {}).items()}
            protocols |= {name: markets for name, markets in other.meta.get("protocols", {}).items()
                          if name not in protocols}
            meta = {**other.meta, **meta, "protocols": protocols}
        tables = {}
        for name, keys in KEYS.items():
            frames = [frame for frame in (self.table(name), *(other.table(name) for other in others)) if len(frame)]
            if not frames:
                continue    # the table's default: empty
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            if name == "assets":
                frame = _first_of_each_asset(frame)     # one row per address: the key
            elif has_duplicate_keys(frame, keys):       # most have none: not dropped (a copy) then
                frame = frame.drop_duplicates(list(keys), keep="first")
            tables[name] = frame
        return Snapshot(meta=meta, **tables)


def _places_in(column: pd.Series, values: Sequence[str]) -> np.ndarray | None:
    """Each text of an Arrow ``column`` as its place in ``values`` (Arrow's ``index_in``: equal
    exactly where the texts are); None when one is not among them, or the column is not Arrow text."""
    array = column.array
    if not isinstance(array, pd.arrays.ArrowStringArray) or not all(type(value) is str for value in values):
        return None
    texts = array.__arrow_array__()
    places = pc.index_in(texts, value_set=pa.array(values, type=texts.type))
    if places.null_count:
        return None
    return np.concatenate([chunk.to_numpy() for chunk in places.chunks] or [np.zeros(0, dtype=np.int32)])


def _first_of_each_asset(assets: pd.DataFrame) -> pd.DataFrame:
    """One row per address, the first; its gaps filled from later ones: one protocol may know more
    of an asset than another (Lyra its IV, Aave that a token is its receipt)."""
    known_iv: dict[str, float] = {}
    receipts: dict[str, str] = {}
    for address, iv, receipt_of in zip(assets["address"].tolist(), assets["iv"].tolist(),
                                       assets["receipt_of"].tolist(), strict=True):
        if pd.notna(iv):
            known_iv.setdefault(address, float(iv))
        if receipt_of:
            receipts.setdefault(address, str(receipt_of))
    first = assets.drop_duplicates("address", keep="first").copy()
    addresses = first["address"].tolist()
    first["iv"] = np.array([known_iv.get(a, np.nan) for a in addresses], dtype=np.float64)
    first["receipt_of"] = text_column([receipts.get(a, "") for a in addresses])      # the snapshot's text type
    return first


_SCAN_JSON = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner: json.loads less its wrapper
JSON_SPACE = " \t\n\r"


# A flat JSON object (RFC 8259's grammar, a subset): keys and values strings without escapes or
# control characters, numbers, true / false / null, arrays of such strings. Every text it matches
# is a JSON object; the others are parsed (what most of the params plugins write, checked at
# once by Arrow's regex engine rather than parsed one by one: a tenth of a rescan)
_WS = r"[ \t\n\r]*"
_STRING = r'"[^"\\\x00-\x1f]*"'
_VALUE = (rf"(?:{_STRING}|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null"
          rf"|\[{_WS}(?:{_STRING}(?:{_WS},{_WS}{_STRING})*)?{_WS}\])")
_MEMBER = rf"{_STRING}{_WS}:{_WS}{_VALUE}"
FLAT_JSON_OBJECT = rf"^{_WS}\{{{_WS}(?:{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*)?{_WS}\}}{_WS}$"


def _check_json_objects(table: str, column: str, values: pd.Series) -> None:
    unique = values.unique()
    if isinstance(unique, pd.arrays.ArrowStringArray) and len(unique):
        flat = pc.match_substring_regex(pa.array(unique), FLAT_JSON_OBJECT)
        unique = unique[~flat.fill_null(False).to_numpy(zero_copy_only=False)]
    for text in unique.tolist():
        if text == "" or text is pd.NA:
            continue
        start = len(text) - len(text.lstrip(JSON_SPACE))
        try:
            parsed, end = _SCAN_JSON(text, start)
        except (ValueError, RecursionError, StopIteration):
            end = -1
        # one object, nothing but white space around it (what json.loads takes)
        if end < 0 or text[end:].strip(JSON_SPACE) or not isinstance(parsed, dict):
            raise ContagionError(f"{table}: {column} must be a JSON object, got {str(text)[:60]!r}")


def raw_to_amount(raw: int, decimals: int) -> float:
    """An exact integer of token wei as float64 token units, correctly rounded (Python's true
    division of two integers is correctly rounded, as ``float(Fraction(raw, 10**decimals))``)."""
    return int(raw) / 10 ** int(decimals)
