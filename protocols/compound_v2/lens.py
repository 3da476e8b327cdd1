"""Compound V2 accounts through our lens (fixtures/contracts/lens: ``CompoundV2Lens``): one
``eth_call`` reads ``getAssetsIn`` and every non-empty ``getAccountSnapshot`` of hundreds of
accounts. The rows are the ones :meth:`CompoundV2Reader.read_accounts` builds from Multicall3."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.lens import encode_arguments, masks, read_rows
from protocols.base import Rows
from protocols.compound_v2.constants import MANTISSA, PROTOCOL

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CompoundV2Lens")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    if reader.ctx.lens is None:
        return None
    markets = reader.markets()
    accounts = [a if a != a.lower() else to_checksum_address(a) for a in accounts]  # checksumming costs
    ctokens = [m["ctoken"] for m in markets]

    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(reader.comptroller, ctokens, batch, masks(held, batch, ctokens))

    reads = 1 + (len(markets) if held is None else 3)   # an account holds a few markets
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
    if rows is None:
        return None
    positions, account_rows = [], []
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        entered = row[1:1 + row[0]]
        opened = False
        for k in range(1 + row[0], len(row), 5):
            j, error, ctoken_balance, borrow_balance, exchange_rate = row[k:k + 5]
            m = markets[j]
            if error != 0:
                raise ContagionError(f"compound-v2: getAccountSnapshot({account}) failed on {m['ctoken']}")
            scale = 10 ** m["underlying_decimals"]
            base = {"protocol": PROTOCOL, "market": reader.comptroller, "account": account, "asset": m["underlying"],
                    "reserve": m["ctoken"]}
            if ctoken_balance:
                positions.append({**base, "side": "collateral", "raw": str(ctoken_balance),
                                  "amount": ctoken_balance * exchange_rate / MANTISSA / scale})
            if borrow_balance:
                positions.append({**base, "side": "debt", "raw": str(borrow_balance),
                                  "amount": borrow_balance / scale})
            opened = opened or bool(ctoken_balance or borrow_balance)
        if opened:
            params = {"entered": [markets[j]["ctoken"] for j in entered]}
            account_rows.append({"protocol": PROTOCOL, "market": reader.comptroller, "account": account,
                                 "category": 0, "params": json.dumps(params)})
    return {"positions": positions, "accounts": account_rows}
