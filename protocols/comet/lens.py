"""Comet accounts through our lens (fixtures/contracts/lens: ``CometLens``): one ``eth_call``
reads ``userBasic`` and every collateral balance of hundreds of accounts; the market state is
read once per scan, not once per batch, and the base balances and ``isLiquidatable`` are computed
from both over arrays (:func:`base_balances`), for a full read as for a rescan. The rows are the
ones :meth:`CometReader.read_accounts` builds from Multicall3 (which calls those getters on
chain), and the lens rows are kept for incremental rescans (:func:`refresh_accounts`: an
untouched account is computed, not read)."""

from __future__ import annotations

import binascii
import logging
import operator
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import pyarrow as pa
from eth_utils import function_signature_to_4byte_selector

from analyzer import wideint
from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.kept import objects
from analyzer.lens import encode_arguments, in_batches, masks, read_rows, to_int256
from protocols.base import Rows
from protocols.comet import exact

log = logging.getLogger(__name__)

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")
PRINCIPALS_SELECTOR = function_signature_to_4byte_selector("principals(address,bytes)")
PRINCIPALS_PER_CALL = 4_000     # accounts per principals call to start from (a userBasic call each)
SLOTS_SELECTOR = function_signature_to_4byte_selector("principals(address,uint256,bytes)")
SLOT_PRINCIPALS_PER_CALL = 10_000   # accounts per storage read to start from (a keccak and a cold sload each)
# the slot of Comet's ``userBasic`` mapping: compound-finance/comet CometStorage (after the totals'
# two words, totalsCollateral, isAllowed and userNonce), then our interface-exact Comet
# (fixtures/contracts/comet: totals, assetInfos)
USER_BASIC_SLOTS = (5, 3)
CHECKED = 16                    # accounts whose principals prove the slot
BASE_INDEX_DIGITS = 15          # exact.BASE_INDEX_SCALE = 10^15


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CometLens")["deployedBytecode"]


@cache
def principals_code() -> str:
    return fixture_artifact("comet_lens", "CometPrincipals")["deployedBytecode"]


@cache
def slots_lens_code() -> str:
    return fixture_artifact("comet_lens", "CometPrincipalSlots")["deployedBytecode"]


@cache
def slots_reader_code() -> str:
    return fixture_artifact("comet_lens", "CometUserBasicSlots")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    if reader.ctx.lens is None:
        return None
    accounts = [checksum(a) for a in accounts]      # as the Multicall3 reader names them
    comet = reader.comet
    collaterals = [a["asset"] for a in lens_state(reader)["assets"]]

    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(comet, collaterals, batch, masks(held, batch, collaterals))

    reads = 1 + (len(collaterals) if held is None else 2)   # an account holds a few collaterals
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
    if rows is None:
        return None
    return rows_from_lens(reader, accounts, rows)


def lens_state(reader) -> dict:
    """The market state the lens rows are computed with (:meth:`CometReader.market_state`), once per reader."""
    if getattr(reader, "_lens_state", None) is None:
        reader._lens_state = reader.market_state()
    return reader._lens_state


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
        principal, assets_in = to_int256(row[0]), row[1]
        kept[account] = [principal, *row[1:]]    # signed: an int64 word where it fits (analyzer.kept)
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


def principals(reader, accounts: Sequence[str] | np.ndarray) -> bytes | None:
    """``userBasic(account).principal`` of ``accounts`` (checksummed, or their ASCII bytes:
    :func:`packed_addresses`), packed: 16 bytes each, two's
    complement big-endian (:meth:`protocols.comet.ints.Ints.of_int128s`), 20 bytes per account in;
    None when the node has no lens calls. Read from Comet's storage (``CometPrincipalSlots``: a
    word per account, no call) once the ``userBasic`` slot is proven for the reader
    (:func:`user_basic_slot`), else through the getter (``CometPrincipals``: a ``userBasic`` call
    per account)."""
    slot = user_basic_slot(reader, accounts)
    if slot is None:
        return _principals_read(reader, accounts)
    return _principals_read(reader, accounts, slot)


