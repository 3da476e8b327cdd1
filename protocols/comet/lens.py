"""Comet accounts through our lens (fixtures/contracts/lens: ``CometLens``): one ``eth_call``
reads ``userBasic`` and every collateral balance of hundreds of accounts; the market state is
read once per scan, not once per batch, and the base balances and ``isLiquidatable`` are computed
from both over arrays (:func:`base_balances`), for a full read as for a rescan. The rows are the
ones :meth:`CometReader.read_accounts` builds from Multicall3 (which calls those getters on
chain), and the lens rows are kept for incremental rescans (:func:`refresh_accounts`: an
untouched account is computed, not read)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
from eth_utils import function_signature_to_4byte_selector

from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.kept import KeptState, Refreshed, exact_amounts, objects
from analyzer.lens import encode_arguments, masks, read_rows, to_int256
from analyzer.textcolumns import Texts, arrow_text, decimal_strings, joined, labels, repeated, text
from protocols.base import Rows
from protocols.comet import exact

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")
PRINCIPALS_SELECTOR = function_signature_to_4byte_selector("principals(address,address[])")


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CometLens")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    if reader.ctx.lens is None:
        return None
    accounts = [checksum(a) for a in accounts]      # as the Multicall3 reader names them
    if getattr(reader, "_lens_state", None) is None:
        reader._lens_state = reader.market_state()
    comet = reader.comet
    collaterals = [a["asset"] for a in reader._lens_state["assets"]]

    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(comet, collaterals, batch, masks(held, batch, collaterals))

    reads = 1 + (len(collaterals) if held is None else 2)   # an account holds a few collaterals
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
    if rows is None:
        return None
    return rows_from_lens(reader, accounts, rows)


def rows_from_lens(reader, accounts: Sequence[str], rows: Sequence[list[int]]) -> Rows:
    """Snapshot rows from lens rows, as columns (:data:`analyzer.model.Columns`), with the lens
    rows kept as ``_state`` (incremental rescans). The base balances and ``isLiquidatable`` are
    computed from the rows' principals and collateral balances (:func:`base_balances`)."""
    from protocols.comet.reader import PROTOCOL

    state, comet = reader._lens_state, reader.comet
    # per asset (the base first, then each collateral): its address and 10^decimals
    asset_of = [state["base_token"], *(a["asset"] for a in state["assets"])]
    scale_of = [10 ** d for d in state["decimals"]]
    owners, held, sides, balances = [], [], [], []      # per position: the account, its asset, side, raw amount
    holders, params, kept = [], [], {}                  # the accounts' columns
    full = [row for row in rows if row]
    words = np.array(full, dtype=object).reshape(len(full), 5 + len(state["assets"]))
    computed = zip(*(column.tolist() for column in base_balances(state, signed(words[:, 0]), words[:, 5:])),
                   strict=True)
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        kept[account] = list(row)
        principal, assets_in = to_int256(row[0]), row[1]
        borrowed, supplied, liquidatable = next(computed)
        # json.dumps({"principal": str(principal), "assets_in": assets_in, "is_liquidatable": bool(...)}),
        # written out: tens of thousands of accounts per rescan
        holders.append(account)
        params.append(f'{{"principal": "{principal}", "assets_in": {int(assets_in)}, '
                      f'"is_liquidatable": {"true" if liquidatable else "false"}}}')
        if borrowed:
            owners.append(account)
            held.append(0)
            sides.append("debt")
            balances.append(borrowed)
        if supplied:
            owners.append(account)
            held.append(0)
            sides.append("collateral")
            balances.append(supplied)
        for i in range(5, len(row)):
            if row[i]:
                owners.append(account)
                held.append(i - 4)
                sides.append("collateral")
                balances.append(row[i])
    positions = {"protocol": [PROTOCOL] * len(owners), "market": [comet] * len(owners), "account": owners,
                 "asset": list(map(asset_of.__getitem__, held)), "side": sides,
                 # analyzer.model.raw_to_amount: int / int, correctly rounded
                 "amount": list(map(operator.truediv, balances, map(scale_of.__getitem__, held))),
                 "raw": list(map(str, balances))}
    account_rows = {"protocol": [PROTOCOL] * len(holders), "market": [comet] * len(holders), "account": holders,
                    "category": [0] * len(holders), "params": params}
    return {"positions": positions, "accounts": account_rows, "_state": kept}  # type: ignore[dict-item]


