"""Real Lyra V1 transactions on anvil: liquidations (``OptionMarket.liquidatePosition``), spot and IV moves.

The spot of the market is ``TestExchangeRates`` (the Synthetix double): :meth:`LyraExecutor.set_price`
moves it; the lending protocols' feeds are moved at their root by the core's price mover
(analyzer/oracles.py), so one shock moves both. The owner of the rates and of the option market is
impersonated (anvil).
"""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import ExecutedLiquidation, OptionExecutor
from protocols.lyra_v1.buyback import shifted_base_iv
from protocols.lyra_v1.devnet import artifact, bytes32
from protocols.lyra_v1.params import UNIT, wad


class LyraExecutor(OptionExecutor):
    protocol = "lyra-v1"

    def __init__(self, w3: Web3, deployment: dict[str, Any], keeper: str, feed_owner: str | None = None):
        super().__init__(w3, deployment, keeper)
        self.market = deployment["markets"][0]
        self.feed_owner = to_checksum_address(feed_owner or deployment["owner"])
        self.owner = to_checksum_address(deployment["owner"])
        self.option_market = self._contract(self.market["optionMarket"], "OptionMarket")
        self.greek_cache = self._contract(self.market["greekCache"], "OptionGreekCache")
        self.option_token = self._contract(self.market["optionToken"], "OptionToken")
        self.rates = self._contract(deployment["exchangeRates"], "TestExchangeRates")

    def _contract(self, address: str, name: str):
        return self.w3.eth.contract(address=to_checksum_address(address), abi=artifact(name)["abi"])

    def _send(self, call: Any, sender: str, what: str) -> dict:
        return send(self.w3, call, sender, f"lyra-v1 {what}", gas=12_000_000, impersonate=True)

    # ---- prices and vols ----
    def _check_underlying(self, asset: str) -> None:
        known = {self.deployment.get("underlying"), self.deployment.get("underlying_token"),
                 self.market["baseAsset"], self.deployment.get("market_key")}
        if asset not in known and to_checksum_address(asset) not in {to_checksum_address(a) for a in known
                                                                      if a and a.startswith("0x")}:
            raise ContagionError(f"lyra-v1 executor: {asset} is not this market's underlying "
                                 f"({self.deployment.get('underlying')})")

    def set_price(self, asset: str, price_usd: float) -> None:
        """Move the market's Synthetix rate (the spot Lyra prices at) to ``price_usd``, at the 8
        decimals of a USD feed."""
        self._check_underlying(asset)
        feed_answer = round(price_usd * 10**8)
        self._send(self.rates.functions.setRateAndInvalid(bytes32(self.deployment["market_key"]),
                                                          feed_answer * 10**10, False),
                   self.owner, "TestExchangeRates.setRateAndInvalid")

    def set_base_iv(self, board_id: int, base_iv: float) -> None:
        """``OptionMarket.setBoardBaseIv`` by the owner: an IV shock on one board (the contract only accepts it
        on a frozen board, so the board is frozen around it)."""
        functions = self.option_market.functions
        self._send(functions.setBoardFrozen(board_id, True), self.owner, "setBoardFrozen")
        self._send(functions.setBoardBaseIv(board_id, wad(round(base_iv, 18))), self.owner, "setBoardBaseIv")
        self._send(functions.setBoardFrozen(board_id, False), self.owner, "setBoardFrozen")

    def shift_iv(self, asset: str, vol_points: float) -> None:
        """Every live, unexpired board's base IV moved by ``vol_points`` (:func:`buyback.shifted_base_iv`, the
        move the engine's rule prices with): :meth:`set_base_iv` per board."""
        self._check_underlying(asset)
        if vol_points == 0:
            return
        now = self.w3.eth.get_block("latest")["timestamp"]
        for board_id in self.option_market.functions.getLiveBoards().call():
            board = self.option_market.functions.getOptionBoard(board_id).call()
            if board[1] > now + 1:
                self.set_base_iv(board_id, shifted_base_iv(board[2] / UNIT, vol_points))

    def update_caches(self) -> None:
        """``OptionGreekCache.updateBoardCachedGreeks`` on every live, unexpired board (anyone may call it; it
        reverts on an expired board, which stays live until settled)."""
        now = self.w3.eth.get_block("latest")["timestamp"]
        for board_id in self.option_market.functions.getLiveBoards().call():
            if self.option_market.functions.getOptionBoard(board_id).call()[1] <= now + 1:
                continue
            self._send(self.greek_cache.functions.updateBoardCachedGreeks(board_id), self.keeper,
                       "updateBoardCachedGreeks")

    # ---- liquidations ----
    def liquidate_position(self, position_id: int) -> ExecutedLiquidation:
        """``OptionMarket.liquidatePosition(positionId, keeper)``; a refused liquidation is a failed result."""
        owner = self.option_token.functions.getPositionWithOwner(position_id).call()[-1]
        try:
            receipt = self._send(self.option_market.functions.liquidatePosition(position_id, self.keeper),
                                 self.keeper, f"liquidatePosition({position_id})")
        except ContagionError as exc:
            return ExecutedLiquidation(account=owner, success=False, error=str(exc)[:300])
        events = self.option_market.events.Trade().process_receipt(receipt, errors=DISCARD)
        seized: dict[str, int] = {}
        fee: dict[str, int] = {}
        if events:
            data = events[0]["args"]["liquidation"]
            seized = {"lp_premiums": int(data["lpPremiums"]), "lp_fee": int(data["lpFee"]),
                      "liquidator_fee": int(data["liquidatorFee"]), "sm_fee": int(data["smFee"]),
                      "return_collateral": int(data["returnCollateral"]),
                      "insolvent_amount": int(data["insolventAmount"])}
            fee = {"sm_fee": int(data["smFee"])}
        return ExecutedLiquidation(account=owner, success=True, tx_hash=receipt["transactionHash"].hex(),
                                   seized=seized, fee=fee)

    def liquidate(self, account: str, debt_asset: str | None = None, collateral_asset: str | None = None,
                  amount_raw: int | None = None) -> ExecutedLiquidation:
        """Liquidate every open short of ``account`` that the market accepts; the first success is returned
        with the others' fee splits summed into it (keys as in :meth:`liquidate_position`)."""
        positions = self.option_token.functions.getOwnerPositions(to_checksum_address(account)).call()
        results = [self.liquidate_position(p[0]) for p in positions if p[2] >= 2]
        done = [r for r in results if r.success]
        if not done:
            return ExecutedLiquidation(account=account, success=False,
                                       error=results[0].error if results else "no short position")
        total: dict[str, int] = {}
        for r in done:
            for key, value in r.seized.items():
                total[key] = total.get(key, 0) + value
        return ExecutedLiquidation(account=account, success=True, tx_hash=done[0].tx_hash, seized=total,
                                   fee={"sm_fee": total.get("sm_fee", 0)})


__all__ = ["LyraExecutor", "UNIT"]
