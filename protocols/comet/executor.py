"""Real Comet liquidations on anvil: ``absorb`` by a keeper, then ``buyCollateral`` of what it took.

Comet.absorb(absorber, accounts) needs no funds: the protocol takes the account on its balance
sheet. The keeper then buys the absorbed collateral with base at the store-front price
(Comet.buyCollateral, allowed only while getReserves() < targetReserves), which is how the
collateral reaches the market in a cascade.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from eth_utils import event_signature_to_log_topic, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.paths import data_path
from analyzer.transactions import send
from protocols.base import ExecutedLiquidation, PartialCollateralExecutor


@cache
def comet_abi() -> list[dict]:
    """The Comet ABI (abis/comet/Comet.json, shipped with the package), read on first use."""
    return json.loads(data_path("abis", "comet", "Comet.json").read_text())


ERC20_ABI = [
    {"type": "function", "name": n, "stateMutability": m, "inputs": i, "outputs": [{"type": o}]}
    for n, m, i, o in (
        ("balanceOf", "view", [{"type": "address", "name": "a"}], "uint256"),
        ("approve", "nonpayable", [{"type": "address", "name": "s"}, {"type": "uint256", "name": "v"}], "bool"),
    )
]
ABSORB_COLLATERAL = "0x" + event_signature_to_log_topic(
    "AbsorbCollateral(address,address,address,uint256,uint256)").hex()
TRANSFER = "0x" + event_signature_to_log_topic("Transfer(address,address,uint256)").hex()
ABSORB_DEBT = "0x" + event_signature_to_log_topic("AbsorbDebt(address,address,uint256,uint256)").hex()


class CometExecutor(PartialCollateralExecutor):
    """Keeper actions on one Comet (``deployment["comet"]``)."""

    protocol = "comet"

    def __init__(self, w3, deployment: dict[str, Any], keeper: str):
        super().__init__(w3, deployment, keeper)
        self.comet = w3.eth.contract(address=to_checksum_address(deployment["comet"]), abi=comet_abi())
        self.base = self.comet.functions.baseToken().call()

    def _send(self, call, sender: str, what: str) -> dict:
        return send(self.w3, call, sender, f"comet {what}")

    def feed_of(self, asset: str) -> str:
        asset = to_checksum_address(asset)
        if asset == self.base:
            return self.comet.functions.baseTokenPriceFeed().call()
        return self.comet.functions.getAssetInfoByAddress(asset).call()[2]

    def set_price(self, asset: str, price_usd: float) -> None:
        """Make Comet's feed of ``asset`` answer ``price_usd``: the root feed behind it is moved
        (analyzer/oracles.py), so every other consumer of that feed sees the move too."""
        from analyzer.oracles import set_protocol_price
        from protocols.comet.prices import CometPriceSources

        set_protocol_price(self.w3, self.protocol, CometPriceSources(self.w3, self.deployment).price_sources(),
                           asset, price_usd)

    def absorb(self, accounts: list[str]) -> dict:
        """One ``absorb(keeper, accounts)`` transaction; returns its receipt."""
        accounts = [to_checksum_address(a) for a in accounts]
        return self._send(self.comet.functions.absorb(self.keeper, accounts), self.keeper, "absorb")

    def buy_collateral(self, asset: str, base_amount: int | None = None, collateral_raw: int | None = None) -> int:
        """Buy ``asset`` from the protocol with ``base_amount`` base wei, or (None) as much base as
        buys ``collateral_raw`` of it (None: all the protocol holds), bounded by what it holds and
        by the keeper's base balance; returns the collateral wei received."""
        asset = to_checksum_address(asset)
        held = self.comet.functions.getCollateralReserves(asset).call()
        if held == 0:
            return 0
        base_token = self.w3.eth.contract(address=self.base, abi=ERC20_ABI)
        if base_amount is None:
            wanted = held if collateral_raw is None else min(collateral_raw, held)
            one_base = 10 ** self.comet.functions.decimals().call()
            per_base = self.comet.functions.quoteCollateral(asset, one_base).call()
            base_amount = wanted * one_base // max(per_base, 1)
            while base_amount and self.comet.functions.quoteCollateral(asset, base_amount).call() > wanted:
                base_amount -= max(base_amount // 10**6, 1)
            base_amount = min(base_amount, base_token.functions.balanceOf(self.keeper).call())
        if base_amount == 0:
            return 0
        quote = self.comet.functions.quoteCollateral(asset, base_amount).call()
        self._send(base_token.functions.approve(self.comet.address, base_amount), self.keeper, "approve base")
        self._send(self.comet.functions.buyCollateral(asset, quote, base_amount, self.keeper), self.keeper,
                   f"buyCollateral {asset}")
        return quote

    def liquidate(self, account: str, debt_asset: str | None = None, collateral_asset: str | None = None,
                  amount_raw: int | None = None, *, collateral_share: float = 1.0) -> ExecutedLiquidation:
        """Absorb ``account`` (all of it: Comet has no partial liquidation), then buy
        ``collateral_share`` of every collateral it held (or only ``collateral_asset``) with the
        keeper's base (``amount_raw`` base wei per asset when given), if the protocol sells.

        ``seized`` is what was absorbed; ``fee`` the part of it the protocol still holds after the
        purchase (as Aave's protocol fee, it is not the keeper's to sell)."""
        account = to_checksum_address(account)
        try:
            receipt = self.absorb([account])
        except ContagionError as exc:
            return ExecutedLiquidation(account=account, success=False, error=str(exc))
        seized: dict[str, int] = {}
        repaid: dict[str, int] = {}
        for log in receipt["logs"]:
            topic0 = "0x" + bytes(log["topics"][0]).hex()
            data = bytes(log["data"])
            if topic0 == ABSORB_COLLATERAL:
                asset = to_checksum_address(bytes(log["topics"][3])[-20:])
                seized[asset] = int.from_bytes(data[:32], "big")
            elif topic0 == ABSORB_DEBT:
                repaid[self.base] = repaid.get(self.base, 0) + int.from_bytes(data[:32], "big")
            elif topic0 == TRANSFER and int.from_bytes(bytes(log["topics"][1]), "big") == 0:
                # credit beyond the debt, minted to the account as a base supply: not a repayment
                repaid[self.base] = repaid.get(self.base, 0) - int.from_bytes(data[:32], "big")
        bought: dict[str, int] = {}
        target = self.comet.functions.targetReserves().call()
        for asset in seized if collateral_asset is None else [to_checksum_address(collateral_asset)]:
            # checked before every purchase, as buyCollateral does (NotForSale at or above the target)
            if collateral_share <= 0 or self.comet.functions.getReserves().call() >= target:
                break
            wanted = int(seized.get(asset, 0) * min(collateral_share, 1.0))
            self.fund_base(asset, wanted)
            bought[asset] = self.buy_collateral(asset, amount_raw, None if amount_raw is not None else wanted)
        fee = {asset: raw - bought.get(asset, 0) for asset, raw in seized.items()}
        return ExecutedLiquidation(account=account, success=True, tx_hash=receipt["transactionHash"].hex(),
                                   repaid=repaid, seized=seized, fee=fee)

    def close_account(self, account: str, collateral: Sequence[str], debt: Sequence[str]
                      ) -> tuple[dict[str, int], dict[str, int]]:
        """A forced sale: ``account`` repays its whole base borrow (``supply(base, type(uint256).max)``,
        Comet's repay-all, with base dealt to it) and ``withdraw`` s each of ``collateral`` in full."""
        from analyzer.cheats import deal, read, send_as

        account = to_checksum_address(account)
        comet = self.comet.address
        repaid: dict[str, int] = {}
        if any(to_checksum_address(a) == self.base for a in debt):
            owed = int(read(self.w3, comet, "borrowBalanceOf(address)(uint256)", account))
            if owed:
                held = int(read(self.w3, self.base, "balanceOf(address)(uint256)", account))
                deal(self.w3, self.base, account, held + owed + owed // 1000 + 1)     # interest of the next block
                send_as(self.w3, account, self.base, "approve(address,uint256)", comet, 2**256 - 1, what="approve")
                send_as(self.w3, account, comet, "supply(address,uint256)", self.base, 2**256 - 1,
                        what="comet supply (repay all)")
                spent = held + owed + owed // 1000 + 1 - int(read(self.w3, self.base, "balanceOf(address)(uint256)", account))
                deal(self.w3, self.base, account, held)
                repaid[self.base] = spent
        withdrawn: dict[str, int] = {}
        for asset in sorted({to_checksum_address(a) for a in collateral} - {self.base}):
            balance = int(read(self.w3, comet, "collateralBalanceOf(address,address)(uint128)", account, asset))
            if balance:
                send_as(self.w3, account, comet, "withdraw(address,uint256)", asset, balance, what="comet withdraw")
                withdrawn[asset] = balance
        if int(read(self.w3, comet, "borrowBalanceOf(address)(uint256)", account)):
            raise ContagionError(f"comet: {account} still borrows after repaying all of its base")
        return withdrawn, repaid

    def fund_base(self, asset: str, collateral_raw: int) -> None:
        """Top the keeper's base up (anvil cheat) to what ``collateral_raw`` of ``asset`` costs."""
        from analyzer.cheats import deal

        one_base = 10 ** self.comet.functions.decimals().call()
        per_base = max(self.comet.functions.quoteCollateral(to_checksum_address(asset), one_base).call(), 1)
        need = collateral_raw * one_base // per_base + one_base
        base_token = self.w3.eth.contract(address=self.base, abi=ERC20_ABI)
        have = base_token.functions.balanceOf(self.keeper).call()
        if have < need:
            deal(self.w3, self.base, self.keeper, need)
