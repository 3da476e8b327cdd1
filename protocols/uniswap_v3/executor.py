"""Real swaps on an anvil chain through the deployed SwapRouter (for replay and for tests).

``swap`` sends ``SwapRouter.exactInputSingle`` (``amount`` > 0: sell exactly that many wei of
``token_in``) or ``exactOutputSingle`` (``exact_output=True``: receive exactly ``amount`` wei of the
other token) from ``sender`` (an anvil account or an impersonated address), approving the router
first when needed, and returns what the pool's ``Swap`` event says happened.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from analyzer.chain import REPO_ROOT, require_anvil, rpc
from analyzer.cheats import deal
from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import VenueExecutor

ABIS = REPO_ROOT / "abis" / "uniswap_v3"
MAX_UINT256 = (1 << 256) - 1


@cache
def abi(name: str) -> list:
    return json.loads((ABIS / f"{name}.json").read_text())


@dataclass
class ExecutedSwap:
    """The pool's ``Swap`` event: balance changes from the pool's side (> 0: the pool received)."""

    pool: str
    amount0: int
    amount1: int
    sqrt_price_x96: int     # after
    liquidity: int          # after
    tick: int               # after
    tx_hash: str
    gas_used: int


def swap(w3: Web3, router: str, pool: str, token_in: str, amount: int, sender: str, *,
         exact_output: bool = False, sqrt_price_limit_x96: int = 0, deadline: int = 1 << 64) -> ExecutedSwap:
    """Swap through ``router`` in ``pool``; ``sender`` must hold ``token_in`` (wei amounts)."""
    require_anvil(w3)
    if amount <= 0:
        raise ContagionError(f"uniswap-v3 swap: amount must be a positive number of wei, got {amount}")
    pool_c = w3.eth.contract(address=to_checksum_address(pool), abi=abi("UniswapV3Pool"))
    token0, token1, fee = (pool_c.functions.token0().call(), pool_c.functions.token1().call(),
                           pool_c.functions.fee().call())
    token_in = to_checksum_address(token_in)
    if token_in not in (token0, token1):
        raise ContagionError(f"uniswap-v3 swap: pool {pool} does not trade {token_in}")
    token_out = token1 if token_in == token0 else token0
    sender = to_checksum_address(sender)
    router = to_checksum_address(router)
    rpc(w3, "anvil_impersonateAccount", [sender])
    erc20 = w3.eth.contract(address=token_in, abi=abi("ERC20"))
    if erc20.functions.allowance(sender, router).call() < MAX_UINT256 // 2:
        send(w3, erc20.functions.approve(router, MAX_UINT256), sender, "uniswap-v3 approve the SwapRouter")
    router_c = w3.eth.contract(address=router, abi=abi("SwapRouter"))
    if exact_output:
        call = router_c.functions.exactOutputSingle((token_in, token_out, fee, sender, deadline, amount,
                                                     MAX_UINT256 >> 1, sqrt_price_limit_x96))
    else:
        call = router_c.functions.exactInputSingle((token_in, token_out, fee, sender, deadline, amount, 0,
                                                    sqrt_price_limit_x96))
    receipt = send(w3, call, sender, "uniswap-v3 SwapRouter swap")
    events = pool_c.events.Swap().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ContagionError(f"uniswap-v3 swap: expected one Swap event of {pool}, got {len(events)}")
    args = events[0]["args"]
    return ExecutedSwap(pool_c.address, int(args["amount0"]), int(args["amount1"]), int(args["sqrtPriceX96"]),
                        int(args["liquidity"]), int(args["tick"]), receipt["transactionHash"].hex(),
                        int(receipt["gasUsed"]))


Q96 = 2**96


class UniswapV3VenueExecutor(VenueExecutor):
    """The Uniswap V3 pools of the address book, read and moved on an anvil chain (for replay)."""

    POOL_ABI = [
        {"name": "slot0", "type": "function", "stateMutability": "view", "inputs": [],
         "outputs": [{"type": "uint160"}, {"type": "int24"}, {"type": "uint16"}, {"type": "uint16"},
                     {"type": "uint16"}, {"type": "uint8"}, {"type": "bool"}]},
        {"name": "token0", "type": "function", "stateMutability": "view", "inputs": [], "outputs": [{"type": "address"}]},
    ]

    def __init__(self, w3, deployment: dict, decimals: dict[str, int], symbols: dict[str, str]):
        require_anvil(w3)
        self.w3 = w3
        self.router = deployment["router"]
        self.entries = deployment.get("pools", [])
        self.decimals = decimals
        self.symbols = symbols

    def _pool(self, entry):
        return self.w3.eth.contract(address=to_checksum_address(entry["pool"]), abi=self.POOL_ABI)

    def ratio(self, entry) -> float:
        """Quote per asset in the pool (whole tokens)."""
        sqrt_price = self._pool(entry).functions.slot0().call()[0]
        asset, quote = entry["asset"], entry["quote"]
        raw = Fraction(sqrt_price * sqrt_price, Q96 * Q96)       # token1 wei per token0 wei
        asset_is_token0 = int(asset, 16) < int(quote, 16)
        per_asset_wei = raw if asset_is_token0 else 1 / raw
        return float(per_asset_wei * Fraction(10 ** self.decimals[asset], 10 ** self.decimals[quote]))

    def move_to(self, entry, target_ratio: float, keeper: str) -> None:
        """Swap in ``entry``'s pool until its price is ``target_ratio`` (quote per asset)."""
        asset, quote = entry["asset"], entry["quote"]
        current = self.ratio(entry)
        if abs(target_ratio / current - 1) < 1e-9:
            return
        sell_asset = target_ratio < current
        token_in = asset if sell_asset else quote
        asset_is_token0 = int(asset, 16) < int(quote, 16)
        wei_ratio = Fraction(target_ratio) * Fraction(10 ** self.decimals[quote], 10 ** self.decimals[asset])
        token1_per_token0 = wei_ratio if asset_is_token0 else 1 / wei_ratio
        limit = int((Fraction(token1_per_token0) * Q96 * Q96) ** 0.5)
        huge = 10 ** (self.decimals[token_in] + 12)
        deal(self.w3, token_in, keeper, huge)
        swap(self.w3, self.router, entry["pool"], token_in, huge, keeper, sqrt_price_limit_x96=limit)

    def entry(self, pool: str):
        """The address book entry of the pool at ``pool``."""
        for entry in self.entries:
            if entry["pool"].lower() == pool.lower():
                return entry
        raise ContagionError(f"uniswap-v3: pool {pool} is not in the address book")

    def sell(self, asset: str, amount_raw: int, keeper: str, pool: str | None = None) -> None:
        """Sell ``amount_raw`` of ``asset`` in ``pool`` (default: its primary, stablecoin pool)."""
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        deal(self.w3, asset, keeper, amount_raw)
        swap(self.w3, self.router, entry["pool"], asset, amount_raw, keeper)

    def buy(self, asset: str, amount_raw: int, keeper: str, pool: str | None = None) -> None:
        """Buy exactly ``amount_raw`` of ``asset`` in ``pool`` (default: its primary pool)."""
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        deal(self.w3, entry["quote"], keeper, 10 ** (self.decimals[entry["quote"]] + 15))
        swap(self.w3, self.router, entry["pool"], entry["quote"], amount_raw, keeper, exact_output=True)
