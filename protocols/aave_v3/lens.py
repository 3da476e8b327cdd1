"""Aave V3 accounts through our lens (fixtures/contracts/lens: ``AaveV3Lens``): one ``eth_call``
reads the user configuration, e-mode and every non-zero aToken / debt-token balance of hundreds
of accounts. The rows are the ones :meth:`AaveV3Reader.read_accounts` builds from Multicall3:
the lens calls the same getters (``balanceOf`` where the scaled balance is not zero)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import read_rows
from protocols.base import Rows

SELECTOR = function_signature_to_4byte_selector("accounts(address,uint256[],address[],address[])")
ZERO = "0x" + "00" * 20


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "AaveV3Lens")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    from protocols.aave_v3.reader import PROTOCOL, user_flags

    if reader.ctx.lens is None:
        return None
    reserves = reader.reserves()
    accounts = [to_checksum_address(a) for a in accounts]
    ids = [r["id"] for r in reserves]
    tokens = [t if int(t, 16) else ZERO for r in reserves
              for t in (r["aToken"], r["variableDebtToken"], r["stableDebtToken"])]

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + abi_encode(["address", "uint256[]", "address[]", "address[]"],
                                     [reader.pool, ids, tokens, list(batch)])

    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=2 + len(reserves))
    if rows is None:
        return None
    positions, account_rows = [], []
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        config, emode = row[0], row[1]
        supplied: dict[int, int] = {}
        owed: dict[int, int] = {}
        for k in range(2, len(row), 3):
            index, kind = divmod(row[k], 3)
            target = supplied if kind == 0 else owed
            target[index] = target.get(index, 0) + row[k + 2]
        collateral_off, held = [], False
        for index, r in enumerate(reserves):
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
            params = {"user_configuration": str(config), "collateral_off": collateral_off}
            account_rows.append({"protocol": PROTOCOL, "market": reader.pool, "account": account, "category": emode,
                                 "params": json.dumps(params, sort_keys=True)})
    return {"positions": positions, "accounts": account_rows}
