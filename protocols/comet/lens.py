"""Comet accounts through our lens (fixtures/contracts/lens: ``CometLens``): one ``eth_call``
reads ``userBasic``, the base balances, ``isLiquidatable`` and every collateral balance of
hundreds of accounts; the market state is read once per scan, not once per batch. The rows are
the ones :meth:`CometReader.read_accounts` builds from Multicall3, and the lens rows are kept for
incremental rescans (:func:`refresh_accounts`: an untouched account is computed, not read)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector

from analyzer.checksum import checksum
from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, masks, read_rows, to_int256
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

    reads = 5 + (len(collaterals) if held is None else 2)   # an account holds a few collaterals
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads)
    if rows is None:
        return None
    return rows_from_lens(reader, accounts, rows)


def rows_from_lens(reader, accounts: Sequence[str], rows: Sequence[list[int]]) -> Rows:
    """Snapshot rows from lens rows, with the lens rows kept as ``_state`` (incremental rescans)."""
    from protocols.comet.reader import PROTOCOL

    state, comet = reader._lens_state, reader.comet
    base, decimals = state["base_token"], state["decimals"]
    collaterals = [a["asset"] for a in state["assets"]]
    positions, account_rows, kept = [], [], {}
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        kept[account] = list(row)
        principal, assets_in, borrowed, supplied, liquidatable = to_int256(row[0]), *row[1:5]
        # json.dumps({"principal": str(principal), "assets_in": assets_in, "is_liquidatable": bool(...)}),
        # written out: tens of thousands of accounts per rescan
        params = (f'{{"principal": "{principal}", "assets_in": {int(assets_in)}, '
                  f'"is_liquidatable": {"true" if liquidatable else "false"}}}')
        account_rows.append({"protocol": PROTOCOL, "market": comet, "account": account, "category": 0,
                             "params": params})
        if borrowed:
            positions.append(reader._position(comet, account, base, "debt", borrowed, decimals[0]))
        if supplied:
            positions.append(reader._position(comet, account, base, "collateral", supplied, decimals[0]))
        for i, amount in enumerate(row[5:]):
            if amount:
                positions.append(reader._position(comet, account, collaterals[i], "collateral", amount,
                                                  decimals[i + 1]))
    return {"positions": positions, "accounts": account_rows, "_state": kept}  # type: ignore[dict-item]


def _principals(reader, accounts: Sequence[str]) -> list[int] | None:
    """``userBasic(account).principal`` of ``accounts`` (``CometLens.principals``); None when the
    node has no lens calls."""
    def encode(batch: Sequence[str]) -> bytes:
        return PRINCIPALS_SELECTOR + encode_arguments(reader.comet, batch)

    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=1)
    return None if rows is None else [to_int256(row[0]) for row in rows]


def refresh_accounts(reader, previous: dict[str, list[int]]) -> tuple[Rows, list[str]]:
    """Untouched accounts at this block. Comet keeps each account's principal, ``assetsIn`` and
    collateral balances; events name every change of the collateral and of a supplier's
    principal, but not a base transfer's borrow (``transferBase`` emits ``Transfer(src, 0)`` only
    for the supply src gives up, ``Transfer(0, dst)`` only for the supply dst gains). So a kept
    supplier (principal > 0) is computed without a read, and every other account has only its
    principal read again (``CometLens.principals``). Then ``borrowBalanceOf`` / ``balanceOf`` are
    the principal's present value at this block's accrued indices, and ``isLiquidatable`` is
    Comet's loop at this block's prices over the stored indices
    (:meth:`protocols.comet.exact.CometState.is_liquidatable`). An account kept with more
    collateral assets than the market now lists is read again in full."""
    if getattr(reader, "_lens_state", None) is None:
        reader._lens_state = reader.market_state()
    state = reader._lens_state
    assets = state["assets"]
    # isLiquidatable values the debt with the stored indices (CometCore.presentValue), not accrued ones
    check = exact.CometState(
        supply_index=state["totals"][0], borrow_index=state["totals"][1],
        total_supply_base=state["total_supply_base"], total_borrow_base=state["total_borrow_base"],
        base_balance=state["base_balance"], base_price=state["prices"][0], base_scale=state["base_scale"],
        asset_scale=[a["scale"] for a in assets], asset_price=list(state["prices"][1:]),
        liquidate_collateral_factor=[a["liquidate_collateral_factor"] for a in assets],
        liquidation_factor=[a["liquidation_factor"] for a in assets])
    again = [a for a, row in previous.items() if len(row) - 5 > len(assets)]
    kept = {a: row for a, row in previous.items() if len(row) - 5 <= len(assets)}
    principal = {a: to_int256(row[0]) for a, row in kept.items()}
    unseen = [a for a, p in principal.items() if p <= 0]     # a borrow may have moved without an event
    if unseen:
        read = _principals(reader, unseen) if reader.ctx.lens is not None else None
        if read is None:                # no lens calls: read them again in full
            again += unseen
            for account in unseen:
                del kept[account]
        else:
            principal.update(zip(unseen, read, strict=True))
    accounts, rows = [], []
    for account, row in kept.items():
        p = principal[account]
        held = list(row[5:]) + [0] * (len(assets) - (len(row) - 5))
        if p == 0 and not any(held):
            continue                    # nothing open: no rows, as the lens gives none
        check.principal[account], check.collateral[account] = p, held
        # Comet.borrowBalanceOf / balanceOf: the present value at the indices accrued to this block
        value = exact.present_value(p, state["supply_index"], state["borrow_index"])
        accounts.append(account)
        rows.append([p % (1 << 256), row[1], max(-value, 0), max(value, 0), int(check.is_liquidatable(account)),
                     *held])
    return rows_from_lens(reader, accounts, rows), again
