"""Compound V2 accounts through our lenses. A full read takes accounts from storage where the
deployment's slots are proven (:mod:`protocols.compound_v2.slots`: ``CompoundV2Accounts``), and the
others through the getter lens (fixtures/contracts/lens: ``CompoundV2Lens``): one ``eth_call``
reads ``getAssetsIn`` and every non-empty ``getAccountSnapshot`` of hundreds of accounts. The rows
are the ones :meth:`CompoundV2Reader.read_accounts` builds from Multicall3.

Incremental rescans: each account's lens figures are kept as ``_state``, each borrow with the
pair the cToken stores it as (principal, interestIndex: :mod:`protocols.compound_v2.borrows`), read
with it (from storage) or beside it (through the getters). An untouched account keeps its cToken
balances and entered markets (only events change them) and its borrow pairs, so its
``borrowBalanceStored`` at a later block is computed at the market's new ``borrowIndex``
(CToken.borrowBalanceStoredInternal). A borrow kept without its pair (not proven) is kept as its
balance with the ``borrowIndex`` it was read at, and only its ``borrowBalanceStored`` is read
again where that index moved (``CompoundV2Lens.borrows``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.kept import KeptState, Refreshed, objects
from analyzer.lens import encode_arguments, masks, read_rows
from analyzer.textcolumns import arrow_text, decimal_strings, labels, repeated, split_decimal_strings, text
from protocols.base import Rows
from protocols.compound_v2 import slots
from protocols.compound_v2.borrows import Pair, borrow_pairs
from protocols.compound_v2.columns import int64_where_fits
from protocols.compound_v2.constants import MANTISSA, PROTOCOL
from protocols.compound_v2.quotients import floor_products, product_quotients, quotients, wide_quotients
from protocols.compound_v2.slots import Figures

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")
BORROWS_SELECTOR = function_signature_to_4byte_selector("borrows(address[],address[],uint256[])")
MASK_BITS = 256      # the lens's masks are one word per account
RECORD = 5           # kept words per market held: market, cToken balance, then a borrow (see rows_from_figures)
KEPT_FORMAT = "borrow-pairs"    # in the market tag: a state kept in another layout is read again
RESCAN_FEW = 1000   # a rescan reads fewer accounts than this at a time through the getters (read_accounts)
FLOAT_POWERS_OF_TEN = np.array([float(10**d) for d in range(78)])   # as Python divides a float by 10**d


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CompoundV2Lens")["deployedBytecode"]


def market_tag(markets: Sequence[dict]) -> int:
    """Which market list a kept state's indices refer to (the first 8 bytes of its cTokens' hash)."""
    return int.from_bytes(keccak(text=",".join([KEPT_FORMAT, *(m["ctoken"] for m in markets)]))[:8], "big")


def _lens_rows(reader, accounts: Sequence[str]) -> list[list[int]] | None:
    """Lens rows of ``accounts`` (every market, or the discovered holdings: ``reader.holdings``);
    None when the node has no lens calls."""
    markets = reader.markets()
    ctokens = [m["ctoken"] for m in markets]
    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(reader.comptroller, ctokens, batch, masks(held, batch, ctokens))

    reads = 1 + (len(markets) if held is None else 3)   # an account holds a few markets
    return read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)


def _borrows(reader, moved: dict[str, int]) -> list[list[int]] | None:
    """``borrowBalanceStored`` of each account in the markets of its mask (``CompoundV2Lens.borrows``)."""
    ctokens = [m["ctoken"] for m in reader.markets()]

    def encode(batch: Sequence[str]) -> bytes:
        return BORROWS_SELECTOR + encode_arguments(ctokens, batch, [moved[a] for a in batch])

    reads = max(1, sum(bin(m).count("1") for m in moved.values()) // max(1, len(moved)))
    return read_rows(reader.ctx.lens, lens_code(), encode, list(moved), reads_per_account=reads)


def _figures(reader, account: str, row: Sequence[int]) -> Figures:
    """A lens row as (entered, held)."""
    markets = reader.markets()
    entered = list(row[1:1 + row[0]])
    held = {}
    for k in range(1 + row[0], len(row), 5):
        j, error, ctoken_balance, borrow_balance, exchange_rate = row[k:k + 5]
        if error != 0:
            raise ContagionError(f"compound-v2: getAccountSnapshot({account}) failed on {markets[j]['ctoken']}")
        held[j] = (ctoken_balance, borrow_balance, exchange_rate)
    return entered, held


def _getter_figures(reader, accounts: Sequence[str]) -> dict[str, Figures] | None:
    """Figures of ``accounts`` (those with any) through the getter lens; None when the node has no lens calls."""
    rows = _lens_rows(reader, accounts)
    if rows is None:
        return None
    return {a: _figures(reader, a, row) for a, row in zip(accounts, rows, strict=True) if row}


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts``: from storage where the slots are proven and the
    accounts' holdings known (:mod:`protocols.compound_v2.slots`, the borrow pairs read with them),
    the others through the getter lens (pairs read beside them: :func:`borrow_pairs`); None when
    the node has no lens calls."""
    if reader.ctx.lens is None:
        return None
    accounts = [a if a != a.lower() else to_checksum_address(a) for a in accounts]  # checksumming costs
    # from storage only under known holdings: without them every account is read in every
    # market, so one market whose slots no sample proves sends every account to the getters; and
    # not the few accounts a rescan reads (its touched ones) before the slots are searched: the
    # search costs more calls than reading them through the getters in their holdings
    account_masks = masks(reader.holdings, accounts, [m["ctoken"] for m in reader.markets()])
    few = getattr(reader, "_rescanning", False) and len(accounts) < RESCAN_FEW and not slots.slots_of(reader).searched
    stored = slots.read_figures(reader, accounts, account_masks, lambda asked: _getter_figures(reader, asked)) \
        if account_masks and not few else None
    figures, pairs, rest = stored if stored is not None else ({}, {}, accounts)
    if rest:
        through_getters = _getter_figures(reader, rest)
        if through_getters is None:
            return None
        borrowed = {a: {j: f[1] for j, f in held.items() if f[1]} for a, (_, held) in through_getters.items()}
        pairs.update(borrow_pairs(reader, {a: b for a, b in borrowed.items() if b}))
        figures.update(through_getters)
    in_order = {a: figures[a] for a in accounts if a in figures} if stored is not None and rest else figures
    return rows_from_figures(reader, in_order, pairs)


