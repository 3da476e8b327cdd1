"""Real Compound V2 liquidations and oracle moves on an anvil chain.

``liquidate`` sends ``liquidateBorrow`` from the keeper (an anvil account or an impersonated
address) and reads what happened from the receipt: ``LiquidateBorrow`` gives the repaid amount
and the seized cTokens, the collateral cToken's ``Transfer`` to itself the protocol's share.
Raw amounts: repaid in underlying units of the debt asset, seized and fee in cTokens (8 decimals)
of the collateral market. ``set_price`` moves the root feed behind the market's oracle source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak, to_checksum_address

from analyzer.chain import rpc
from analyzer.cheats import deal
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.multicall import Call, single_call
from analyzer.transactions import send
from protocols.base import ExecutedLiquidation, Executor
from protocols.compound_v2 import exact
from protocols.compound_v2.constants import MANTISSA, NATIVE_ASSET, PROTOCOL
from protocols.compound_v2.profiles import profile

TRANSFER_TOPIC = keccak(text="Transfer(address,address,uint256)")
ERC20_ABI = [
    {"type": "function", "name": "approve", "stateMutability": "nonpayable",
     "inputs": [{"name": "s", "type": "address"}, {"name": "v", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "mint", "stateMutability": "nonpayable",
     "inputs": [{"name": "a", "type": "address"}, {"name": "v", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "a", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "allowance", "stateMutability": "view",
     "inputs": [{"name": "o", "type": "address"}, {"name": "s", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
]


def _words(data: Any) -> list[bytes]:
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else bytes(data)
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]



@dataclass
class CTokenLiquidation(ExecutedLiquidation):
    """A ``liquidateBorrow``: ``seized``/``fee`` in the underlying, and the cTokens behind them."""

    seized_ctokens: dict[str, int] = field(default_factory=dict)   # underlying -> cTokens (liquidator + protocol)
    fee_ctokens: dict[str, int] = field(default_factory=dict)

class CompoundV2Executor(Executor):
    """Liquidations through a deployment's cTokens (``deployment["markets"]``: symbol -> cToken,
    underlying, decimals, feed) and price moves through its feeds."""

    protocol = PROTOCOL

    def __init__(self, w3, deployment: dict[str, Any], keeper: str):
        super().__init__(w3, deployment, keeper)
        self.keeper = to_checksum_address(keeper)
        self.profile = profile(deployment.get("profile"))
        self.liquidate_topic = keccak(text=self.profile.liquidate_event)
        self.ctoken_abi = fixture_artifact("compound_v2", "CErc20")["abi"]
        self.ether_abi = fixture_artifact("compound_v2", "CEther")["abi"]
        self.comptroller = w3.eth.contract(address=to_checksum_address(deployment["comptroller"]),
                                           abi=fixture_artifact("compound_v2", "Comptroller")["abi"])
        markets = deployment.get("markets") or self._markets_from_chain()
        self.by_ctoken = {to_checksum_address(m["cToken"]): dict(m) for m in markets.values()}

    def _markets_from_chain(self) -> dict[str, dict[str, Any]]:
        """The markets of a deployment known only by its Comptroller (a mainnet fork)."""
        block = self.w3.eth.block_number
        markets = {}
        for ctoken in self.comptroller.functions.getAllMarkets().call():
            result = single_call(self.w3, Call(ctoken, "underlying()(address)"), block=block)
            underlying = to_checksum_address(result.value) if result.success else NATIVE_ASSET
            markets[ctoken] = {"cToken": to_checksum_address(ctoken), "underlying": underlying}
        return markets

    def _market(self, key: str) -> dict[str, Any]:
        """The market a book column names: its cToken (:meth:`LendingBook.column_key`), or an
        underlying that one market alone lists (two markets of one underlying need the cToken)."""
        key = to_checksum_address(key)
        if key in self.by_ctoken:
            return self.by_ctoken[key]
        hits = [m for m in self.by_ctoken.values() if to_checksum_address(m["underlying"]) == key]
        if len(hits) != 1:
            raise ContagionError(f"compound-v2: {'no' if not hits else 'more than one'} market for asset {key} in "
                                 "the deployment" + (" (name the cToken)" if hits else ""))
        return hits[0]

    def _send(self, call, sender: str, what: str) -> None:
        send(self.w3, call, sender, f"compound-v2: {what}")

    def set_price(self, asset: str, price_usd: float) -> None:
        """Make the Comptroller's oracle price ``asset`` at ``price_usd``: the root feed behind the
        market's feed is moved (analyzer/oracles.py). A market whose oracle reverts is refused."""
        from analyzer.oracles import set_protocol_price
        from protocols.compound_v2.prices import CompoundV2PriceSources

        if not any(to_checksum_address(m["underlying"]) == to_checksum_address(asset)
                   for m in self.by_ctoken.values()):
            raise ContagionError(f"compound-v2: no market for asset {asset} in the deployment")
        set_protocol_price(self.w3, self.protocol, CompoundV2PriceSources(self.w3, self.deployment).price_sources(),
                           asset, price_usd)

    def _deploy(self, artifact: dict, *args: Any):
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = send(self.w3, factory.constructor(*args), self.keeper, "compound-v2: deploying the replay oracle")
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])

    def fund_keeper(self, asset: str, amount_raw: int) -> None:
        """Give the keeper ``amount_raw`` more of the debt asset (ETH balance, or the ERC-20's balance slot)."""
        market = self._market(asset)
        if to_checksum_address(market["underlying"]) == to_checksum_address(NATIVE_ASSET):
            balance = self.w3.eth.get_balance(self.keeper)
            rpc(self.w3, "anvil_setBalance", [self.keeper, hex(balance + amount_raw)])
            return
        token = self.w3.eth.contract(address=to_checksum_address(market["underlying"]), abi=ERC20_ABI)
        deal(self.w3, token.address, self.keeper, token.functions.balanceOf(self.keeper).call() + amount_raw)

    def max_repay(self, account: str, debt_asset: str, collateral_asset: str) -> int:
        """close factor × borrowBalanceStored (all of it in a deprecated market), capped so that the
        seize fits the cToken balance."""
        debt, coll = self._market(debt_asset), self._market(collateral_asset)
        debt_token = self.w3.eth.contract(address=debt["cToken"], abi=self.ctoken_abi)
        coll_token = self.w3.eth.contract(address=coll["cToken"], abi=self.ctoken_abi)
        borrowed = debt_token.functions.borrowBalanceStored(account).call()
        close = borrowed if self.is_deprecated(debt["cToken"]) else \
            exact.max_close(self.comptroller.functions.closeFactorMantissa().call(), borrowed)
        balance = coll_token.functions.balanceOf(account).call()
        _, seize_for_close = self.comptroller.functions.liquidateCalculateSeizeTokens(
            debt["cToken"], coll["cToken"], close).call()
        if seize_for_close <= balance:
            return close
        return close * balance // max(seize_for_close, 1)

    def close_account(self, account: str, collateral: Sequence[str], debt: Sequence[str]
                      ) -> tuple[dict[str, int], dict[str, int]]:
        """A forced sale: ``account`` repays its whole borrow in every cToken of each of ``debt``
        (``repayBorrow(type(uint256).max)``, the underlying dealt to it), then ``redeem`` s all its
        cTokens of each of ``collateral``. Underlyings (what the snapshot's positions name); a
        native-asset (CEther) borrow is refused: its repayBorrow takes the exact amount as value."""
        from analyzer.cheats import read, send_as

        account = to_checksum_address(account)
        markets = list(self.by_ctoken.values())

        def of(asset: str) -> list[str]:
            found = [to_checksum_address(m["cToken"]) for m in markets
                     if to_checksum_address(m["underlying"]) == to_checksum_address(asset)]
            if not found:
                raise ContagionError(f"compound-v2: no cToken of {asset} in {self.deployment['comptroller']}")
            return found

        def balance(token: str) -> int:
            return int(read(self.w3, token, "balanceOf(address)(uint256)", account))

        repaid: dict[str, int] = {}
        for asset in sorted({to_checksum_address(a) for a in debt}):
            for ctoken in of(asset):
                owed = int(read(self.w3, ctoken, "borrowBalanceStored(address)(uint256)", account))
                if not owed:
                    continue
                if asset == to_checksum_address(NATIVE_ASSET):
                    raise ContagionError(f"compound-v2: a forced sale of {account}'s native-asset borrow is not replayed")
                held, dealt = balance(asset), owed + owed // 1000 + 1        # the interest accrued on repaying
                deal(self.w3, asset, account, held + dealt)
                send_as(self.w3, account, asset, "approve(address,uint256)", ctoken, 2**256 - 1, what="approve")
                send_as(self.w3, account, ctoken, "repayBorrow(uint256)", 2**256 - 1, what=f"repayBorrow all ({ctoken})")
                repaid[asset] = repaid.get(asset, 0) + held + dealt - balance(asset)
                deal(self.w3, asset, account, held)
                if int(read(self.w3, ctoken, "borrowBalanceStored(address)(uint256)", account)):
                    raise ContagionError(f"compound-v2: {account} still borrows from {ctoken} after repaying all")
        withdrawn: dict[str, int] = {}
        for asset in sorted({to_checksum_address(a) for a in collateral}):
            for ctoken in of(asset):
                shares = balance(ctoken)
                if not shares:
                    continue
                native = asset == to_checksum_address(NATIVE_ASSET)
                held = self.w3.eth.get_balance(account) if native else balance(asset)
                receipt = send_as(self.w3, account, ctoken, "redeem(uint256)", shares, what=f"redeem all ({ctoken})")
                gas = int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"]) if native else 0
                now = self.w3.eth.get_balance(account) if native else balance(asset)
                withdrawn[asset] = withdrawn.get(asset, 0) + now + gas - held
                if balance(ctoken):
                    raise ContagionError(f"compound-v2: {ctoken} refused to redeem all of {account}'s cTokens")
        return withdrawn, repaid

    def is_deprecated(self, ctoken: str) -> bool:
        """The profile's forced-liquidation view (Compound's isDeprecated) for ``ctoken``: anyone may
        repay all of a borrow there (False for a fork without one)."""
        if not self.profile.forced_liquidation_signature:
            return False
        answer = single_call(self.w3, Call(self.comptroller.address, self.profile.forced_liquidation_signature,
                                           (ctoken,)), block=self.w3.eth.block_number)
        return bool(answer.success and answer.value)

    def liquidate(self, account: str, debt_asset: str | None, collateral_asset: str | None,
                  amount_raw: int | None = None, dry_run: bool = False) -> ExecutedLiquidation:
        """``liquidateBorrow`` on ``debt_asset``'s cToken seizing ``collateral_asset``'s (each a cToken,
        or an underlying one market alone lists; the outcome is keyed by underlying); ``dry_run``
        only asks the chain whether it would succeed (an eth_call, nothing sent but the keeper's
        funding and approval)."""
        account = to_checksum_address(account)
        if debt_asset is None or collateral_asset is None:
            raise ContagionError("compound-v2: liquidate needs the debt and the collateral asset")
        debt, coll = self._market(debt_asset), self._market(collateral_asset)
        repay = self.max_repay(account, debt_asset, collateral_asset) if amount_raw is None else int(amount_raw)
        if repay <= 0:     # LiquidateCloseAmountIsZero: the collateral left is dust worth under one repay unit
            return ExecutedLiquidation(account, False, error="collateral left is dust: the close amount rounds to 0")
        native = to_checksum_address(debt["underlying"]) == to_checksum_address(NATIVE_ASSET)
        tx: dict[str, Any] = {"from": self.keeper}
        if native:
            if self.w3.eth.get_balance(self.keeper) < repay + 10**20:  # what it repays, plus gas money
                self.fund_keeper(debt_asset, repay + 10**20)
            call = self.w3.eth.contract(address=debt["cToken"], abi=self.ether_abi).functions.liquidateBorrow(
                account, coll["cToken"])
            tx["value"] = repay
        else:
            token = self.w3.eth.contract(address=to_checksum_address(debt["underlying"]), abi=ERC20_ABI)
            held = token.functions.balanceOf(self.keeper).call()
            if held < repay:  # a keeper on anvil is topped up with what it repays
                self.fund_keeper(debt_asset, repay - held)
            if token.functions.allowance(self.keeper, debt["cToken"]).call() < repay:
                self._send(token.functions.approve(debt["cToken"], 2**256 - 1), self.keeper, "approve")
            call = self.w3.eth.contract(address=debt["cToken"], abi=self.ctoken_abi).functions.liquidateBorrow(
                account, repay, coll["cToken"])
        try:
            if dry_run:
                call.call(tx)
                return ExecutedLiquidation(account, True)
            receipt = send(self.w3, call, self.keeper, "compound-v2: liquidateBorrow", value=tx.get("value", 0),
                           margin=1.3)
        except Exception as exc:  # a revert: the protocol refused the liquidation
            return ExecutedLiquidation(account, False, error=str(exc)[:300])
        return self._outcome(account, receipt, debt["underlying"], coll["underlying"], coll["cToken"])

    def _outcome(self, account: str, receipt, debt_asset: str, collateral_asset: str, coll_ctoken: str):
        """Repaid and seized from ``LiquidateBorrow`` (layout per fork profile); the protocol's share
        is what the borrower lost beyond the liquidator's ``Transfer`` (burned to reserves in
        Compound, sent to the protocol share reserve in Venus isolated pools).

        Seized cTokens are reported as the underlying they redeem for (``cTokens ×
        exchangeRateStored / 1e18``, truncated as ``redeem`` does, at the liquidation's block), the
        unit every executor reports collateral in; the cToken amounts are ``seized_ctokens``."""
        repaid = seized = to_liquidator = 0
        for log in receipt["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            if topics and topics[0] == self.liquidate_topic:
                words = _words(log["data"])
                repaid = int.from_bytes(words[self.profile.liquidate_repay_word], "big")
                seized = int.from_bytes(words[self.profile.liquidate_seize_word], "big")
            elif (topics and topics[0] == TRANSFER_TOPIC and to_checksum_address(log["address"]) == coll_ctoken
                  and len(topics) == 3 and to_checksum_address(topics[1][12:]) == account
                  and to_checksum_address(topics[2][12:]) == self.keeper):
                to_liquidator += int.from_bytes(_words(log["data"])[0], "big")
        rate = self.w3.eth.contract(address=coll_ctoken, abi=self.ctoken_abi).functions.exchangeRateStored().call(
            block_identifier=receipt["blockNumber"])
        collateral = to_checksum_address(collateral_asset)
        return CTokenLiquidation(account, True, tx_hash=receipt["transactionHash"].hex(),
                                 repaid={to_checksum_address(debt_asset): repaid},
                                 seized={collateral: seized * rate // MANTISSA},
                                 fee={collateral: (seized - to_liquidator) * rate // MANTISSA},
                                 seized_ctokens={collateral: seized}, fee_ctokens={collateral: seized - to_liquidator})
