"""Comet accounts through our lens (fixtures/contracts/lens: ``CometLens``): one ``eth_call``
reads ``userBasic``, the base balances, ``isLiquidatable`` and every collateral balance of
hundreds of accounts; the market state is read once per scan, not once per batch. The rows are
the ones :meth:`CometReader.read_accounts` builds from Multicall3."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector

from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, masks, read_rows, to_int256
from protocols.base import Rows

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],address[],uint256[])")


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "CometLens")["deployedBytecode"]


def read_accounts(reader, accounts: Sequence[str]) -> Rows | None:
    """The reader's rows for ``accounts`` through the lens; None when the node has no lens calls."""
    from protocols.comet.reader import PROTOCOL

    if reader.ctx.lens is None:
        return None
    accounts = [checksum(a) for a in accounts]      # as the Multicall3 reader names them
    if getattr(reader, "_lens_state", None) is None:
        reader._lens_state = reader.market_state()
    state, comet = reader._lens_state, reader.comet
    base, decimals = state["base_token"], state["decimals"]
    collaterals = [a["asset"] for a in state["assets"]]

    held = reader.holdings

    def encode(batch: Sequence[str]) -> bytes:
        return SELECTOR + encode_arguments(comet, collaterals, batch, masks(held, batch, collaterals))

    reads = 5 + (len(collaterals) if held is None else 2)   # an account holds a few collaterals
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
    if rows is None:
        return None
    positions, account_rows = [], []
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        principal, assets_in, borrowed, supplied, liquidatable = to_int256(row[0]), *row[1:5]
        account_rows.append({"protocol": PROTOCOL, "market": comet, "account": account, "category": 0,
                             "params": json.dumps({"principal": str(principal), "assets_in": assets_in,
                                                   "is_liquidatable": bool(liquidatable)})})
        if borrowed:
            positions.append(reader._position(comet, account, base, "debt", borrowed, decimals[0]))
        if supplied:
            positions.append(reader._position(comet, account, base, "collateral", supplied, decimals[0]))
        for i, amount in enumerate(row[5:]):
            if amount:
                positions.append(reader._position(comet, account, collaterals[i], "collateral", amount,
                                                  decimals[i + 1]))
    return {"positions": positions, "accounts": account_rows}
