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
again where that index moved (``CompoundV2Lens.borrows``: :func:`borrows_stored`). The refresh
itself: :mod:`protocols.compound_v2.refresh`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.kept import KeptState
from analyzer.lens import encode_arguments, masks, read_rows
from protocols.base import Rows
from protocols.compound_v2 import slots
from protocols.compound_v2.borrows import Pair, borrow_pairs
from protocols.compound_v2.constants import MANTISSA, PROTOCOL
from protocols.compound_v2.slots import Figures

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")
BORROWS_SELECTOR = function_signature_to_4byte_selector("borrows(address[],address[],uint256[])")
MASK_BITS = 256      # the lens's masks are one word per account
RECORD = 5           # kept words per market held: market, cToken balance, then a borrow (see rows_from_figures)
KEPT_FORMAT = "borrow-pairs"    # in the market tag: a state kept in another layout is read again
RESCAN_FEW = 1000   # a rescan reads fewer accounts than this at a time through the getters (read_accounts)


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CompoundV2Lens")["deployedBytecode"]


def market_tag(markets: Sequence[dict]) -> int:
    """Which market list a kept state's indices refer to: the first 7 bytes of its cTokens' hash
    (an int64 word: the refresh compares every account's as one int64 column)."""
    return int.from_bytes(keccak(text=",".join([KEPT_FORMAT, *(m["ctoken"] for m in markets)]))[:7], "big")


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


def borrows_stored(reader, moved: dict[str, int]) -> list[list[int]] | None:
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
    tag, odd_tag = kept.ints(kept.starts)
    if (tag != market_tag(markets)).any() or odd_tag.any():
        return None
    owner, at = kept.entries(2 + kept.ints(kept.starts + 1)[0], RECORD)
    market, odd = kept.ints(at)
    if (market >= len(markets)).any() or (market < 0).any() or odd.any():
        return None
    ctokens = [m["ctoken"] for m in markets]
    out: dict[str, list[str]] = {account: [] for account in kept.accounts.tolist()}
    names = kept.accounts
    for who, j in zip(owner.tolist(), market.tolist(), strict=True):
        out[names[who]].append(ctokens[j])
    return out