def rows_from_figures(reader, figures: dict[str, Figures], pairs: dict[str, dict[int, Pair]]) -> Rows:
    """Snapshot rows from accounts' figures, as columns (:data:`analyzer.model.Columns`), with the
    figures kept as ``_state`` (incremental rescans): ``[market tag, entered count, entered...,
    then RECORD words per market held: market, cToken balance, then (principal, interestIndex,
    1) of its borrow where ``pairs`` has it, else (borrow balance, the market's borrowIndex, 0)]``."""
    markets = reader.markets()
    tag = market_tag(markets)
    scales = [10 ** m["underlying_decimals"] for m in markets]
    indexes = [m.get("borrow_index") or 0 for m in markets]
    params: dict[tuple[int, ...], str] = {}     # accounts share a few sets of entered markets
    owners, held_in, sides, amounts, balances = [], [], [], [], []     # per position (held_in: market; raw)
    holders, entered_params, state = [], [], {}                     # the accounts'
    for account, (entered, held) in figures.items():
        opened, proven = False, pairs.get(account, {})
        kept = [tag, len(entered), *entered]
        for j in sorted(held):
            ctoken_balance, borrow_balance, exchange_rate = held[j]
            if ctoken_balance:
                owners.append(account)
                held_in.append(j)
                sides.append("collateral")
                balances.append(ctoken_balance)
                amounts.append(ctoken_balance * exchange_rate / MANTISSA / scales[j])
            if borrow_balance:
                owners.append(account)
                held_in.append(j)
                sides.append("debt")
                balances.append(borrow_balance)
                amounts.append(borrow_balance / scales[j])
            opened = opened or bool(ctoken_balance or borrow_balance)
            kept += [j, ctoken_balance, *proven[j], 1] if j in proven else [j, ctoken_balance, borrow_balance,
                                                                           indexes[j], 0]
        if opened:
            key = tuple(entered)
            if key not in params:
                params[key] = json.dumps({"entered": [markets[j]["ctoken"] for j in entered]})
            holders.append(account)
            entered_params.append(params[key])
            state[account] = kept
    underlying, ctokens = [m["underlying"] for m in markets], [m["ctoken"] for m in markets]
    positions = {"protocol": [PROTOCOL] * len(owners), "market": [reader.comptroller] * len(owners),
                 "account": owners, "asset": list(map(underlying.__getitem__, held_in)),
                 "reserve": list(map(ctokens.__getitem__, held_in)), "side": sides, "amount": amounts,
                 "raw": list(map(str, balances))}
    account_rows = {"protocol": [PROTOCOL] * len(holders), "market": [reader.comptroller] * len(holders),
                    "account": holders, "category": [0] * len(holders), "params": entered_params}
    return {"positions": positions, "accounts": account_rows, "_state": state}  # type: ignore[dict-item]


