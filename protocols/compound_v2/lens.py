"""Compound V2 accounts through our lens (fixtures/contracts/lens: ``CompoundV2Lens``): one
``eth_call`` reads ``getAssetsIn`` and every non-empty ``getAccountSnapshot`` of hundreds of
accounts. The rows are the ones :meth:`CompoundV2Reader.read_accounts` builds from Multicall3.

Incremental rescans: each account's lens figures are kept as ``_state`` with the ``borrowIndex``
of every market at the block they were read. A cToken's ``borrowBalanceStored`` is
``principal × borrowIndex / interestIndex`` truncated (CToken.borrowBalanceStoredInternal), and
principal and interestIndex are internal storage that no getter returns: the stored balance at a
new index cannot be derived exactly from the old one. So an untouched account keeps its cToken
balances and entered markets (only events change them), its borrow balance where the market's
``borrowIndex`` did not move (no ``accrueInterest`` since), and has only ``borrowBalanceStored``
read again in the markets whose index moved (``CompoundV2Lens.borrows``: one getter per borrow,
not the account's whole row)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.lens import encode_arguments, masks, read_rows
from protocols.base import Rows
from protocols.compound_v2.constants import MANTISSA, PROTOCOL

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")
BORROWS_SELECTOR = function_signature_to_4byte_selector("borrows(address[],address[],uint256[])")
MASK_BITS = 256      # the lens's masks are one word per account

# An account's figures: (entered market indices, market index -> (cToken balance, borrowBalanceStored,
# exchangeRateStored)), market indices into the reader's markets()
Figures = tuple[list[int], dict[int, tuple[int, int, int]]]


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CompoundV2Lens")["deployedBytecode"]


def market_tag(markets: Sequence[dict]) -> int:
    """Which market list a kept state's indices refer to (the first 8 bytes of its cTokens' hash)."""
    return int.from_bytes(keccak(text=",".join(m["ctoken"] for m in markets))[:8], "big")


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


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    if reader.ctx.lens is None:
        return None
    accounts = [a if a != a.lower() else to_checksum_address(a) for a in accounts]  # checksumming costs
    rows = _lens_rows(reader, accounts)
    if rows is None:
        return None
    return rows_from_figures(reader, {a: _figures(reader, a, row) for a, row in zip(accounts, rows, strict=True)
                                      if row})


def rows_from_figures(reader, figures: dict[str, Figures]) -> Rows:
    """Snapshot rows from accounts' figures, with the figures kept as ``_state`` (incremental
    rescans): ``[market tag, entered count, entered..., then (market, cToken balance, borrow
    balance, the market's borrowIndex) per market held]``."""
    markets = reader.markets()
    tag = market_tag(markets)
    bases = [{"protocol": PROTOCOL, "market": reader.comptroller, "asset": m["underlying"], "reserve": m["ctoken"]}
             for m in markets]
    scales = [10 ** m["underlying_decimals"] for m in markets]
    indexes = [m.get("borrow_index") or 0 for m in markets]
    params: dict[tuple[int, ...], str] = {}     # accounts share a few sets of entered markets
    positions, account_rows, state = [], [], {}
    for account, (entered, held) in figures.items():
        opened = False
        kept = [tag, len(entered), *entered]
        for j in sorted(held):
            ctoken_balance, borrow_balance, exchange_rate = held[j]
            if ctoken_balance:
                positions.append({**bases[j], "account": account, "side": "collateral", "raw": str(ctoken_balance),
                                  "amount": ctoken_balance * exchange_rate / MANTISSA / scales[j]})
            if borrow_balance:
                positions.append({**bases[j], "account": account, "side": "debt", "raw": str(borrow_balance),
                                  "amount": borrow_balance / scales[j]})
            opened = opened or bool(ctoken_balance or borrow_balance)
            kept += [j, ctoken_balance, borrow_balance, indexes[j]]
        if opened:
            key = tuple(entered)
            if key not in params:
                params[key] = json.dumps({"entered": [markets[j]["ctoken"] for j in entered]})
            account_rows.append({"protocol": PROTOCOL, "market": reader.comptroller, "account": account,
                                 "category": 0, "params": params[key]})
            state[account] = kept
    return {"positions": positions, "accounts": account_rows, "_state": state}  # type: ignore[dict-item]


def refresh_accounts(reader, previous: dict[str, list[int]]) -> tuple[Rows, list[str]]:
    """Untouched accounts at this block: cToken balances and entered markets as kept (valued at
    this block's ``exchangeRateStored``), borrow balances as kept where the market's
    ``borrowIndex`` is the one they were read at, and ``borrowBalanceStored`` read again where it
    moved. Accounts kept under another market list are read again in full."""
    if reader.ctx.lens is None:
        return {}, list(previous)
    markets = reader.markets()
    tag, rate = market_tag(markets), [m["exchange_rate_mantissa"] for m in markets]
    index_now = [m.get("borrow_index") for m in markets]
    figures: dict[str, Figures] = {}
    moved: dict[str, int] = {}
    again = []
    for account, row in previous.items():
        if not row or row[0] != tag:
            again.append(account)
            continue
        entered, held, mask = row[2:2 + row[1]], {}, 0
        for k in range(2 + row[1], len(row), 4):
            j, borrow_balance = row[k], row[k + 2]
            held[j] = (row[k + 1], borrow_balance, rate[j])
            if borrow_balance and index_now[j] != row[k + 3]:     # None (no borrowIndex()): always read
                mask |= 1 << j
        if mask >= 1 << MASK_BITS:
            again.append(account)       # a market past the lens's mask: read in full
            continue
        figures[account] = entered, held
        if mask:
            moved[account] = mask
    if moved:
        rows = _borrows(reader, moved)
        if rows is None:                # the node stopped taking overrides: read these again
            again += list(moved)
            for account in moved:
                del figures[account]
        else:
            for (account, mask), row in zip(moved.items(), rows, strict=True):
                _, held = figures[account]
                fresh = iter(row)
                for j in range(len(markets)):
                    if mask >> j & 1:
                        ctoken_balance, _, exchange_rate = held[j]
                        held[j] = ctoken_balance, next(fresh), exchange_rate
    return rows_from_figures(reader, figures), again
