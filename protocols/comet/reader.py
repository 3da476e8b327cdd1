"""Reads a Compound III (Comet) market: its base asset, collaterals, prices and accounts.

Every read goes through Multicall3 at the context's block. Sources of truth (compound-finance/comet
``contracts/Comet.sol`` and ``CometExt.sol``): ``getAssetInfo``, ``getPrice`` (8 decimals),
``userBasic`` (signed principal, ``assetsIn`` bitmap), ``borrowBalanceOf`` / ``balanceOf`` (present
value with indices accrued to the block's timestamp), ``collateralBalanceOf``, ``totalsBasic``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from eth_utils import event_signature_to_log_topic, to_checksum_address

from analyzer.discovery import checksum
from analyzer.errors import ContagionError
from analyzer.kept import Carried, KeptRows, KeptState, Refreshed
from analyzer.model import raw_to_amount
from analyzer.multicall import MULTICALL3_ADDRESS, Call, CallResult
from protocols.base import AccountEvents, EventField, Reader, Rows
from protocols.comet import carry, exact, lens, refresh

PROTOCOL = "comet"
ASSET_INFO = "(uint8,address,address,uint64,uint64,uint64,uint64,uint128)"
TOTALS_BASIC = "(uint64,uint64,uint64,uint64,uint104,uint104,uint40,uint8)"
USER_BASIC = "(int104,uint64,uint64,uint16,uint8)"
# Events that name an account, with the topics (indexed parameters) that hold accounts. A borrow can
# open through a base transfer (Comet.transferBase: no Withdraw, a Transfer(src, 0) when the sender
# gives up supply) and collateral can arrive by TransferCollateral, so both are read too.
ENUMERATION_EVENTS = {
    "Supply(address,address,uint256)": (2,),                                 # dst
    "Withdraw(address,address,uint256)": (1,),                               # src
    "SupplyCollateral(address,address,address,uint256)": (2,),               # dst
    "WithdrawCollateral(address,address,address,uint256)": (1,),             # src
    "Transfer(address,address,uint256)": (1, 2),                             # from, to (0 = mint/burn)
    "TransferCollateral(address,address,address,uint256)": (1, 2),           # from, to
}
# Incremental rescans: besides those, absorb changes the borrower's principal and zeroes its
# collateral (AbsorbDebt, AbsorbCollateral: borrower in topic 2). BuyCollateral is not one: the
# buyer pays base from its wallet and receives the collateral in its wallet, its Comet balances
# do not move (Comet.buyCollateral: doTransferIn / doTransferOut).
CHANGE_EVENTS = {
    **ENUMERATION_EVENTS,
    "AbsorbDebt(address,address,uint256,uint256)": (2,),                     # borrower
    "AbsorbCollateral(address,address,address,uint256,uint256)": (2,),       # borrower
}
# enumeration events whose accounts the others name first (CometReader.account_events)
NAMED_BEFORE = ("Supply(address,address,uint256)", "Withdraw(address,address,uint256)",
                "WithdrawCollateral(address,address,address,uint256)")
ZERO_ADDRESS = "0x" + "00" * 20


def _fields(events: dict[str, tuple[int, ...]]) -> tuple[EventField, ...]:
    """Where ``events`` (signature -> topics holding accounts) name accounts, declared (the zero
    address of a mint or burn and the Comet itself never named), as ``CometReader._events`` reads them."""
    return tuple(EventField("0x" + bytes(event_signature_to_log_topic(sig)).hex(), topic=k, skip_zero=True,
                            skip_emitter=True) for sig, positions in events.items() for k in positions)


GLOBAL_READS = (
    ("base_token", "baseToken()(address)"),
    ("base_feed", "baseTokenPriceFeed()(address)"),
    ("num_assets", "numAssets()(uint8)"),
    ("store_front_price_factor", "storeFrontPriceFactor()(uint256)"),
    ("target_reserves", "targetReserves()(uint256)"),
    ("base_scale", "baseScale()(uint256)"),
    ("base_borrow_min", "baseBorrowMin()(uint256)"),
    ("reserves", "getReserves()(int256)"),
    ("totals", f"totalsBasic()({TOTALS_BASIC})"),
    ("utilization", "getUtilization()(uint256)"),
    ("total_supply", "totalSupply()(uint256)"),
    ("total_borrow", "totalBorrow()(uint256)"),
)


# getAssetInfo offsets read with the globals, before numAssets is known: Comet lists up to 15
# collateral assets (CometCore.MAX_ASSETS; a market listing more has the rest read after)
ASSET_READS = 15


def _unwrap(calls: Sequence[Call], results: Sequence[CallResult], what: str) -> list:
    return [r.unwrap(f"{what}: {c.signature.split('(')[0]} on {c.target}") for c, r in zip(calls, results, strict=True)]


class CometReader(Reader):
    """One Comet deployment: ``deployment["comet"]`` is its address (cUSDCv3 on Ethereum)."""

    protocol = PROTOCOL
    book_keys = ("comet",)

    @property
    def comet(self) -> str:
        known = self.__dict__.get("_comet")
        if known is None:
            address = self.deployment.get("comet")
            if not address:
                raise ContagionError("comet address book entry: missing \"comet\" (the Comet proxy address)")
            known = self._comet = to_checksum_address(address)
        return known

    def _read(self, calls: Sequence[Call], what: str) -> list:
        return _unwrap(calls, self.ctx.multicall(calls), what)

    def market_state(self) -> dict:
        """Global parameters, totals with indices accrued to the block, and every asset's info,
        read once per reader (the markets row and the lens's accounts both use them)."""
        known = self.__dict__.get("_market_state")
        if known is None:
            known = self._market_state = self._read_market_state()
        return known

    def _read_market_state(self) -> dict:
        """Two Multicall3 rounds (each a round trip): the globals, the block's timestamp and the
        first :data:`ASSET_READS` assets' info (an offset past ``numAssets`` reverts, and is left
        out); then each token's price, decimals, reserves and symbol and the rates at the
        utilization read first."""
        comet = self.comet
        first = ([Call(comet, sig) for _, sig in GLOBAL_READS]
                 + [Call(MULTICALL3_ADDRESS, "getCurrentBlockTimestamp()(uint256)")]
                 + [Call(comet, f"getAssetInfo(uint8)({ASSET_INFO})", (i,)) for i in range(ASSET_READS)])
        results = self.ctx.multicall(first)
        g = len(GLOBAL_READS)
        values = _unwrap(first[:g + 1], results[:g + 1], "comet market")
        state = dict(zip([name for name, _ in GLOBAL_READS], values[:g], strict=True))
        timestamp = values[g]
        state["base_token"], state["base_feed"] = map(to_checksum_address, (state["base_token"], state["base_feed"]))
        n = state["num_assets"]
        infos = _unwrap(first[g + 1:g + 1 + n], results[g + 1:g + 1 + n], "comet assets")
        if n > ASSET_READS:
            infos += self._read([Call(comet, f"getAssetInfo(uint8)({ASSET_INFO})", (i,))
                                 for i in range(ASSET_READS, n)], "comet assets")
        state["assets"] = [dict(zip(("offset", "asset", "feed", "scale", "borrow_collateral_factor",
                                     "liquidate_collateral_factor", "liquidation_factor", "supply_cap"), info,
                                    strict=True)) for info in infos]
        for info in state["assets"]:  # eth-abi decodes addresses in lower case; the snapshot checksums
            info["asset"], info["feed"] = to_checksum_address(info["asset"]), to_checksum_address(info["feed"])
        tokens = [state["base_token"]] + [a["asset"] for a in state["assets"]]
        feeds = [state["base_feed"]] + [a["feed"] for a in state["assets"]]
        reads = ([Call(comet, "getPrice(address)(uint256)", (f,)) for f in feeds]
                 + [Call(t, "decimals()(uint8)") for t in tokens]
                 + [Call(comet, "getCollateralReserves(address)(uint256)", (t,)) for t in tokens[1:]]
                 + [Call(state["base_token"], "balanceOf(address)(uint256)", (comet,)),
                    Call(comet, "getSupplyRate(uint256)(uint64)", (state["utilization"],)),
                    Call(comet, "getBorrowRate(uint256)(uint64)", (state["utilization"],))])
        symbols = [Call(t, "symbol()(string)") for t in tokens]
        results = self.ctx.multicall(reads + symbols)
        values = _unwrap(reads, results[:len(reads)], "comet prices")
        k = len(tokens)
        state["prices"], state["decimals"] = values[:k], values[k:2 * k]
        state["collateral_reserves"] = values[2 * k:3 * k - 1]
        state["base_balance"], supply_rate, borrow_rate = values[3 * k - 1:]
        # symbol() is optional in ERC20 (and bytes32 in some old tokens): a failure leaves it blank
        state["symbols"] = [r.value if r.success else "" for r in results[len(reads):]]
        supply_index, borrow_index, _, _, total_supply_base, total_borrow_base, last_accrual, _ = state["totals"]
        elapsed = timestamp - last_accrual
        state["supply_index"] = exact.accrued_index(supply_index, supply_rate, max(elapsed, 0))
        state["borrow_index"] = exact.accrued_index(borrow_index, borrow_rate, max(elapsed, 0))
        state["total_supply_base"], state["total_borrow_base"] = total_supply_base, total_borrow_base
        state["supply_rate"], state["borrow_rate"] = supply_rate, borrow_rate   # 1e18 per second
        return state

    def read_markets(self) -> Rows:
        state = self.market_state()
        comet, base = self.comet, state["base_token"]
        assets, markets = [], []
        for i, token in enumerate([base] + [a["asset"] for a in state["assets"]]):
            assets.append({"address": token, "symbol": state["symbols"][i], "decimals": state["decimals"][i],
                           "price_usd": state["prices"][i] / 1e8, "receipt_of": "", "iv": float("nan")})
        base_params = {
            "role": "base", "price_raw": str(state["prices"][0]), "base_scale": str(state["base_scale"]),
            "store_front_price_factor": str(state["store_front_price_factor"]),
            "target_reserves": str(state["target_reserves"]), "reserves": str(state["reserves"]),
            "base_balance": str(state["base_balance"]), "base_borrow_min": str(state["base_borrow_min"]),
            "supply_index": str(state["supply_index"]), "borrow_index": str(state["borrow_index"]),
            "total_supply_base": str(state["total_supply_base"]),
            "total_borrow_base": str(state["total_borrow_base"]),
            "supply_rate_per_second": str(state["supply_rate"]), "borrow_rate_per_second": str(state["borrow_rate"]),
        }
        markets.append({"protocol": PROTOCOL, "market": comet, "asset": base, "oracle_price_usd": state["prices"][0] / 1e8,
                        "ltv": 0.0, "liquidation_threshold": 0.0, "liquidation_bonus": 0.0, "close_factor": 1.0,
                        "protocol_fee": 0.0, "supply_cap": 0.0, "borrow_cap": 0.0, "category": 0, "isolated": False,
                        "borrowable": True, "collateral_enabled": False, "params": json.dumps(base_params)})
        for info, price, held in zip(state["assets"], state["prices"][1:], state["collateral_reserves"], strict=True):
            params = {"role": "collateral", "offset": info["offset"], "price_raw": str(price),
                      "collateral_reserves": str(held),  # absorbed collateral the protocol holds for sale
                      "scale": str(info["scale"]), "price_feed": info["feed"],
                      "borrow_collateral_factor": str(info["borrow_collateral_factor"]),
                      "liquidate_collateral_factor": str(info["liquidate_collateral_factor"]),
                      "liquidation_factor": str(info["liquidation_factor"])}
            markets.append({
                "protocol": PROTOCOL, "market": comet, "asset": info["asset"], "oracle_price_usd": price / 1e8,
                "ltv": info["borrow_collateral_factor"] / 1e18,
                "liquidation_threshold": info["liquidate_collateral_factor"] / 1e18,
                # the account's penalty: it is credited only liquidationFactor of its collateral's value
                "liquidation_bonus": 1.0 - info["liquidation_factor"] / 1e18,
                "close_factor": 1.0, "protocol_fee": 0.0,
                "supply_cap": raw_to_amount(info["supply_cap"], len(str(info["scale"])) - 1),
                "borrow_cap": 0.0, "category": 0, "isolated": False, "borrowable": False,
                "collateral_enabled": True, "params": json.dumps(params)})
        return {"assets": assets, "markets": markets}

    def _events(self, events: dict[str, tuple[int, ...]]) -> tuple[tuple[bytes, ...], Callable[[dict], list[str]]]:
        """The topics of ``events`` (signature -> topics holding accounts) and the accounts a log
        names (the zero address of a mint or burn and the Comet itself excluded)."""
        comet = self.comet
        topics = tuple(bytes(event_signature_to_log_topic(sig)) for sig in events)
        account_topics = dict(zip(topics, events.values(), strict=True))

        def accounts(log: dict) -> list[str]:
            raw = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log["topics"]]
            positions = account_topics.get(raw[0], ()) if raw else ()
            named = {checksum(raw[k][-20:]) for k in positions if k < len(raw)}
            return sorted(named - {comet, checksum(ZERO_ADDRESS)})

        return topics, accounts

    def account_events(self) -> AccountEvents:
        """Accounts named by Supply / Withdraw / SupplyCollateral / WithdrawCollateral / Transfer /
        TransferCollateral events (the zero address of a mint or burn and the Comet itself excluded);
        holdings: the collateral asset each SupplyCollateral / TransferCollateral gives its receiver.
        ``Supply``, ``Withdraw`` and ``WithdrawCollateral`` name no account the others have not named
        before (``named_before``): a supply that leaves ``dst`` a positive balance emits
        ``Transfer(0, dst)`` beside it, one that only repays names a borrower (``Comet.supplyBase``);
        a withdrawal's ``src`` held base or collateral, or borrowed, which needs collateral
        (``isBorrowCollateralized``) that only ``SupplyCollateral`` / ``TransferCollateral`` give."""
        topics, accounts = self._events(ENUMERATION_EVENTS)
        # holdings: the receiver (topic 2) and the asset (topic 3) of every collateral supply or transfer
        collateral_topics = {bytes(event_signature_to_log_topic(sig)) for sig in
                             ("SupplyCollateral(address,address,address,uint256)",
                              "TransferCollateral(address,address,address,uint256)")}

        def holdings(log: dict) -> list[tuple[str, str]]:
            raw = [bytes.fromhex(t[2:]) if isinstance(t, str) else bytes(t) for t in log["topics"]]
            if len(raw) < 4 or raw[0] not in collateral_topics:
                return []
            return [(checksum(raw[2][-20:]), checksum(raw[3][-20:]))]

        return AccountEvents((self.comet,), tuple("0x" + t.hex() for t in topics), accounts, holdings,
                             account_fields=_fields(ENUMERATION_EVENTS),
                             holding_fields=tuple(EventField("0x" + t.hex(), topic=2, holding_topic=3)
                                                  for t in sorted(collateral_topics)),
                             named_before=tuple("0x" + bytes(event_signature_to_log_topic(sig)).hex()
                                                for sig in NAMED_BEFORE))

    def change_events(self) -> AccountEvents:
        """Incremental rescans: every event that moves an account's principal, ``assetsIn`` or
        collateral balances (:data:`CHANGE_EVENTS`)."""
        topics, accounts = self._events(CHANGE_EVENTS)
        return AccountEvents((self.comet,), tuple("0x" + t.hex() for t in topics), accounts,
                             account_fields=_fields(CHANGE_EVENTS))

    def refresh_accounts(self, previous: KeptState) -> Refreshed:
        return refresh.refresh_accounts(self, previous)

    def carry_accounts(self, kept: KeptState, rows: KeptRows) -> Carried:
        return carry.carry_accounts(self, kept, rows)

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        through_lens = lens.read_accounts(self, accounts)   # one eth_call per hundreds of accounts
        if through_lens is not None:
            return through_lens
        comet = self.comet
        state = self.market_state()
        base, decimals = state["base_token"], state["decimals"]
        collaterals = [a["asset"] for a in state["assets"]]
        per_account = 4 + len(collaterals)
        calls = []
        for account in accounts:
            calls += [Call(comet, f"userBasic(address){USER_BASIC}", (account,)),
                      Call(comet, "borrowBalanceOf(address)(uint256)", (account,)),
                      Call(comet, "balanceOf(address)(uint256)", (account,)),
                      Call(comet, "isLiquidatable(address)(bool)", (account,))]
            calls += [Call(comet, "collateralBalanceOf(address,address)(uint128)", (account, a)) for a in collaterals]
        values = self._read(calls, "comet accounts")
        positions, account_rows = [], []
        for n, account in enumerate(accounts):
            row = values[n * per_account:(n + 1) * per_account]
            (principal, _, _, assets_in, _), borrowed, supplied, liquidatable = row[:4]
            held = row[4:]
            if principal == 0 and not any(held):
                continue
            account = to_checksum_address(account)
            account_rows.append({"protocol": PROTOCOL, "market": comet, "account": account, "category": 0,
                                 "params": json.dumps({"principal": str(principal), "assets_in": assets_in,
                                                       "is_liquidatable": bool(liquidatable)})})
            if borrowed:
                positions.append(self._position(comet, account, base, "debt", borrowed, decimals[0]))
            if supplied:  # a base supply: Comet's lenders, who bear the reserves' losses
                positions.append(self._position(comet, account, base, "collateral", supplied, decimals[0]))
            for i, amount in enumerate(held):
                if amount:
                    positions.append(self._position(comet, account, collaterals[i], "collateral", amount,
                                                    decimals[i + 1]))
        return {"positions": positions, "accounts": account_rows}

    @staticmethod
    def _position(market: str, account: str, asset: str, side: str, raw: int, decimals: int) -> dict:
        return {"protocol": PROTOCOL, "market": market, "account": account, "asset": asset, "side": side,
                "amount": raw_to_amount(raw, decimals), "raw": str(raw)}
