"""Real Aave V3 transactions on anvil: oracle moves and ``Pool.liquidationCall`` by a keeper.

Oracle moves: the root feed behind the asset's ``AaveOracle`` source is moved by the core's price
mover (analyzer/oracles.py), on the devnet and on a fork alike; no admin or owner is impersonated.

Keepers are funded by cheats: the devnet token's open ``mint`` on the devnet, else the token's balance
storage slot is found (Solidity mapping at slots 0..50) and written with ``anvil_setStorageAt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import event_abi_to_log_topic, keccak, to_checksum_address

from analyzer.chain import rpc
from analyzer.errors import ContagionError
from analyzer.multicall import Call, multicall, single_call
from analyzer.transactions import send
from protocols.aave_v3 import abi
from protocols.base import ExecutedLiquidation, Executor

MAX_UINT = 2**256 - 1
ETH_FOR_GAS = 10**20


def _topic_address(topic) -> str:
    raw = topic.hex() if isinstance(topic, bytes | bytearray) else str(topic)
    return to_checksum_address("0x" + raw.removeprefix("0x")[-40:])


class AaveV3Executor(Executor):
    protocol = "aave-v3"

    def __init__(self, w3, deployment: dict[str, Any], keeper: str):
        super().__init__(w3, deployment, keeper)
        self.keeper = to_checksum_address(keeper)
        self.pool = to_checksum_address(deployment["pool"])
        self.oracle = to_checksum_address(deployment["oracle"])
        self.symbols = {s: to_checksum_address(r["asset"]) for s, r in deployment.get("reserves", {}).items()}

    # ---- helpers ----------------------------------------------------------------------------
    def asset(self, asset_or_symbol: str) -> str:
        if asset_or_symbol in self.symbols:
            return self.symbols[asset_or_symbol]
        try:
            return to_checksum_address(asset_or_symbol)
        except ValueError:
            raise ContagionError(f'aave-v3: "{asset_or_symbol}" is neither a reserve symbol '
                                 f'({", ".join(self.symbols)}) nor an address') from None

    def read(self, target: str, signature: str, *args) -> Any:
        return single_call(self.w3, Call(target, signature, tuple(args)), block="latest").unwrap(
            f"{signature.split('(')[0]} on {target}")

    def send(self, sender: str, target: str, signature: str, *args, what: str = "") -> dict:
        """Send as ``sender`` (impersonated); raise ContagionError with the revert reason."""
        sender = to_checksum_address(sender)
        if sender not in self.w3.eth.accounts:
            rpc(self.w3, "anvil_impersonateAccount", [sender])
            if self.w3.eth.get_balance(sender) < ETH_FOR_GAS // 10:
                rpc(self.w3, "anvil_setBalance", [sender, hex(ETH_FOR_GAS)])
        tx = {"to": to_checksum_address(target), "data": "0x" + Call(target, signature, args).calldata.hex()}
        return send(self.w3, tx, sender, what or signature)

    # ---- oracle -----------------------------------------------------------------------------
    def set_price(self, asset: str, price_usd: float) -> None:
        """Make ``AaveOracle.getAssetPrice(asset)`` answer ``price_usd``: the root feed behind the
        asset's source is moved (analyzer/oracles.py), so every consumer of that feed sees it."""
        from analyzer.oracles import set_protocol_price
        from protocols.aave_v3.prices import AaveV3PriceSources

        set_protocol_price(self.w3, self.protocol, AaveV3PriceSources(self.w3, self.deployment).price_sources(),
                           self.asset(asset), price_usd)

    # ---- keeper funding ---------------------------------------------------------------------
    def fund_keeper(self, token: str, amount: int) -> None:
        """Give the keeper ``amount`` more of ``token`` and approve the pool for it."""
        token = to_checksum_address(token)
        balance = self.read(token, "balanceOf(address)(uint256)", self.keeper)
        try:
            self.send(self.keeper, token, "mint(address,uint256)", self.keeper, amount, what="mint")
        except ContagionError:
            self.set_token_balance(token, balance + amount)
        if self.read(token, "allowance(address,address)(uint256)", self.keeper, self.pool) < MAX_UINT // 2:
            self.send(self.keeper, token, "approve(address,uint256)", self.pool, MAX_UINT, what="approve")

    def set_token_balance(self, token: str, amount: int) -> None:
        """Write the keeper's balance of ``token`` in storage (a fork's tokens have no open mint)."""
        before = self.read(token, "balanceOf(address)(uint256)", self.keeper)
        for slot in range(51):
            key = "0x" + keccak(abi_encode(["address", "uint256"], [self.keeper, slot])).hex()
            old = rpc(self.w3, "eth_getStorageAt", [token, key, "latest"])
            rpc(self.w3, "anvil_setStorageAt", [token, key, "0x" + amount.to_bytes(32, "big").hex()])
            if self.read(token, "balanceOf(address)(uint256)", self.keeper) == amount:
                return
            rpc(self.w3, "anvil_setStorageAt", [token, key, "0x" + int(old, 16).to_bytes(32, "big").hex()])
        raise ContagionError(f"cannot fund the keeper with {token}: no balance slot found (balance {before})")

    # ---- forced sale ------------------------------------------------------------------------
    def close_account(self, account: str, collateral: Sequence[str], debt: Sequence[str]
                      ) -> tuple[dict[str, int], dict[str, int]]:
        """A forced sale: ``account`` repays each of ``debt`` in full (``Pool.repay(asset,
        type(uint256).max, 2, account)``, the tokens dealt to it), then ``Pool.withdraw(asset,
        type(uint256).max, account)`` s each of ``collateral``; amounts from its token balances."""
        from analyzer.cheats import deal

        account = to_checksum_address(account)
        by_asset = {to_checksum_address(r["asset"]): r for r in self.deployment["reserves"].values()}

        def balance(token: str) -> int:
            return int(self.read(token, "balanceOf(address)(uint256)", account))

        repaid: dict[str, int] = {}
        for asset in sorted({to_checksum_address(a) for a in debt}):
            if asset not in by_asset:
                raise ContagionError(f"aave-v3: {asset} is not a reserve of pool {self.pool}")
            owed = balance(by_asset[asset]["variableDebtToken"])
            if not owed:
                continue
            held, dealt = balance(asset), owed + owed // 1000 + 1       # the next block's interest too
            deal(self.w3, asset, account, held + dealt)
            self.send(account, asset, "approve(address,uint256)", self.pool, MAX_UINT, what="approve")
            self.send(account, self.pool, "repay(address,uint256,uint256,address)", asset, MAX_UINT, 2, account,
                      what=f"repay all {asset}")
            repaid[asset] = held + dealt - balance(asset)
            deal(self.w3, asset, account, held)
            if balance(by_asset[asset]["variableDebtToken"]):
                raise ContagionError(f"aave-v3: {account} still owes {asset} after repaying all of it")
        withdrawn: dict[str, int] = {}
        for asset in sorted({to_checksum_address(a) for a in collateral}):
            if asset not in by_asset:
                raise ContagionError(f"aave-v3: {asset} is not a reserve of pool {self.pool}")
            if not balance(by_asset[asset]["aToken"]):
                continue
            held = balance(asset)
            self.send(account, self.pool, "withdraw(address,uint256,address)", asset, MAX_UINT, account,
                      what=f"withdraw all {asset}")
            withdrawn[asset] = balance(asset) - held
        return withdrawn, repaid

    # ---- liquidation ------------------------------------------------------------------------
    def largest_positions(self, account: str) -> tuple[str | None, str | None]:
        """(largest debt asset, largest collateral asset) of ``account`` by oracle value."""
        reserves = list(self.deployment["reserves"].values())
        block = self.w3.eth.block_number
        calls = []
        for r in reserves:
            calls += [Call(r["variableDebtToken"], "balanceOf(address)(uint256)", (account,)),
                      Call(r["aToken"], "balanceOf(address)(uint256)", (account,)),
                      Call(self.oracle, "getAssetPrice(address)(uint256)", (r["asset"],)),
                      Call(r["asset"], "decimals()(uint8)")]
        out = [c.unwrap("aave-v3 position read") for c in multicall(self.w3, calls, block=block)]
        debts = [(out[4 * k] * out[4 * k + 2] / 10 ** out[4 * k + 3], r["asset"]) for k, r in enumerate(reserves)]
        colls = [(out[4 * k + 1] * out[4 * k + 2] / 10 ** out[4 * k + 3], r["asset"]) for k, r in enumerate(reserves)]
        debt, coll = max(debts), max(colls)
        return (debt[1] if debt[0] > 0 else None), (coll[1] if coll[0] > 0 else None)

    def liquidate(self, account: str, debt_asset: str | None, collateral_asset: str | None,
                  amount_raw: int | None = None) -> ExecutedLiquidation:
        """``Pool.liquidationCall(collateral, debt, account, amount or max, false)`` by the keeper."""
        account = to_checksum_address(account)
        if debt_asset is None or collateral_asset is None:
            largest_debt, largest_coll = self.largest_positions(account)
            debt_asset, collateral_asset = debt_asset or largest_debt, collateral_asset or largest_coll
            if debt_asset is None or collateral_asset is None:
                return ExecutedLiquidation(account, False, error="no debt or no collateral")
        debt_asset, collateral_asset = self.asset(debt_asset), self.asset(collateral_asset)
        reserve = self.read(self.pool, abi.GET_RESERVE_DATA, debt_asset)
        owed = self.read(reserve[10], "balanceOf(address)(uint256)", account)
        if int(reserve[9], 16):  # stable debt up to 3.1; from 3.2 a mock (or an address without code)
            stable = single_call(self.w3, Call(reserve[9], "balanceOf(address)(uint256)", (account,)), block="latest")
            owed += stable.value if stable.success else 0
        need = (amount_raw if amount_raw is not None else owed) + owed // 100 + 1
        if self.read(debt_asset, "balanceOf(address)(uint256)", self.keeper) < need:
            self.fund_keeper(debt_asset, need)
        # the keeper may hold the debt asset already (from an earlier sale): approve regardless
        if self.read(debt_asset, "allowance(address,address)(uint256)", self.keeper, self.pool) < need:
            self.send(self.keeper, debt_asset, "approve(address,uint256)", self.pool, MAX_UINT, what="approve")
        try:
            receipt = self.send(self.keeper, self.pool, "liquidationCall(address,address,address,uint256,bool)",
                                collateral_asset, debt_asset, account,
                                MAX_UINT if amount_raw is None else amount_raw, False, what="Pool.liquidationCall")
        except ContagionError as exc:
            return ExecutedLiquidation(account, False, error=str(exc))
        return self._parse(account, receipt, debt_asset, collateral_asset)

    def _parse(self, account: str, receipt: dict, debt_asset: str, collateral_asset: str) -> ExecutedLiquidation:
        liq_topic = event_abi_to_log_topic(abi.LIQUIDATION_CALL_EVENT)
        transfer_topic = event_abi_to_log_topic(abi.TRANSFER_EVENT)
        a_token = to_checksum_address(self.read(self.pool, abi.GET_RESERVE_DATA, collateral_asset)[8])
        treasury = to_checksum_address(self.read(a_token, "RESERVE_TREASURY_ADDRESS()(address)"))
        repaid = liquidated = fee = None
        for log in receipt["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            data = bytes(log["data"])
            if to_checksum_address(log["address"]) == self.pool and topics and topics[0] == liq_topic:
                repaid = int.from_bytes(data[0:32], "big")
                liquidated = int.from_bytes(data[32:64], "big")
            elif (to_checksum_address(log["address"]) == a_token and topics and topics[0] == transfer_topic
                  and _topic_address(topics[1]) == account and _topic_address(topics[2]) == treasury):
                fee = int.from_bytes(data[0:32], "big")
        if repaid is None or liquidated is None:
            raise ContagionError(f"liquidationCall of {account} succeeded without a LiquidationCall event")
        fee = fee or 0
        return ExecutedLiquidation(account, True, tx_hash="0x" + bytes(receipt["transactionHash"]).hex().removeprefix("0x"),
                                   repaid={debt_asset: repaid}, seized={collateral_asset: liquidated + fee},
                                   fee={collateral_asset: fee})
