"""Aave V3 accounts through our lens (fixtures/contracts/lens: ``AaveV3Lens``): one ``eth_call``
reads the user configuration, e-mode and every non-zero aToken / debt-token scaled balance of
hundreds of accounts. The rows are the ones :meth:`AaveV3Reader.read_accounts` builds from
Multicall3: each balance is the token's ``balanceOf`` (the scaled balance times the reserve's
normalized index, read once per reserve, rounded as the token rounds; stable debt read as is)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, masks, read_rows
from analyzer.multicall import Call
from protocols.base import AccountEvents, Rows

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
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
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
    """Snapshot rows from lens rows, with the lens rows kept as ``_state`` (incremental rescans)."""
    from protocols.aave_v3.reader import PROTOCOL, user_flags

    reserves = reader.reserves()
    positions, account_rows, state = [], [], {}
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        state[account] = row
        config, emode = row[0], row[1]
        supplied: dict[int, int] = {}
        owed: dict[int, int] = {}
        for k in range(2, len(row), 3):
            index, kind = divmod(row[k], 3)
            target = supplied if kind == 0 else owed
            target[index] = target.get(index, 0) + row[k + 2]
        collateral_off, held = [], False
        for index in sorted(supplied.keys() | owed.keys()):     # in reserve order, as read
            r = reserves[index]
            decimals = r["config"]["decimals"]
            if supplied.get(index):
                positions.append(reader._position(account, r["asset"], "collateral", supplied[index], decimals))
                if not user_flags(config, r["id"])[1]:
                    collateral_off.append(r["asset"])
                held = True
            if owed.get(index):
                positions.append(reader._position(account, r["asset"], "debt", owed[index], decimals))
                held = True
        if held:
            # json.dumps({"user_configuration": str(config), "collateral_off": ...}, sort_keys=True),
            # written out: a json.dumps per account was a tenth of the scan's Python time
            off = json.dumps(collateral_off) if collateral_off else "[]"
            account_rows.append({"protocol": PROTOCOL, "market": reader.pool, "account": account, "category": emode,
                                 "params": f'{{"collateral_off": {off}, "user_configuration": "{config}"}}'})
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

    return AccountEvents((pool, *tokens), tuple(sorted({t for t, _ in where})), accounts)


def _ray_mul(version: str):
    """The aToken / debt-token balance rule of the deployment's version: WadRayMath.rayMul (half
    up) before 3.5; TokenMath (aToken rayMulFloor, variable debt rayMulCeil) from 3.5 on."""
    major, minor = (int(x) for x in (version.split(".") + ["0"])[:2])
    if (major, minor) < (3, 5):
        half_up = lambda a, b: (a * b + RAY // 2) // RAY  # noqa: E731
        return half_up, half_up
    return (lambda a, b: a * b // RAY), (lambda a, b: -(-(a * b) // RAY))


def refresh_accounts(reader, previous: dict[str, list[int]]) -> tuple[Rows, list[str]]:
    """Untouched accounts at this block: scaled balances times this block's normalized income and
    variable debt (what ``balanceOf`` computes); an account with stable debt is read again (its
    balance grows at its own rate)."""
    reserves = reader.reserves()
    indices = reader.ctx.multicall([Call(reader.pool, f"{name}(address)(uint256)", (r["asset"],)) for r in reserves
                                    for name in ("getReserveNormalizedIncome", "getReserveNormalizedVariableDebt")])
    income = [indices[2 * i].unwrap("Pool.getReserveNormalizedIncome") for i in range(len(reserves))]
    variable = [indices[2 * i + 1].unwrap("Pool.getReserveNormalizedVariableDebt") for i in range(len(reserves))]
    supply_rule, debt_rule = _ray_mul(str(reader.deployment.get("version", "3.0")))
    accounts, rows, again = [], [], []
    for account, row in previous.items():
        fresh = list(row[:2])
        for k in range(2, len(row), 3):
            index, kind = divmod(row[k], 3)
            if kind == 2:
                break
            rule, by = (supply_rule, income) if kind == 0 else (debt_rule, variable)
            fresh += [row[k], row[k + 1], rule(row[k + 1], by[index])]
        else:
            accounts.append(account)
            rows.append(fresh)
            continue
        again.append(account)
    return rows_from_lens(reader, accounts, rows), again