def kept_holdings(reader, kept: KeptState) -> dict[str, list[str]] | None:
    """The cTokens each kept account held (a record of each market read for it: every non-zero
    balance or borrow); None when one was kept under another market list (its indices are
    another list's). Marks the reader as rescanning (:func:`read_accounts`)."""
    reader._rescanning = True
    markets = reader.markets()
    if not len(kept):
        return {}
    if (kept.column(0) != market_tag(markets)).any():
        return None
    owner, at = kept.entries(2 + kept.column(1).astype(np.int64), RECORD)
    market = kept.words[at].astype(np.int64)
    if (market >= len(markets)).any():
        return None
    ctokens = [m["ctoken"] for m in markets]
    out: dict[str, list[str]] = {account: [] for account in kept.accounts.tolist()}
    names = kept.accounts
    for who, j in zip(owner.tolist(), market.tolist(), strict=True):
        out[names[who]].append(ctokens[j])
    return out


def refresh_accounts(reader, previous: KeptState) -> Refreshed:
    """Untouched accounts at this block, at once over arrays: cToken balances and entered
    markets as kept (valued at this block's ``exchangeRateStored``), borrows kept as their pair
    computed at the market's ``borrowIndex`` now (``principal × borrowIndex / interestIndex``,
    CToken.borrowBalanceStoredInternal), borrows kept as a balance taken as kept where the index
    is the one they were read at and ``borrowBalanceStored`` read again where it moved. Accounts
    kept under another market list (or layout) are read again in full.

    Markets, flags and (where they fit) cToken balances are int64 columns; borrows at the new index
    too where their operands fit (:func:`protocols.compound_v2.quotients.floor_products`), the
    others (18-decimal principals past 2^63) as Python integers, exact."""
    if reader.ctx.lens is None:
        return Refreshed({}, KeptState.empty(), previous.accounts.tolist())
    markets = reader.markets()
    stale = previous.column(0) != market_tag(markets) if len(previous) else np.zeros(0, dtype=bool)
    gone, previous = previous.accounts[stale].tolist(), previous.take(~stale) if stale.any() else previous
    starts, words = previous.starts, previous.words
    entered = words[starts + 1].astype(np.int64) if len(previous) else np.zeros(0, dtype=np.int64)
    owner, at = previous.entries(2 + entered, RECORD)
    borrow_words = words[at + 2]
    records = Records(owner, at, words[at].astype(np.int64), fixed_width(words[at + 1]), np.flatnonzero(borrow_words))
    again = np.zeros(len(previous), dtype=bool)
    again[owner[records.market >= min(len(markets), MASK_BITS)]] = True   # past the list or the lens's mask
    market = np.minimum(records.market, len(markets) - 1)
    borrows = records.borrows
    b_owner, b_market = owner[borrows], market[borrows]
    borrowed, kept_index = borrow_words[borrows], words[at[borrows] + 3]
    paired = words[at[borrows] + 4].astype(np.int64) == 1
    # a market without borrowIndex() (None: -1, never a kept index) is always read again
    index_now = objects(index_now_of(markets))[b_market]
    again[b_owner[paired & (index_now == -1)]] = True
    computed = paired & ~again[b_owner]
    # at the new index in int64 where the operands fit, the others (and the balances read again) as Python integers
    small, wide = int64_where_fits(borrowed, often_wide=True)
    kept_small, kept_wide = int64_where_fits(kept_index)
    index_small = np.array([i if 0 <= i < 2**63 else -1 for i in index_now_of(markets)], dtype=np.int64)[b_market]
    fast = np.flatnonzero(computed & ~wide & ~kept_wide & (index_small >= 0))
    quotient, exact = floor_products(small[fast], index_small[fast], kept_small[fast])
    small[fast[exact]] = quotient[exact]
    slow = computed.copy()
    slow[fast[exact]] = False
    borrowed[slow] = borrowed[slow] * index_now[slow] // kept_index[slow]
    moved = ~again[b_owner] & ~paired & (index_now != kept_index)
    if moved.any():
        masks = np.zeros(len(previous), dtype=object)
        np.add.at(masks, b_owner[moved], objects([1 << j for j in b_market[moved].tolist()]))
        who = np.flatnonzero(np.bincount(b_owner[moved], minlength=len(previous)))
        rows = _borrows(reader, dict(zip(previous.accounts[who].tolist(), masks[who].tolist(), strict=True)))
        if rows is None:                # the node stopped taking overrides: read these again
            again[who] = True
        else:                           # each row: the moved markets of one account in market order
            fresh = [value for row in rows for value in row]
            if len(fresh) != int(moved.sum()):
                raise ContagionError(f"the Compound V2 lens returned {len(fresh)} borrow balances for "
                                     f"{int(moved.sum())} asked")
            borrowed[moved] = objects(fresh)
    redo = slow | moved
    small[redo], wide[redo] = int64_where_fits(borrowed[redo], often_wide=True)
    refreshed = _refreshed(reader, previous, again, records._replace(market=market), Debts(small, wide, borrowed), moved)
    carried = np.zeros(len(stale), dtype=bool)     # over the accounts before the stale ones were taken out
    carried[~stale] = refreshed.carried
    return Refreshed(refreshed.tables, refreshed.state, gone + refreshed.again, carried)