def _principals(reader, accounts: Sequence[str]) -> list[int] | None:
    """``userBasic(account).principal`` of ``accounts`` (``CometLens.principals``); None when the
    node has no lens calls."""
    def encode(batch: Sequence[str]) -> bytes:
        return PRINCIPALS_SELECTOR + encode_arguments(reader.comet, batch)

    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=1)
    return None if rows is None else [to_int256(row[0]) for row in rows]


def refresh_accounts(reader, previous: KeptState) -> Refreshed:
    """Untouched accounts at this block, at once over arrays. Comet keeps each account's
    principal, ``assetsIn`` and collateral balances; events name every change of the collateral
    and of a supplier's principal, but not a base transfer's borrow (``transferBase`` emits
    ``Transfer(src, 0)`` only for the supply src gives up, ``Transfer(0, dst)`` only for the supply
    dst gains). So a kept supplier (principal > 0) is computed without a read, and every other
    account has only its principal read again (``CometLens.principals``). Then ``borrowBalanceOf``
    / ``balanceOf`` are the principal's present value at this block's accrued indices
    (CometCore.presentValue), and ``isLiquidatable`` is Comet's sum at this block's prices over the
    stored indices (:func:`liquidatable`). An account kept with more collateral assets than the
    market now lists is read again in full."""
    from protocols.comet.reader import PROTOCOL

    if getattr(reader, "_lens_state", None) is None:
        reader._lens_state = reader.market_state()
    state, comet = reader._lens_state, reader.comet
    n = len(state["assets"])
    again = previous.lengths - 5 > n
    principal = signed(previous.column(0))
    moved = np.zeros(len(previous), dtype=bool)
    unseen = ~again & (principal <= 0)           # a borrow may have moved without an event
    if unseen.any():
        read = _principals(reader, previous.accounts[unseen].tolist()) if reader.ctx.lens is not None else None
        if read is None:                         # no lens calls: read them again in full
            again |= unseen
        else:
            fresh = objects(read)
            moved[unseen] = fresh != principal[unseen]
            principal[unseen] = fresh
    held = np.full((len(previous), n), 0, dtype=object)
    owner, at = previous.entries(5, 1)
    fits = ~again[owner]
    held[owner[fits], (at - previous.starts[owner] - 5)[fits]] = previous.words[at[fits]]
    # nothing open: no rows, as the lens gives none
    keep = ~again & ((principal != 0) | (held != 0).any(axis=1))
    # an account's words hold at this block as kept unless its principal moved or the market lists
    # more collateral assets than when it was read (its words are then padded to them)
    carried = keep & ~moved & (previous.lengths == 5 + n)
    changed = ~carried[keep]
    principal, held, assets_in = principal[keep], held[keep], previous.column(1)[keep]
    names = previous.accounts[keep]
    accounts = arrow_text(names)        # converted once, labelling both tables
    borrowed, supplied, flagged = base_balances(state, principal, held)
    # kept, of the accounts whose words changed: the principal (signed), assetsIn and the collateral;
    # what a rescan computes from them is left 0 (the base balances, isLiquidatable)
    zeros = np.zeros(int(changed.sum()), dtype=np.int64).astype(object)
    words = np.concatenate([np.column_stack([principal[changed], assets_in[changed], zeros, zeros, zeros]),
                            held[changed]], axis=1)
    kept = KeptState(names[changed], np.full(len(zeros), 5 + n, dtype=np.int64), words.ravel())
    # as rows_from_lens writes them
    params = joined('{"principal": "', decimal_strings(principal), '", "assets_in": ', decimal_strings(assets_in),
                    ', "is_liquidatable": ', np.where(flagged, "true", "false").astype(object), "}")
    m = len(accounts)
    account_rows = pd.DataFrame({"protocol": repeated(PROTOCOL, m), "market": repeated(comet, m), "account": text(accounts),
                                 "category": np.zeros(m, dtype=np.int64), "params": params})
    base, decimals = state["base_token"], state["decimals"]
    columns = [(base, "debt", borrowed, decimals[0]), (base, "collateral", supplied, decimals[0])]
    columns += [(a["asset"], "collateral", held[:, i], decimals[i + 1]) for i, a in enumerate(state["assets"])]
    positions = _positions(comet, accounts, columns)
    return Refreshed({"positions": positions, "accounts": account_rows}, kept, previous.accounts[again].tolist(),
                     carried=carried)


