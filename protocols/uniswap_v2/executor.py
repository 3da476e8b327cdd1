"""Real swaps in Uniswap V2 pairs on an anvil chain (replay and tests).

No router ships in @uniswap/v2-core, so a swap is what ``UniswapV2Router02`` does for one hop:
transfer the input to the pair, then ``UniswapV2Pair.swap(amount0Out, amount1Out, to, "")`` with
the output of ``getAmountOut`` (exact input) or for exactly the output asked, having paid
``getAmountIn`` (exact output), both computed from the pair's reserves at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from analyzer.chain import require_anvil, rpc
from analyzer.cheats import deal
from analyzer.devnet.context import npm_artifact
from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import VenueExecutor
from protocols.uniswap_v2 import swap_math as v2


def pair_abi() -> list:
    return npm_artifact("@uniswap/v2-core", "UniswapV2Pair")["abi"]


def erc20_abi() -> list:
    return npm_artifact("@uniswap/v2-core", "ERC20", "build")["abi"]


@dataclass
class ExecutedSwap:
    """The pair's ``Swap`` event and reserves after it (wei)."""

    pair: str
    amount0_in: int
    amount1_in: int
    amount0_out: int
    amount1_out: int
    reserve0: int
    reserve1: int
    gas_used: int


def swap(w3: Web3, pair: str, token_in: str, amount: int, sender: str, *, exact_output: bool = False) -> ExecutedSwap:
    """Sell exactly ``amount`` wei of ``token_in`` in ``pair`` (or buy exactly ``amount`` wei of the
    other token with ``exact_output``); ``sender`` must hold the input."""
    require_anvil(w3)
    pair_c = w3.eth.contract(address=to_checksum_address(pair), abi=pair_abi())
    token0, token1 = pair_c.functions.token0().call(), pair_c.functions.token1().call()
    token_in = to_checksum_address(token_in)
    if token_in not in (token0, token1):
        raise ContagionError(f"uniswap-v2 swap: pair {pair} does not trade {token_in}")
    reserve0, reserve1, _ = pair_c.functions.getReserves().call()
    zero_in = token_in == token0
    reserve_in, reserve_out = (reserve0, reserve1) if zero_in else (reserve1, reserve0)
    try:
        if exact_output:
            amount_out, amount_in = amount, v2.get_amount_in(amount, reserve_in, reserve_out)
        else:
            amount_in, amount_out = amount, v2.get_amount_out(amount, reserve_in, reserve_out)
    except v2.SwapMathError as exc:
        raise ContagionError(f"uniswap-v2 swap of {amount} in {pair}: {exc}") from None
    sender = to_checksum_address(sender)
    rpc(w3, "anvil_impersonateAccount", [sender])
    token = w3.eth.contract(address=token_in, abi=erc20_abi())
    send(w3, token.functions.transfer(pair_c.address, amount_in), sender, "uniswap-v2 transfer to the pair")
    outs = (0, amount_out) if zero_in else (amount_out, 0)
    receipt = send(w3, pair_c.functions.swap(*outs, sender, b""), sender, "uniswap-v2 UniswapV2Pair.swap")
    events = pair_c.events.Swap().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ContagionError(f"uniswap-v2 swap: expected one Swap event of {pair}, got {len(events)}")
    args = events[0]["args"]
    after = pair_c.functions.getReserves().call()
    return ExecutedSwap(pair_c.address, int(args["amount0In"]), int(args["amount1In"]), int(args["amount0Out"]),
                        int(args["amount1Out"]), int(after[0]), int(after[1]), int(receipt["gasUsed"]))


class UniswapV2VenueExecutor(VenueExecutor):
    """The Uniswap V2 pairs of the address book (``pairs``), read and traded on an anvil chain."""

    def __init__(self, w3, deployment: dict, decimals: dict[str, int], symbols: dict[str, str]):
        require_anvil(w3)
        self.w3 = w3
        self.entries = [{**e, "pool": e["pair"]} for e in deployment.get("pairs", [])]
        self.decimals = decimals
        self.symbols = symbols

    def _reserves(self, entry) -> tuple[int, int]:
        """(asset wei, quote wei) in the pair now."""
        pair = self.w3.eth.contract(address=to_checksum_address(entry["pair"]), abi=pair_abi())
        reserve0, reserve1, _ = pair.functions.getReserves().call()
        asset_is_token0 = int(entry["asset"], 16) < int(entry["quote"], 16)
        return (reserve0, reserve1) if asset_is_token0 else (reserve1, reserve0)

    def ratio(self, entry) -> float:
        """Quote per asset in the pair (whole tokens)."""
        asset_raw, quote_raw = self._reserves(entry)
        return float(Fraction(quote_raw, asset_raw) * Fraction(10 ** self.decimals[entry["asset"]],
                                                               10 ** self.decimals[entry["quote"]]))

    def entry(self, pool: str):
        for entry in self.entries:
            if entry["pair"].lower() == pool.lower():
                return entry
        raise ContagionError(f"uniswap-v2: pair {pool} is not in the address book")

    def move_to(self, entry, target_ratio: float, trader: str) -> None:
        """Swap until the pair's price is the closest a whole-wei input gets to ``target_ratio``
        (bisection on the input with the pair's exact math: the price after is monotone in it)."""
        asset_raw, quote_raw = self._reserves(entry)
        scale = Fraction(10 ** self.decimals[entry["quote"]], 10 ** self.decimals[entry["asset"]])
        target = Fraction(target_ratio) * scale      # quote wei per asset wei
        current = Fraction(quote_raw, asset_raw)
        if abs(target / current - 1) < Fraction(1, 10**9):
            return
        sell_asset = target < current
        reserve_in, reserve_out = (asset_raw, quote_raw) if sell_asset else (quote_raw, asset_raw)

        def price_after(amount_in: int) -> Fraction:
            out = v2.get_amount_out(amount_in, reserve_in, reserve_out)
            x, y = reserve_in + amount_in, reserve_out - out
            return Fraction(y, x) if sell_asset else Fraction(x, y)

        def overshoots(amount_in: int) -> bool:
            return price_after(amount_in) <= target if sell_asset else price_after(amount_in) >= target

        low, high = 1, reserve_in
        while not overshoots(high):
            high *= 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if overshoots(middle) else (middle, high)
        token_in = entry["asset"] if sell_asset else entry["quote"]
        deal(self.w3, token_in, trader, high)
        swap(self.w3, entry["pair"], token_in, high, trader)

    def sell(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        deal(self.w3, asset, trader, amount_raw)
        swap(self.w3, entry["pair"], asset, amount_raw, trader)

    def buy(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        asset_raw, quote_raw = self._reserves(entry)
        deal(self.w3, entry["quote"], trader, v2.get_amount_in(amount_raw, quote_raw, asset_raw))
        swap(self.w3, entry["pair"], entry["quote"], amount_raw, trader, exact_output=True)