def _principals_read(reader, accounts: Sequence[str] | np.ndarray, slot: int | None = None) -> bytes | None:
    """The principals of ``accounts``, packed (:func:`principals`), through the getter lens
    (``slot`` None) or from the ``userBasic`` mapping at ``slot``, in batches halved when the node
    runs out of gas (:func:`analyzer.lens.in_batches`)."""
    lens = reader.ctx.lens
    comet = bytes(12) + bytes.fromhex(reader.comet[2:])
    users = packed_addresses(accounts)
    if slot is None:
        code, codes = principals_code(), None
        head = PRINCIPALS_SELECTOR + comet + (64).to_bytes(32, "big")
        first_size = PRINCIPALS_PER_CALL
    else:
        code, codes = slots_lens_code(), {reader.comet: slots_reader_code()}
        head = SLOTS_SELECTOR + comet + slot.to_bytes(32, "big") + (96).to_bytes(32, "big")
        first_size = SLOT_PRINCIPALS_PER_CALL

    def read(start: int, stop: int) -> bytes:
        batch = users[20 * start:20 * stop]
        calldata = head + len(batch).to_bytes(32, "big") + batch + bytes(-len(batch) % 32)
        return lens(code, calldata, codes) if codes else lens(code, calldata)

    def check(start: int, stop: int, raw: bytes) -> None:
        count = stop - start
        if len(raw) < 96 + 16 * count or int.from_bytes(raw[64:96], "big") != 16 * count:
            raise ContagionError(f"the Comet principals lens answered {len(raw)} bytes for {count} accounts")

    answers = in_batches(lens, code, len(accounts), first_size, read, check)
    if answers is None:
        return None
    return b"".join(raw[96:96 + int.from_bytes(raw[64:96], "big")] for raw in answers)