class Records(NamedTuple):
    """The kept records of a state (:func:`rows_from_figures`), as columns: ``owner`` (the account
    row), ``at`` (where its words are), ``market``, cToken ``balance`` (int64 where every one
    fits), and ``borrows``: the records with a borrow word (their positions in these columns)."""

    owner: np.ndarray
    at: np.ndarray
    market: np.ndarray
    balance: np.ndarray
    borrows: np.ndarray


class Debts(NamedTuple):
    """The borrow of each of a state's ``Records.borrows`` at this block: ``small`` (int64) where
    ``wide`` is unset, else ``values`` (Python integers; :mod:`protocols.compound_v2.columns`).
    ``values`` holds the balances read again (``moved``) too."""

    small: np.ndarray
    wide: np.ndarray
    values: np.ndarray


def index_now_of(markets: Sequence[dict]) -> list[int]:
    """Each market's ``borrowIndex`` at this block (-1: the market has none, never a kept index)."""
    return [-1 if m.get("borrow_index") is None else m["borrow_index"] for m in markets]


def fixed_width(values: np.ndarray) -> np.ndarray:
    """Python integers as int64 where every one fits (cToken balances do), else as they are."""
    try:
        return values.astype(np.int64)
    except OverflowError:
        return values


def _refreshed(reader, previous: KeptState, again: np.ndarray, records: Records, debts: Debts,
               moved: np.ndarray) -> Refreshed:
    """The rows and kept words (:func:`rows_from_figures`) of the accounts not read ``again``,
    from their ``records`` at this block (``debts``: the borrow of each of ``records.borrows``
    at this block; ``moved``: those kept as a balance and read again, kept as that balance and
    this block's index). Every other record's words hold at this block as kept (a pair, a balance
    whose index has not moved, no borrow): only the accounts with a moved borrow have their words
    written again (``carried``: the others). Positions: every collateral, then every debt."""
    markets = reader.markets()
    owner, market, balance, borrows = records.owner, records.market, records.balance, records.borrows
    debt = (debts.small != 0) | debts.wide
    opened = np.zeros(len(previous), dtype=bool)
    opened[owner[balance != 0]] = True
    opened[owner[borrows[debt]]] = True
    opened &= ~again
    rewritten = np.zeros(len(previous), dtype=bool)
    rewritten[owner[borrows[moved]]] = True
    decimals = np.array([m["underlying_decimals"] for m in markets], dtype=np.int64)
    rates = [m["exchange_rate_mantissa"] for m in markets]
    lent = np.flatnonzero((balance != 0) & opened[owner])
    raw = balance[lent]
    j = market[lent]
    # cToken balance × exchangeRateStored / 1e18 / 10^decimals, as rows_from_figures
    underlying = product_quotients(raw, rates, j, MANTISSA) if raw.dtype == np.int64 \
        else ((raw * objects(rates)[j]) / MANTISSA).astype(np.float64)
    lent_amount = underlying / FLOAT_POWERS_OF_TEN[decimals[j]]
    mine = np.flatnonzero(debt & opened[owner[borrows]])
    small, wide, values = debts.small[mine], debts.wide[mine], debts.values[mine]
    k = market[borrows[mine]]
    owed = np.empty(len(mine), dtype=np.float64)    # balance / 10^decimals, as rows_from_figures
    scales = [10**int(d) for d in decimals]
    owed[~wide] = quotients(small[~wide], scales, k[~wide])
    owed[wide] = wide_quotients(values[wide], scales, k[wide])
    where = np.concatenate([lent, borrows[mine]])
    j = market[where]
    n = len(where)
    names = arrow_text(previous.accounts)      # converted once, labelling every side
    positions = pd.DataFrame({"protocol": repeated(PROTOCOL, n), "market": repeated(reader.comptroller, n),
                              "account": labels(names, owner[where]),
                              "asset": labels([m["underlying"] for m in markets], j),
                              "reserve": labels([m["ctoken"] for m in markets], j),
                              "side": labels(["collateral", "debt"], np.repeat([0, 1], [len(lent), len(mine)])),
                              "amount": np.concatenate([lent_amount, owed]),
                              "raw": text(pa.concat_arrays([decimal_strings(raw), split_decimal_strings(small, wide, values)]))})
    return Refreshed({"positions": positions, "accounts": _account_rows(reader, previous, opened, names)},
                     _rewritten(reader, previous, opened & rewritten, records, debts.values, moved),
                     previous.accounts[again].tolist(), carried=opened & ~rewritten)


