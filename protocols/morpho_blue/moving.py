"""Moving a Morpho Blue market's positions to its sibling at another LLTV on an anvil fork
(:meth:`protocols.morpho_blue.tuning.MorphoBlueTuning.configure`; the order and the one exception
are in that module's docstring).

Every step is a Morpho function sent as the position's owner, impersonated (``send_as``): the
singleton's ``createMarket``, ``supply``, ``repay``, ``withdrawCollateral``, ``supplyCollateral``,
``borrow``, ``withdraw`` (morpho-blue ``src/Morpho.sol``). The loan tokens a move needs for a moment
(a supplier's new supply before its old one is withdrawn, a borrower's repayment before it borrows
again) are lent by a balance write (``deal``), and every balance is set back to what it was.

The exception: ``Morpho.borrow`` refuses a position unhealthy at the new LLTV (``_isHealthy``). Such
a borrower borrows what Morpho allows, and the rest of its debt is written into Morpho's storage as
the position and market totals ``borrow`` would have left (``MorphoStorageLib``:
``position[id][user]`` at slot 2, ``market[id]`` at slot 3; shares rounded up as ``borrow``
rounds them), so the fork holds the book the offline change describes, liquidatable at once.
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from analyzer.cheats import _balance, _set_storage, deal, read, send_as
from analyzer.errors import ContagionError
from protocols.morpho_blue import exact
from protocols.morpho_blue.contracts import MARKET, MARKET_PARAMS
from protocols.morpho_blue.reader import ACCOUNT_TOPIC

MAX = 2**256 - 1
POSITION_SLOT, MARKET_SLOT = 2, 3
LOW128 = 2**128 - 1


def _id(market: str) -> bytes:
    return bytes.fromhex(market[2:])


def _params(w3, morpho: str, market: str) -> tuple:
    p: Any = read(w3, morpho, f"idToMarketParams(bytes32){MARKET_PARAMS}", _id(market))
    if int(str(p[0]), 16) == 0:
        raise ContagionError(f"morpho-blue: no market {market} on this chain")
    return tuple(to_checksum_address(a) for a in p[:4]) + (int(p[4]),)


def _totals(w3, morpho: str, market: str) -> exact.MarketTotals:
    totals: Any = read(w3, morpho, f"market(bytes32){MARKET}", _id(market))
    return exact.MarketTotals(*totals)


def _position(w3, morpho: str, market: str, account: str) -> tuple[int, int, int]:
    return tuple(read(w3, morpho, "position(bytes32,address)(uint256,uint128,uint128)", _id(market), account))


def accounts_of(w3, deployment: dict[str, Any], market: str) -> list[str]:
    """Every account a Supply, Borrow or SupplyCollateral event of ``market`` names as onBehalf."""
    morpho = to_checksum_address(deployment["morpho"])
    logs = w3.eth.get_logs({"address": morpho, "topics": [list(ACCOUNT_TOPIC), "0x" + _id(market).hex()],
                            "fromBlock": int(deployment.get("start_block", 0) or 0), "toBlock": "latest"})
    out = set()
    for log in logs:
        topics = ["0x" + bytes(t).hex() for t in log["topics"]]
        out.add(to_checksum_address("0x" + topics[ACCOUNT_TOPIC[topics[0]]][-40:]))
    return sorted(out)


def _morpho_call(w3, sender: str, morpho: str, signature: str, *args, what: str) -> None:
    send_as(w3, sender, morpho, signature, *args, what=f"morpho-blue {what}")


def _slot(market: str, base: int, account: str | None = None) -> int:
    outer = keccak(encode(["bytes32", "uint256"], [_id(market), base]))
    if account is None:
        return int.from_bytes(outer, "big")
    return int.from_bytes(keccak(encode(["address", "bytes32"], [account, outer])), "big")


def _write_borrow(w3, morpho: str, market: str, account: str, assets: int) -> None:
    """Add ``assets`` of debt to ``account`` in ``market`` as ``borrow`` would (shares rounded up)."""
    totals = _totals(w3, morpho, market)
    shares = exact.to_shares_up(assets, totals.total_borrow_assets, totals.total_borrow_shares)
    _, borrow_shares, collateral = _position(w3, morpho, market, account)
    position_slot = _slot(market, POSITION_SLOT, account) + 1
    _set_storage(w3, morpho, hex(position_slot), (collateral << 128) | (borrow_shares + shares))
    market_slot = _slot(market, MARKET_SLOT) + 1
    _set_storage(w3, morpho, hex(market_slot),
                 ((totals.total_borrow_shares + shares) << 128) | (totals.total_borrow_assets + assets))


def move_market(w3, deployment: dict[str, Any], market: str, lltv: int) -> str:
    """Move every position of ``market`` to its sibling at ``lltv`` (created when absent); returns
    the sibling's id."""
    from analyzer.chain import require_anvil
    from protocols.morpho_blue.contracts import market_id

    require_anvil(w3)
    morpho = to_checksum_address(deployment["morpho"])
    old = _params(w3, morpho, market)
    if not read(w3, morpho, "isLltvEnabled(uint256)(bool)", lltv):
        raise ContagionError(f"morpho-blue: LLTV {lltv / 1e18:g} is not enabled (Morpho.isLltvEnabled)")
    new = (*old[:4], lltv)
    sibling = market_id(*new)
    keeper = w3.eth.accounts[0]
    if _totals(w3, morpho, sibling).last_update == 0:
        _morpho_call(w3, keeper, morpho, f"createMarket({MARKET_PARAMS})", new, what="createMarket")
    _morpho_call(w3, keeper, morpho, f"accrueInterest({MARKET_PARAMS})", old, what="accrueInterest")
    loan, collateral_token = old[0], old[1]
    vaults = {to_checksum_address(v) for v in (deployment.get("vaults") or {}).values()}
    positions = {a: _position(w3, morpho, market, a) for a in accounts_of(w3, deployment, market)}
    suppliers = [a for a, p in positions.items() if p[0]]
    borrowers = [a for a, p in positions.items() if p[1] or p[2]]
    balances = {a: _balance(w3, loan, a) for a in positions}
    totals = _totals(w3, morpho, market)
    for account in suppliers:                  # 1. the supply first: the sibling's liquidity for the borrows
        assets = exact.supplied_assets(positions[account][0], totals)
        if account in vaults:                  # the curator lists the sibling (MetaMorpho submitCap)
            owner = read(w3, account, "owner()(address)")
            send_as(w3, owner, account, f"submitCap({MARKET_PARAMS},uint256)", new, 2**184 - 1,
                    what="MetaMorpho.submitCap")
        deal(w3, loan, account, balances[account] + assets)
        send_as(w3, account, loan, "approve(address,uint256)", morpho, MAX, what="approve loan token")
        _morpho_call(w3, account, morpho, f"supply({MARKET_PARAMS},uint256,uint256,address,bytes)", new, assets, 0,
                     account, b"", what="supply")
    price = int(read(w3, old[2], "price()(uint256)"))
    for account in borrowers:                  # 2. each borrow repaid, its collateral moved, borrowed again
        _, borrow_shares, collateral = positions[account]
        owed = 0
        if borrow_shares:
            need = exact.borrowed_assets(borrow_shares, _totals(w3, morpho, market)) * 1001 // 1000 + 10
            deal(w3, loan, account, need)
            send_as(w3, account, loan, "approve(address,uint256)", morpho, MAX, what="approve loan token")
            _morpho_call(w3, account, morpho, f"repay({MARKET_PARAMS},uint256,uint256,address,bytes)", old, 0,
                         borrow_shares, account, b"", what="repay")
            owed = need - _balance(w3, loan, account)
        if collateral:
            _morpho_call(w3, account, morpho, f"withdrawCollateral({MARKET_PARAMS},uint256,address,address)", old,
                         collateral, account, account, what="withdrawCollateral")
            send_as(w3, account, collateral_token, "approve(address,uint256)", morpho, MAX,
                    what="approve collateral token")
            _morpho_call(w3, account, morpho, f"supplyCollateral({MARKET_PARAMS},uint256,address,bytes)", new,
                         collateral, account, b"", what="supplyCollateral")
        if owed:
            allowed = _healthy_borrow(w3, morpho, sibling, collateral, price, lltv, owed)
            if allowed:
                _morpho_call(w3, account, morpho, f"borrow({MARKET_PARAMS},uint256,uint256,address,address)", new,
                             allowed, 0, account, account, what="borrow")
            if owed > allowed:
                _write_borrow(w3, morpho, sibling, account, owed - allowed)
        deal(w3, loan, account, balances[account] if account not in suppliers else _balance(w3, loan, account))
    for account in suppliers:                  # 3. the old supply withdrawn
        shares = _position(w3, morpho, market, account)[0]
        _morpho_call(w3, account, morpho, f"withdraw({MARKET_PARAMS},uint256,uint256,address,address)", old, 0,
                     shares, account, account, what="withdraw")
        deal(w3, loan, account, balances[account])
    return sibling


def _healthy_borrow(w3, morpho: str, market: str, collateral: int, price: int, lltv: int, wanted: int) -> int:
    """The most of ``wanted`` Morpho.borrow lends against ``collateral`` (its shares rounded up
    must stay within ``collateral × price / 1e36 × lltv``), less a millionth: the borrow accrues the
    market's interest of the seconds since its totals were read."""
    limit = exact.max_borrow(collateral, price, lltv) * (10**6 - 1) // 10**6 - 2
    if wanted <= 0 or limit <= 0:
        return 0
    totals = _totals(w3, morpho, market)
    amount = min(wanted, limit)
    while amount > 0:
        shares = exact.to_shares_up(amount, totals.total_borrow_assets, totals.total_borrow_shares)
        debt = exact.to_assets_up(shares, totals.total_borrow_assets + amount, totals.total_borrow_shares + shares)
        if debt <= limit:
            return amount
        amount -= max(debt - limit, 1)
    return 0


__all__ = ["accounts_of", "move_market"]
