"""Real Morpho Blue liquidations on anvil: ``Morpho.liquidate`` by a funded keeper.

``liquidate(marketParams, borrower, seizedAssets, repaidShares, data)`` takes exactly one of the
two amounts. The keeper repays every borrow share when the collateral covers ``debt × LIF``;
otherwise it seizes all the collateral (the contract then realises the rest as bad debt). A
partial liquidation (``amount_raw`` loan units) repays the shares those units buy, rounded down.
Prices move at the assets' USD feeds (the oracles of every market read them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode
from eth_utils import to_checksum_address

from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import ExecutedLiquidation, Executor
from protocols.morpho_blue import exact
from protocols.morpho_blue.contracts import CREATE_MARKET, LIQUIDATE, PROTOCOL, morpho_abi, topic

ERC20_ABI = [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"type": "address", "name": "s"}, {"type": "uint256", "name": "v"}], "outputs": [{"type": "bool"}]},
]
IRM_ABI = [
    {"type": "function", "name": "borrowRateView", "stateMutability": "view", "outputs": [{"type": "uint256"}],
     "inputs": [{"type": "tuple", "name": "p", "components": [{"type": "address", "name": n} for n in "abcd"]
                 + [{"type": "uint256", "name": "e"}]},
                {"type": "tuple", "name": "m", "components": [{"type": "uint128", "name": n} for n in "abcdef"]}]},
]
ORACLE_ABI = [{"type": "function", "name": "price", "stateMutability": "view", "inputs": [],
               "outputs": [{"type": "uint256"}]}]


class MorphoBlueExecutor(Executor):
    """Keeper actions on one Morpho singleton (``deployment["morpho"]``)."""

    protocol = PROTOCOL

    def __init__(self, w3, deployment: dict[str, Any], keeper: str):
        super().__init__(w3, deployment, keeper)
        self.morpho = w3.eth.contract(address=to_checksum_address(deployment["morpho"]), abi=morpho_abi())
        self.last_event: dict[str, int] = {}

    # ---- markets ----

    def markets(self) -> dict[str, tuple]:
        """Market id -> params, from CreateMarket events since the deployment block."""
        if getattr(self, "_markets", None) is None:
            logs = self.w3.eth.get_logs({"address": self.morpho.address, "topics": [topic(CREATE_MARKET)],
                                         "fromBlock": int(self.deployment.get("start_block", 0) or 0),
                                         "toBlock": "latest"})
            self._markets = {}
            for log in logs:
                loan, collateral, oracle, irm, lltv = decode(["address", "address", "address", "address", "uint256"],
                                                             bytes(log["data"]))
                self._markets["0x" + bytes(log["topics"][1]).hex()] = (
                    to_checksum_address(loan), to_checksum_address(collateral), to_checksum_address(oracle),
                    to_checksum_address(irm), lltv)
        return self._markets

    def accrued_market(self, market_id: str, timestamp: int) -> exact.MarketTotals:
        params = self.markets()[market_id]
        raw = self.morpho.functions.market(bytes.fromhex(market_id[2:])).call()
        rate = 0
        if int(params[3], 16):
            irm = self.w3.eth.contract(address=params[3], abi=IRM_ABI)
            rate = irm.functions.borrowRateView(params, raw).call()
        return exact.MarketTotals(*raw).accrued(rate, timestamp)

    def find_market(self, account: str, debt_asset: str | None, collateral_asset: str | None) -> str:
        """The market where ``account`` borrows ``debt_asset`` against ``collateral_asset`` (the
        largest borrow when it has several such markets)."""
        best, best_shares = None, 0
        for market_id, params in self.markets().items():
            if debt_asset and params[0] != to_checksum_address(debt_asset):
                continue
            if collateral_asset and params[1] != to_checksum_address(collateral_asset):
                continue
            shares = self.morpho.functions.position(bytes.fromhex(market_id[2:]), account).call()[1]
            if shares > best_shares:
                best, best_shares = market_id, shares
        if best is None:
            raise ContagionError(f"morpho-blue: {account} has no borrow of {debt_asset} against {collateral_asset}")
        return best

    # ---- forced sale ----

    def close_account(self, account: str, collateral: Sequence[str], debt: Sequence[str]
                      ) -> tuple[dict[str, int], dict[str, int]]:
        """A forced sale: in every market whose loan token is one of ``debt`` or whose collateral
        is one of ``collateral``, ``account`` repays all its borrow shares (``repay(params, 0,
        shares, account, "")``, the loan token dealt to it) and ``withdrawCollateral`` s all of it."""
        from analyzer.cheats import deal, read, send_as
        from protocols.morpho_blue.contracts import MARKET_PARAMS

        account = to_checksum_address(account)
        morpho = self.morpho.address
        loans = {to_checksum_address(a) for a in debt}
        collaterals = {to_checksum_address(a) for a in collateral}

        def balance(token: str) -> int:
            return int(read(self.w3, token, "balanceOf(address)(uint256)", account))

        withdrawn: dict[str, int] = {}
        repaid: dict[str, int] = {}
        for market_id, params in sorted(self.markets().items()):
            if params[0] not in loans and params[1] not in collaterals:
                continue
            _, shares, held_collateral = self.morpho.functions.position(bytes.fromhex(market_id[2:]), account).call()
            if shares:
                owed = exact.borrowed_assets(shares, self.accrued_market(market_id, self.w3.eth.get_block("latest")
                                                                          ["timestamp"] + 1))
                held, dealt = balance(params[0]), owed + owed // 1000 + 10
                deal(self.w3, params[0], account, held + dealt)
                send_as(self.w3, account, params[0], "approve(address,uint256)", morpho, 2**256 - 1, what="approve")
                send_as(self.w3, account, morpho, f"repay({MARKET_PARAMS},uint256,uint256,address,bytes)", params, 0,
                        shares, account, b"", what="morpho-blue repay all")
                repaid[params[0]] = repaid.get(params[0], 0) + held + dealt - balance(params[0])
                deal(self.w3, params[0], account, held)
            if held_collateral:
                send_as(self.w3, account, morpho, f"withdrawCollateral({MARKET_PARAMS},uint256,address,address)",
                        params, held_collateral, account, account, what="morpho-blue withdrawCollateral")
                withdrawn[params[1]] = withdrawn.get(params[1], 0) + held_collateral
        return withdrawn, repaid

    # ---- keeper actions ----

    def set_price(self, asset: str, price_usd: float) -> None:
        """Make the USD feed of ``asset`` (address book ``usd_feeds``) answer ``price_usd``: the root
        feed behind it is moved (analyzer/oracles.py). A vault share has no feed of its own (its
        oracle reads the vault) and is left alone."""
        from analyzer.oracles import set_protocol_price
        from protocols.morpho_blue.prices import MorphoBluePriceSources

        feeds = {to_checksum_address(t) for t in (self.deployment.get("usd_feeds") or {})}
        if to_checksum_address(asset) not in feeds:
            return
        set_protocol_price(self.w3, PROTOCOL, MorphoBluePriceSources(self.w3, self.deployment).price_sources(),
                           asset, price_usd)

    def _send(self, call, sender: str, what: str) -> dict:
        return send(self.w3, call, sender, f"morpho-blue {what}")

    def amounts(self, market_id: str, account: str, amount_raw: int | None) -> tuple[int, int]:
        """``(seized_assets, repaid_shares)`` for the keeper's liquidation of ``account``."""
        params = self.markets()[market_id]
        _, borrow_shares, collateral = self.morpho.functions.position(bytes.fromhex(market_id[2:]), account).call()
        timestamp = self.w3.eth.get_block("latest")["timestamp"] + 1
        market = self.accrued_market(market_id, timestamp)
        price = self.w3.eth.contract(address=params[2], abi=ORACLE_ABI).functions.price().call()
        if amount_raw is not None:
            shares = exact.to_shares_down(amount_raw, market.total_borrow_assets, market.total_borrow_shares)
            return 0, min(shares, borrow_shares)
        return exact.max_seizable(borrow_shares, collateral, market, price, params[4])

    def liquidate(self, account: str, debt_asset: str | None, collateral_asset: str | None,
                  amount_raw: int | None = None, *, market: str | None = None) -> ExecutedLiquidation:
        """Liquidate ``account`` in ``market`` (default: its market borrowing ``debt_asset`` against
        ``collateral_asset``) as far as allowed, or repay ``amount_raw`` loan units."""
        from analyzer.cheats import deal

        account = to_checksum_address(account)
        try:
            market_id = market or self.find_market(account, debt_asset, collateral_asset)
            params = self.markets()[market_id]
            seized, repaid_shares = self.amounts(market_id, account, amount_raw)
            if seized == 0 and repaid_shares == 0:
                raise ContagionError("morpho-blue: nothing to liquidate")
            state = self.accrued_market(market_id, self.w3.eth.get_block("latest")["timestamp"] + 3600)
            need = exact.to_assets_up(repaid_shares, state.total_borrow_assets, state.total_borrow_shares) \
                if repaid_shares else state.total_borrow_assets
            deal(self.w3, params[0], self.keeper, need + 1)
            self._send(self.w3.eth.contract(address=params[0], abi=ERC20_ABI).functions.approve(
                self.morpho.address, 2**256 - 1), self.keeper, "approve loan token")
            receipt = self._send(self.morpho.functions.liquidate(params, account, seized, repaid_shares, b""),
                                 self.keeper, "liquidate")
        except ContagionError as exc:
            return ExecutedLiquidation(account=account, success=False, error=str(exc))
        event = next(log for log in receipt["logs"] if "0x" + bytes(log["topics"][0]).hex() == topic(LIQUIDATE))
        values = decode(["uint256"] * 5, bytes(event["data"]))
        self.last_event = dict(zip(("repaid_assets", "repaid_shares", "seized_assets", "bad_debt_assets",
                                    "bad_debt_shares"), values, strict=True)) | {"market": market_id}
        return ExecutedLiquidation(account=account, success=True, tx_hash=receipt["transactionHash"].hex(),
                                   repaid={params[0]: values[0]}, seized={params[1]: values[2]}, fee={})