def _rewritten(reader, previous: KeptState, rows: np.ndarray, records: Records, borrowed: np.ndarray,
               moved: np.ndarray) -> KeptState:
    """The kept words of the accounts ``rows`` (those with a moved borrow), taken alone (not a
    copy of every account's), each moved borrow's record written: its balance now and the
    market's ``borrowIndex`` now."""
    if not rows.any():
        return KeptState.empty()
    kept = previous.take(rows)
    moved_at = records.borrows[moved]
    who = records.owner[moved_at]
    mine = rows[who]
    rank = np.cumsum(rows) - 1
    at = kept.starts[rank[who[mine]]] + records.at[moved_at[mine]] - previous.starts[who[mine]]
    kept.words[at + 2] = borrowed[moved][mine]
    indexes = objects([m.get("borrow_index") or 0 for m in reader.markets()])
    kept.words[at + 3] = indexes[records.market[moved_at[mine]]]
    return kept


def _account_rows(reader, previous: KeptState, opened: np.ndarray, names) -> pd.DataFrame:
    """Accounts rows of the ``opened`` kept accounts (``names``: every kept account's, as Arrow
    text): their entered markets by cToken. Accounts share a few sets of entered markets: each
    set is written once."""
    markets = reader.markets()
    rows = np.flatnonzero(opened)
    n = len(rows)
    starts = previous.starts[rows]
    words = previous.words
    count = words[starts + 1].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(n), count)
    within = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    market = words[starts[owner] + 2 + within].astype(np.int64)
    # each set as one number, its markets as digits (base: one more than the markets), where it fits
    # in 64 bits; otherwise the sets as rows
    base, width, ends = len(markets) + 1, int(count.max(initial=0)), np.cumsum(count)
    if base ** (width + 1) < 2**62:
        # each account's digits summed as the difference of running sums (modulo 2^64: exact, each sum fits)
        placed = ((market + 1) * base ** (width - within)).astype(np.uint64)
        running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(placed)])
        digits = (running[ends] - running[ends - count]).astype(np.int64)
        which, _ = pd.factorize(digits)
        # the sets in order of first appearance: each first where its code passes every earlier one
        first = np.flatnonzero(which > np.maximum.accumulate(np.concatenate([[-1], which[:-1]])))
    else:
        entered = np.full((n, width + 1), -1, dtype=np.int64)     # -1 past each set
        entered[owner, within] = market
        _, first, which = np.unique(entered, axis=0, return_index=True, return_inverse=True)
    quoted = [f'"{m["ctoken"]}"' for m in markets]
    flat = market.tolist()
    params = ['{"entered": [' + ", ".join([quoted[j] for j in flat[end - c:end]]) + "]}"
              for end, c in zip(ends[first].tolist(), count[first].tolist(), strict=True)]
    return pd.DataFrame({"protocol": repeated(PROTOCOL, n), "market": repeated(reader.comptroller, n),
                         "account": labels(names, rows), "category": np.zeros(n, dtype=np.int64),
                         "params": labels(params, which.reshape(-1))})