def _positions(comet: str, accounts: Texts, columns: list[tuple[str, str, np.ndarray, int]]) -> pd.DataFrame:
    """The rows of each (asset, side, raw per account, decimals) of ``columns`` in turn, of the
    accounts whose ``raw`` is not zero, as one frame."""
    from protocols.comet.reader import PROTOCOL

    some = [np.flatnonzero(raw != 0) for _, _, raw, _ in columns]
    counts = np.array([len(rows) for rows in some], dtype=np.int64)
    which = np.repeat(np.arange(len(columns)), counts)
    raw = np.concatenate([column[2][rows] for column, rows in zip(columns, some, strict=True)] or [objects([])])
    n = len(raw)
    return pd.DataFrame({"protocol": repeated(PROTOCOL, n), "market": repeated(comet, n),
                         "account": labels(accounts, np.concatenate(some) if some else np.zeros(0, dtype=np.int64)),
                         "asset": labels([asset for asset, _, _, _ in columns], which), "reserve": repeated("", n),
                         "side": labels([side for _, side, _, _ in columns], which),
                         "amount": exact_amounts(raw, np.array([d for _, _, _, d in columns], dtype=np.int64)[which]),
                         "raw": text(decimal_strings(raw))})


def signed(words: np.ndarray) -> np.ndarray:
    """Two's complement words as signed integers (object arrays)."""
    out = words.copy()
    negative = out >= 1 << 255
    out[negative] = out[negative] - (1 << 256)
    return out


def base_balances(state: dict, principal: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per account of signed ``principal`` and collateral balances ``held`` (one column per asset
    of the market state): ``borrowBalanceOf`` and ``balanceOf`` (CometCore.presentValue at this
    block's accrued indices, as both getters take it) and ``isLiquidatable`` (:func:`liquidatable`)."""
    value = present_value(principal, state["supply_index"], state["borrow_index"])
    return np.where(value < 0, -value, 0), np.where(value > 0, value, 0), liquidatable(state, principal, held)


def present_value(principal: np.ndarray, supply_index: int, borrow_index: int) -> np.ndarray:
    """CometCore.presentValue over signed principals (:func:`protocols.comet.exact.present_value`)."""
    out = np.empty(len(principal), dtype=object)
    lent = principal >= 0
    out[lent] = principal[lent] * supply_index // exact.BASE_INDEX_SCALE
    out[~lent] = -((-principal[~lent]) * borrow_index // exact.BASE_INDEX_SCALE)
    return out


def liquidatable(state: dict, principal: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Comet.isLiquidatable of each account (:meth:`protocols.comet.exact.CometState.is_liquidatable`):
    the debt's present value at the stored indices in base price units (truncated toward zero),
    plus each collateral's value times its liquidate collateral factor, below zero. Comet leaves
    its loop once the sum is not negative; every term it would add is not negative, so the sum
    decides alike."""
    supply_index, borrow_index = state["totals"][0], state["totals"][1]
    owing = np.flatnonzero(principal < 0)
    debt = present_value(principal[owing], supply_index, borrow_index) * state["prices"][0]
    liquidity = -((-debt) // state["base_scale"])       # a negative numerator: toward zero
    for i, info in enumerate(state["assets"]):
        amount = held[owing, i]
        some = np.flatnonzero(amount != 0)
        value = amount[some] * state["prices"][i + 1] // info["scale"]
        liquidity[some] += value * info["liquidate_collateral_factor"] // exact.FACTOR_SCALE
    flagged = np.zeros(len(principal), dtype=bool)
    flagged[owing] = liquidity < 0
    return flagged
