"""Aave V3 accounts through our lens (fixtures/contracts/lens: ``AaveV3Lens``): one ``eth_call``
reads the user configuration, e-mode and every non-zero aToken / debt-token scaled balance of
hundreds of accounts. The rows are the ones :meth:`AaveV3Reader.read_accounts` builds from
Multicall3: each balance is the token's ``balanceOf`` (the scaled balance times the reserve's
normalized index, read once per reserve, rounded as the token rounds; stable debt read as is).
The same rows are read straight from storage where the getters prove the slots
(:mod:`.slots`, ``AaveV3SlotLens``), through the getters otherwise."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer import wideint
from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.kept import KeptState, Refreshed, objects
from analyzer.lens import encode_arguments, masks, read_rows
from analyzer.multicall import Call
from analyzer.textcolumns import arrow_text, labels, repeated, text
from protocols.aave_v3.slots import read_rows_from_slots
from protocols.base import AccountEvents, EventField, Rows

SELECTOR = function_signature_to_4byte_selector("accounts(address,uint256[],address[],address[],uint256[])")
ZERO = "0x" + "00" * 20
RAY = 10**27


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "AaveV3Lens")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""

    if reader.ctx.lens is None:
        return None
    reserves = reader.reserves()
    accounts = [a if a != a.lower() else to_checksum_address(a) for a in accounts]  # checksumming costs
    ids = [r["id"] for r in reserves]
    tokens = [t if int(t, 16) else ZERO for r in reserves
              for t in (r["aToken"], r["variableDebtToken"], r["stableDebtToken"])]

    a_tokens = [r["aToken"] for r in reserves]
    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(reader.pool, ids, tokens, batch, masks(held, batch, a_tokens))

    reads = 2 + (len(reserves) if held is None else 4)   # an account holds a few reserves

    def getter_rows(batch: Sequence[str]) -> list[list[int]] | None:
        return read_rows(reader.ctx.lens, lens_code(), encode, batch, reads_per_account=reads)

    rows = read_rows_from_slots(reader, accounts, ids, tokens, getter_rows) or getter_rows(accounts)
    if rows is None:
        return None
    return rows_from_lens(reader, accounts, with_balances(reader, rows))


def normalized_indices(reader) -> list[tuple[int, int]]:
    """Per reserve (in ``reserves()`` order): the Pool's normalized income and normalized variable
    debt at the scan's block (``getReserveNormalizedIncome`` / ``getReserveNormalizedVariableDebt``:
    what ``balanceOf`` multiplies a scaled balance by), read once per reader."""
    known = getattr(reader, "_normalized_indices", None)
    if known is not None:
        return known
    reserves = reader.reserves()
    answers = reader.ctx.multicall([Call(reader.pool, f"{name}(address)(uint256)", (r["asset"],)) for r in reserves
                                    for name in ("getReserveNormalizedIncome", "getReserveNormalizedVariableDebt")])
    known = [(answers[2 * i].unwrap(f"Pool.getReserveNormalizedIncome({r['asset']})"),
              answers[2 * i + 1].unwrap(f"Pool.getReserveNormalizedVariableDebt({r['asset']})"))
             for i, r in enumerate(reserves)]
    reader._normalized_indices = known
    return known


def with_balances(reader, rows: list[list[int]]) -> list[list[int]]:
    """Lens rows with each aToken and variable-debt balance filled in (the lens gives the scaled
    balance and 0): the scaled balance times the reserve's normalized income or variable debt,
    rounded as the pool's version rounds (:func:`_ray_mul`), which is what the token's
    ``balanceOf`` answers at that block."""
    indices = normalized_indices(reader)
    supply_rule, debt_rule = _ray_mul(reader.version)
    for row in rows:
        for k in range(2, len(row), 3):
            index, kind = divmod(row[k], 3)
            if kind == 0:
                row[k + 2] = supply_rule(row[k + 1], indices[index][0])
            elif kind == 1:
                row[k + 2] = debt_rule(row[k + 1], indices[index][1])
    return rows


def rows_from_lens(reader, accounts: Sequence[str], rows: Sequence[list[int]]) -> Rows:
    """Snapshot rows from lens rows, as columns (:data:`analyzer.model.Columns`), with the lens
    rows kept as ``_state`` (incremental rescans)."""
    from protocols.aave_v3.reader import PROTOCOL

    # per key 2i (reserve i supplied) and 2i + 1 (owed: variable + stable): asset, 10^decimals,
    # side, and the user configuration's collateral bit of a supply (bit 2·id + 1, reader.user_flags)
    reserves = reader.reserves()
    asset_of = [r["asset"] for r in reserves for _ in range(2)]
    scale_of = [10 ** r["config"]["decimals"] for r in reserves for _ in range(2)]
    side_of = ["collateral", "debt"] * len(reserves)
    bit_of = [bit for r in reserves for bit in (1 << (2 * r["id"] + 1), 0)]
    owners, held_keys, balances = [], [], []                # per position: the account, its key, its raw amount
    holders, categories, params, state = [], [], [], {}     # the accounts' columns
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        state[account] = row
        config = row[0]
        held: dict[int, int] = {}
        for k in range(2, len(row), 3):
            index, kind = divmod(row[k], 3)
            key = 2 * index + (kind != 0)
            held[key] = held.get(key, 0) + row[k + 2]
        collateral_off, opened = [], False
        for key in sorted(held) if len(held) > 1 else held:   # in reserve order; a reserve's supply before its debt
            amount = held[key]
            if not amount:
                continue
            owners.append(account)
            held_keys.append(key)
            balances.append(amount)
            if bit_of[key] and not config & bit_of[key]:
                collateral_off.append(asset_of[key])
            opened = True
        if opened:
            # json.dumps({"user_configuration": str(config), "collateral_off": ...}, sort_keys=True),
            # written out: a json.dumps per account was a tenth of the scan's Python time
            off = json.dumps(collateral_off) if collateral_off else "[]"
            holders.append(account)
            categories.append(row[1])
            params.append(f'{{"collateral_off": {off}, "user_configuration": "{config}"}}')
    positions = {"protocol": [PROTOCOL] * len(owners), "market": [reader.pool] * len(owners), "account": owners,
                 "asset": list(map(asset_of.__getitem__, held_keys)), "side": list(map(side_of.__getitem__, held_keys)),
                 # analyzer.model.raw_to_amount: int / int, correctly rounded
                 "amount": list(map(operator.truediv, balances, map(scale_of.__getitem__, held_keys))),
                 "raw": list(map(str, balances))}
    account_rows = {"protocol": [PROTOCOL] * len(holders), "market": [reader.pool] * len(holders),
                    "account": holders, "category": categories, "params": params}
    return {"positions": positions, "accounts": account_rows, "_state": state}  # type: ignore[dict-item]


# Every event that changes what the lens reads of an account: the Pool's user events (topic of the
# user) and the Transfer of every aToken and debt token (mints and burns included: from / to).
POOL_EVENTS: dict[str, tuple[int, ...]] = {
    "Supply(address,address,address,uint256,uint16)": (2,),
    "Withdraw(address,address,address,uint256)": (2,),
    "Borrow(address,address,address,uint256,uint8,uint256,uint16)": (2,),
    "Repay(address,address,address,uint256,bool)": (2,),
    "SwapBorrowRateMode(address,address,uint8)": (2,),
    "RebalanceStableBorrowRate(address,address)": (2,),
    "ReserveUsedAsCollateralEnabled(address,address)": (2,),
    "ReserveUsedAsCollateralDisabled(address,address)": (2,),
    "UserEModeSet(address,uint8)": (1,),
    "LiquidationCall(address,address,address,uint256,uint256,address,bool)": (3,),
    "DeficitCreated(address,address,uint256)": (1,),
}
TOKEN_EVENTS: dict[str, tuple[int, ...]] = {"Transfer(address,address,uint256)": (1, 2), "BalanceTransfer(address,address,uint256,uint256)": (1, 2)}


def change_events(reader) -> AccountEvents:
    pool = reader.pool
    tokens = tuple(t for r in reader.reserves() for t in (r["aToken"], r["variableDebtToken"], r["stableDebtToken"])
                   if int(t, 16))
    where = {("0x" + keccak(text=sig).hex(), True): idx for sig, idx in POOL_EVENTS.items()}
    where.update({("0x" + keccak(text=sig).hex(), False): idx for sig, idx in TOKEN_EVENTS.items()})

    def accounts(log: dict) -> list[str]:
        topics = [bytes(t) if not isinstance(t, str) else bytes.fromhex(t[2:]) for t in log["topics"]]
        at_pool = checksum(log["address"]) == pool
        indexes = where.get(("0x" + topics[0].hex(), at_pool), ()) if topics else ()
        found = [checksum(topics[i][-20:]) for i in indexes if i < len(topics)]
        return [a for a in found if int(a, 16)]

    # an aToken balance becomes non-zero only by a mint or a transfer to the account, each a
    # Transfer(from, to) of the aToken (ScaledBalanceTokenBase._mintScaled / _transfer, every 3.x)
    a_tokens = {checksum(r["aToken"]) for r in reader.reserves()}
    transfer = bytes(keccak(text="Transfer(address,address,uint256)"))

    def holdings(log: dict) -> list[tuple[str, str]]:
        token = checksum(log["address"])
        topics = [bytes(t) if not isinstance(t, str) else bytes.fromhex(t[2:]) for t in log["topics"]]
        if token not in a_tokens or len(topics) < 3 or topics[0] != transfer or not int.from_bytes(topics[2], "big"):
            return []
        return [(checksum(topics[2][-20:]), token)]

    # the same declared, for discovery to decode every log of a range at once
    fields = tuple(EventField("0x" + keccak(text=sig).hex(), emitters, topic=i, skip_zero=True)
                   for events, emitters in ((POOL_EVENTS, (pool,)), (TOKEN_EVENTS, tokens))
                   for sig, indexes in events.items() for i in indexes)
    received = EventField("0x" + transfer.hex(), tuple(sorted(a_tokens)), topic=2, skip_zero=True)
    return AccountEvents((pool, *tokens), tuple(sorted({t for t, _ in where})), accounts, holdings,
                         account_fields=fields, holding_fields=(received,))


def kept_holdings(reader, kept: KeptState) -> dict[str, list[str]]:
    """The aTokens each kept account held (a record of an aToken balance, by its reserve in
    ``reserves()``: every non-zero one the lens read)."""
    reserves = reader.reserves()
    owner, at = kept.entries(2, 3)
    code, _ = kept.ints(at)
    index, kind = code // 3, code % 3
    held = (kind == 0) & (index < len(reserves))
    out: dict[str, list[str]] = {account: [] for account in kept.accounts.tolist()}
    names = kept.accounts
    for who, r in zip(owner[held].tolist(), index[held].tolist(), strict=True):
        out[names[who]].append(reserves[r]["aToken"])
    return out


def _ray_mul(version: str):
    """The aToken / debt-token balance rule of the deployment's version: WadRayMath.rayMul (half
    up) before 3.5; TokenMath (aToken rayMulFloor, variable debt rayMulCeil) from 3.5 on."""
    major, minor = (int(x) for x in (version.split(".") + ["0"])[:2])
    if (major, minor) < (3, 5):
        half_up = lambda a, b: (a * b + RAY // 2) // RAY  # noqa: E731
        return half_up, half_up
    # ceil(a·b / RAY) of non-negative integers, one operation fewer than -(-(a·b) // RAY)
    return (lambda a, b: a * b // RAY), (lambda a, b: (a * b + (RAY - 1)) // RAY)


def refresh_accounts(reader, previous: KeptState) -> Refreshed:
    """Untouched accounts at this block, at once over arrays: their rows of each kept record's
    balance at this block (:func:`kept_balances`, which names the accounts read again in full).

    The balances are exact wide integers as numpy limbs (:mod:`analyzer.wideint`), their text and
    floats written from the limbs: on mainnet-scale (115,639 positions, half past 2^64) a sixth
    of the time of Python integers in object arrays (their product, ``str`` and ``int / int``)."""
    from protocols.aave_v3.reader import PROTOCOL

    reserves = reader.reserves()
    owner, index, kind, balance, again = kept_balances(reader, previous)
    if again.any():
        keep = np.flatnonzero(~again[owner])
        owner, index, kind, balance = owner[keep], index[keep], kind[keep], wideint.taken(balance, keep)
    decimals = np.array([r["config"]["decimals"] for r in reserves], dtype=np.int64)
    names, n = arrow_text(previous.accounts), len(owner)      # converted once, labelling both tables
    positions = pd.DataFrame({
        "protocol": repeated(PROTOCOL, n), "market": repeated(reader.pool, n), "account": labels(names, owner),
        "asset": labels([r["asset"] for r in reserves], index), "reserve": repeated("", n),
        "side": labels(("collateral", "debt"), kind), "amount": wideint.quotient_floats(balance, decimals[index]),
        "raw": text(wideint.decimal_text(balance))})
    accounts = _account_rows(reader, previous, names, owner, index, kind)
    # every computed account's words are the ones kept (a balance word is never read back: a rescan
    # computes it from the scaled one), so they are kept by reference, none written again
    return Refreshed({"positions": positions, "accounts": accounts}, KeptState.empty(),
                     previous.accounts[again].tolist(), carried=~again)


class KeptBalances(NamedTuple):
    """Every record of kept accounts (a reserve's aToken or debt-token balance) at this block
    (:func:`kept_balances`); a record of an account read ``again`` holds what it may."""

    owner: np.ndarray       # int64 per record: its account's place in the kept state
    index: np.ndarray       # int64 per record: its reserve's place in ``reserves()``
    kind: np.ndarray        # int64 per record: 0 aToken, 1 variable debt
    balance: np.ndarray     # per record: ``balanceOf`` at this block, limbs (analyzer.wideint)
    again: np.ndarray       # bool per kept account: read again in full


def kept_balances(reader, kept: KeptState) -> KeptBalances:
    """Each kept record's balance at this block: its scaled balance times this block's
    normalized income (aTokens) or variable debt (debt tokens), by the pool version's rule
    (:func:`balances`: what ``balanceOf`` computes). Read again: an account with stable debt (its
    balance grows at its own rate), one holding a reserve past the pool's list or with a word no
    lens writes (past int64, negative), one whose balance came to zero (its rows would change
    shape). What both rescans of untouched accounts compute (:func:`refresh_accounts`,
    :func:`protocols.aave_v3.carry.carry_accounts`)."""
    reserves = reader.reserves()
    owner, at = kept.entries(2, 3)
    code, odd = kept.ints(at)      # a record's reserve and kind (odd: past int64, never a lens's)
    scaled, negative = kept.limbs(at + 1)
    index, kind = code // 3, code % 3
    again = np.zeros(len(kept), dtype=bool)
    again[owner[(kind == 2) | (index >= len(reserves)) | (index < 0) | odd | negative]] = True
    index, kind = np.minimum(index.clip(0), len(reserves) - 1), kind.clip(0, 1)
    # read once per reader: the accounts the rescan reads in full use them too (with_balances)
    balance = balances(reader.version, normalized_indices(reader), scaled, index, kind)
    again[owner[wideint.is_zero(balance)]] = True
    return KeptBalances(owner, index, kind, balance, again)


def _account_rows(reader, previous: KeptState, names, owner: np.ndarray, index: np.ndarray,
                  kind: np.ndarray) -> pd.DataFrame:
    """The accounts rows of the accounts that hold a position (``owner`` of each position), as
    :func:`rows_from_lens` writes them: e-mode, and the user configuration with the supplied
    reserves whose collateral flag is off. Accounts share a few thousand configurations (60,000
    accounts, 8,000 on mainnet-scale): each is tested and written once, its text taken by Arrow."""
    from protocols.aave_v3.reader import PROTOCOL

    reserves = reader.reserves()
    held = np.flatnonzero(np.bincount(owner, minlength=len(previous)))
    starts = previous.starts[held]
    limbs, _ = previous.limbs(starts)       # user configurations: bitmaps, never negative
    codes, first = wideint.factorized(limbs)
    configs = wideint.taken(limbs, first)
    code_of = np.zeros(len(previous), dtype=np.int64)
    code_of[held] = codes
    supplied = np.flatnonzero(kind == 0)
    # the collateral flag of each supplied reserve, tested once per (configuration, reserve)
    pair = code_of[owner[supplied]] * len(reserves) + index[supplied]
    seen = np.zeros(len(first) * len(reserves), dtype=bool)
    seen[pair] = True
    pairs = np.flatnonzero(seen)
    off_of = np.zeros(len(seen), dtype=bool)
    off_of[pairs] = ~_flags(configs, pairs // len(reserves), np.array([2 * r["id"] + 1 for r in reserves])[
        pairs % len(reserves)])
    flag_off = supplied[off_of[pair]]
    off: dict[int, list[str]] = {}
    for who, k in zip(owner[flag_off].tolist(), index[flag_off].tolist(), strict=True):
        off.setdefault(who, []).append(reserves[k]["asset"])      # entries in reserve order, as read
    # json.dumps({"collateral_off": [...], "user_configuration": str(config)}, sort_keys=True), written
    # out: once per configuration (its text from its limbs), and once per account with a flag off (a few)
    texts = wideint.decimal_text(configs)
    params = pc.binary_join_element_wise('{"collateral_off": [], "user_configuration": "', texts, '"}', "")
    param_of = codes.astype(np.int64)
    row_of = np.zeros(len(previous), dtype=np.int64)
    row_of[held] = np.arange(len(held))
    more: list[str] = []
    config = previous.values(starts[row_of[list(off)]]).tolist() if off else []
    for (who, assets), value in zip(off.items(), config, strict=True):
        param_of[row_of[who]] = len(params) + len(more)
        more.append(f'{{"collateral_off": {json.dumps(assets)}, "user_configuration": "{value}"}}')
    if more:
        params = pa.concat_arrays([params, pa.array(more, type=pa.string())])
    return pd.DataFrame({"protocol": repeated(PROTOCOL, len(held)), "market": repeated(reader.pool, len(held)),
                         "account": text(names) if len(held) == len(names) else labels(names, held),
                         "category": previous.ints(starts + 1)[0],
                         "params": labels(params, param_of)})


def _flags(configs: np.ndarray, which: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Bit ``bits[i]`` of configuration ``which[i]`` (limbs, :mod:`analyzer.wideint`), as booleans:
    over the configurations' two 64-bit halves below 10^32 (2^106: 53 reserves), by Python past it."""
    configs = wideint.trimmed(configs)
    if len(configs) > 4:
        return ((wideint.to_ints(configs)[which] >> objects(bits.tolist())) & 1) == 1
    low, high = wideint.halves(configs)
    word = np.where(bits < 64, low[which], high[which])
    return ((word >> (bits % 64).astype(np.uint64)) & np.uint64(1)) == 1


def balances(version: str, indices: Sequence[tuple[int, int]], scaled: np.ndarray, index: np.ndarray,
             debt: np.ndarray) -> np.ndarray:
    """``balanceOf`` of scaled balances (limbs, :mod:`analyzer.wideint`) at the reserves' indices
    (``indices[index]``: normalized income, normalized variable debt), aTokens (``debt`` 0) and
    variable debt (1), exact, as limbs: the scaled balance times the index over 10^27, rounded
    by the version's rule (:func:`_ray_mul`): half up before 3.5, then down for an aToken, up
    for variable debt."""
    major, minor = (int(x) for x in (version.split(".") + ["0"])[:2])
    rounding = (RAY // 2, RAY // 2) if (major, minor) < (3, 5) else (0, RAY - 1)
    factors = [value for pair in indices for value in pair]
    return wideint.scaled_quotients(scaled, factors, list(rounding) * len(indices), 2 * index + debt, 27)