def user_basic_slot(reader, accounts: Sequence[str] | np.ndarray) -> int | None:
    """The slot of Comet's ``userBasic`` mapping, proven once per reader: the first
    :data:`CHECKED` of ``accounts`` (spread over them) read from each of :data:`USER_BASIC_SLOTS` in turn, the first
    slot whose principals equal ``userBasic``'s (through the getter lens) for all of them, one at
    least not zero, taken. None (the getter for every account) when none is proven: another
    layout, or only zero principals among the accounts checked."""
    if "_user_basic_slot" in reader.__dict__:
        return reader._user_basic_slot
    reader._user_basic_slot = None
    sample = accounts[::max(1, len(accounts) // CHECKED)][:CHECKED]     # spread over them
    truth = _principals_read(reader, sample) if len(sample) else None
    if truth is None or not any(truth):
        return None
    for slot in USER_BASIC_SLOTS:
        read = _principals_read(reader, sample, slot)
        if read == truth:
            reader._user_basic_slot = slot
            return slot
    log.warning("comet %s: no userBasic slot of %s gives the getter's principals: reading them through "
                "the getter", reader.comet, USER_BASIC_SLOTS)
    return None


def packed_addresses(accounts: Sequence[str] | np.ndarray) -> bytes:
    """20 bytes per account, of ``0x`` and 40 hex digits each: Python strings, or their ASCII bytes
    as a fixed-width array (:attr:`analyzer.kept.KeptState.names`), whose digits are decoded at
    once (no string made per account). A digit that is not hex raises ValueError."""
    if isinstance(accounts, np.ndarray) and accounts.dtype.kind == "S":
        rows = np.ascontiguousarray(accounts, dtype="S42").view(np.uint8).reshape(len(accounts), 42)
        if len(rows) and not (rows[:, :2] == np.frombuffer(b"0x", dtype=np.uint8)).all():
            raise ValueError("an address without its 0x")
        return binascii.unhexlify(np.ascontiguousarray(rows[:, 2:]).tobytes())
    return bytes.fromhex("".join(accounts).replace("0x", ""))


def chosen(texts: list[str], flags: np.ndarray) -> pa.StringArray:
    """``texts[1]`` where ``flags``, else ``texts[0]``, as Arrow strings."""
    return pa.array(texts, type=pa.string()).take(pa.array(flags.astype(np.int64)))


def stacked(parts: list[np.ndarray]) -> np.ndarray:
    """Limbs of several value columns side by side (as one column of their values in turn)."""
    width = max(len(p) for p in parts)
    return np.concatenate([p if len(p) == width else np.concatenate(
        [p, np.zeros((width - len(p), p.shape[1]), dtype=np.uint64)]) for p in parts], axis=1)


def present_values(size: np.ndarray, negative: np.ndarray, supply_index: int, borrow_index: int) -> np.ndarray:
    """The size of CometCore.presentValue of principals of ``size`` (limbs) and sign ``negative``,
    as limbs: ``size · index // BASE_INDEX_SCALE`` at the supply index, or at the borrow index
    (presentValueBorrow) for a borrow (:func:`protocols.comet.exact.present_value`)."""
    return wideint.scaled_quotients(size, [supply_index, borrow_index], [0, 0], negative.astype(np.int64),
                                    BASE_INDEX_DIGITS)


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
    """Comet.isLiquidatable of each account of signed ``principal`` and collateral balances
    ``held`` (one column per asset of the market state): :func:`_liquidatable`."""
    owner, asset = np.nonzero(held != 0)
    return _liquidatable(state, principal, owner, asset, held[owner, asset])


def _liquidatable(state: dict, principal: np.ndarray, owner: np.ndarray, asset: np.ndarray,
                  amount: np.ndarray) -> np.ndarray:
    """:func:`liquidatable_sparse` of signed ``principal`` and ``amount`` as Python integers (object arrays)."""
    return liquidatable_sparse(state, principal.astype(np.float64), owner, asset, amount.astype(np.float64),
                               lambda rows, entries: (principal[rows], amount[entries]))


def liquidatable_sparse(state: dict, principal: np.ndarray, owner: np.ndarray, asset: np.ndarray, amount: np.ndarray,
                        integers: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Comet.isLiquidatable of each account (:meth:`protocols.comet.exact.CometState.is_liquidatable`)
    of signed principal (``principal``: its float64) holding ``amount`` (float64) of collateral
    ``asset`` (offsets) per ``owner`` (a row of ``principal``): Comet's sum
    (:func:`_liquidatable_exact`) decided in float64 where its sign is certain, and summed as
    Comet does only for the borrowers near the line, of their Python integers
    (``integers(rows, entries)``: the principals at ``rows`` and the amounts at ``entries``).

    The float sum is the real-valued one (no truncation): Comet's truncations take less than
    ``basePrice / baseScale + 1`` from the debt's term and less than 2 from each collateral's
    term, and the float's own rounding is below 1e-12 of the terms' sizes; a borrower whose float
    sum is farther from zero than all of that together has Comet's sign. (A float is correctly
    rounded, so of the integer's sign.)"""
    flagged = np.zeros(len(principal), dtype=bool)
    owing = np.flatnonzero(principal < 0)
    if not len(owing):
        return flagged
    borrower = np.full(len(principal), -1, dtype=np.int64)
    borrower[owing] = np.arange(len(owing))
    mine = np.flatnonzero(borrower[owner] >= 0)
    by, at = borrower[owner[mine]], asset[mine]
    price, base_scale = float(state["prices"][0]), float(state["base_scale"])
    debt = principal[owing] * (float(state["totals"][1]) / exact.BASE_INDEX_SCALE) * price / base_scale
    assets = state["assets"]
    value = (amount[mine] * np.array([float(p) for p in state["prices"][1:]])[at]
             / np.array([float(a["scale"]) for a in assets])[at]
             * np.array([float(a["liquidate_collateral_factor"]) for a in assets])[at] / exact.FACTOR_SCALE)
    credit = np.bincount(by, weights=value, minlength=len(owing))
    liquidity = debt + credit
    slack = 1e-12 * (credit - debt) + price / base_scale + 2 + 2 * np.bincount(by, minlength=len(owing))
    sure = np.abs(liquidity) > slack
    flagged[owing[sure]] = liquidity[sure] < 0
    near = owing[~sure]
    if len(near):
        row = np.full(len(principal), -1, dtype=np.int64)
        row[near] = np.arange(len(near))
        theirs = np.flatnonzero(row[owner] >= 0)
        principals, amounts = integers(near, theirs)
        flagged[near] = _liquidatable_exact(state, principals, row[owner[theirs]], asset[theirs], amounts)
    return flagged


def _liquidatable_exact(state: dict, principal: np.ndarray, owner: np.ndarray, asset: np.ndarray,
                        amount: np.ndarray) -> np.ndarray:
    """Comet.isLiquidatable as Comet sums it, in Python integers: the debt's present value at the
    stored indices in base price units (truncated toward zero), plus each collateral's value times
    its liquidate collateral factor, below zero. Comet leaves its loop once the sum is not
    negative; every term it would add is not negative, so the sum decides alike. Only borrowers
    (principal < 0) are summed."""
    flagged = np.zeros(len(principal), dtype=bool)
    owing = np.flatnonzero(principal < 0)
    if not len(owing):
        return flagged
    supply_index, borrow_index = state["totals"][0], state["totals"][1]
    debt = present_value(principal[owing], supply_index, borrow_index) * state["prices"][0]
    liquidity = -((-debt) // state["base_scale"])       # a negative numerator: toward zero
    borrower = np.full(len(principal), -1, dtype=np.int64)
    borrower[owing] = np.arange(len(owing))
    mine = np.flatnonzero(borrower[owner] >= 0)
    at = asset[mine]
    prices = objects(state["prices"][1:])[at]
    scales = objects([info["scale"] for info in state["assets"]])[at]
    factors = objects([info["liquidate_collateral_factor"] for info in state["assets"]])[at]
    np.add.at(liquidity, borrower[owner[mine]], amount[mine] * prices // scales * factors // exact.FACTOR_SCALE)
    flagged[owing] = liquidity < 0
    return flagged
