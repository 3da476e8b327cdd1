"""Real exchanges in StableSwap pools on an anvil chain (replay and tests): ``approve`` then
``exchange(i, j, dx, min_dy)`` on the pool, as a trader calls a Curve pool directly."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from analyzer.chain import require_anvil, rpc
from analyzer.cheats import deal
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import VenueExecutor
from protocols.stableswap import swap_math as ss

MAX_UINT256 = (1 << 256) - 1
ERC20_ABI = [
    {"name": "approve", "type": "function", "stateMutability": "nonpayable",
     "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
     "outputs": [{"type": "bool"}]},
    {"name": "allowance", "type": "function", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
     "outputs": [{"type": "uint256"}]},
]


def pool_abi() -> list:
    return fixture_artifact("stableswap", "StableSwap")["abi"]


@dataclass
class ExecutedExchange:
    """The pool's ``TokenExchange`` event (wei) and its balances after."""

    pool: str
    sold: int
    bought: int
    balances: list[int]
    gas_used: int


def exchange(w3: Web3, pool: str, i: int, j: int, dx: int, sender: str, min_dy: int = 0) -> ExecutedExchange:
    """Sell exactly ``dx`` wei of coin i for coin j in ``pool``; ``sender`` must hold the input."""
    require_anvil(w3)
    pool_c = w3.eth.contract(address=to_checksum_address(pool), abi=pool_abi())
    sender = to_checksum_address(sender)
    rpc(w3, "anvil_impersonateAccount", [sender])
    token = w3.eth.contract(address=pool_c.functions.coins(i).call(), abi=ERC20_ABI)
    if token.functions.allowance(sender, pool_c.address).call() < MAX_UINT256 // 2:
        send(w3, token.functions.approve(pool_c.address, MAX_UINT256), sender, "stableswap approve the pool")
    receipt = send(w3, pool_c.functions.exchange(i, j, dx, min_dy), sender, "stableswap exchange")
    events = pool_c.events.TokenExchange().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ContagionError(f"stableswap exchange: expected one TokenExchange of {pool}, got {len(events)}")
    n = len(pool_abi_coins(w3, pool_c))
    return ExecutedExchange(pool_c.address, int(events[0]["args"]["tokens_sold"]), int(events[0]["args"]["tokens_bought"]),
                            [pool_c.functions.balances(k).call() for k in range(n)], int(receipt["gasUsed"]))


def pool_abi_coins(w3: Web3, pool_c) -> list[str]:
    coins = []
    for k in range(8):
        try:
            coins.append(pool_c.functions.coins(k).call())
        except Exception:   # past the last coin the getter reverts
            break
    return coins


class StableSwapVenueExecutor(VenueExecutor):
    """The StableSwap pools of the address book, traded on an anvil chain (each coin against coin 0)."""

    def __init__(self, w3, deployment: dict, decimals: dict[str, int], symbols: dict[str, str]):
        require_anvil(w3)
        self.w3 = w3
        self.decimals, self.symbols = decimals, symbols
        self.entries = [{"pool": e["pool"], "asset": c, "quote": e["coins"][0], "index": k, "rates": e["rates"]}
                        for e in deployment.get("pools", []) for k, c in enumerate(e["coins"]) if k > 0]

    def _state(self, entry) -> ss.PoolState:
        pool_c = self.w3.eth.contract(address=to_checksum_address(entry["pool"]), abi=pool_abi())
        f = pool_c.functions
        balances = [f.balances(k).call() for k in range(len(entry["rates"]))]
        return ss.PoolState(balances, [int(r) for r in entry["rates"]], f.A_precise().call(), f.fee().call(),
                            f.admin_fee().call())

    def ratio(self, entry) -> float:
        """Quote per asset for a tiny sale (whole tokens)."""
        state = self._state(entry)
        dx = 10 ** max(self.decimals[entry["asset"]] - 3, 0)
        dy = state.exchange_amounts(entry["index"], 0, dx)[0]
        return float(Fraction(dy, dx) * Fraction(10 ** self.decimals[entry["asset"]], 10 ** self.decimals[entry["quote"]]))

    def entry(self, pool: str, asset: str):
        for entry in self.entries:
            if entry["pool"].lower() == pool.lower() and entry["asset"] == asset:
                return entry
        raise ContagionError(f"stableswap: pool {pool} does not trade {asset}")

    def move_to(self, entry, target_ratio: float, trader: str) -> None:
        """Exchange until the pool's price (a tiny sale's) is the closest a whole-wei input gets to
        ``target_ratio`` quote per asset (bisection on the input with the pool's exact math)."""
        state = self._state(entry)
        current = self.ratio(entry)
        if abs(target_ratio / current - 1) < 1e-9:
            return
        sell_asset = target_ratio < current
        i, j = (entry["index"], 0) if sell_asset else (0, entry["index"])
        probe = 10 ** max(self.decimals[entry["asset"]] - 3, 0)
        scale = Fraction(10 ** self.decimals[entry["asset"]], 10 ** self.decimals[entry["quote"]])

        def overshoots(dx: int) -> bool:
            moved = state.copy()
            moved.exchange(i, j, dx)
            price = Fraction(moved.exchange_amounts(entry["index"], 0, probe)[0], probe) * scale
            return price <= Fraction(target_ratio) if sell_asset else price >= Fraction(target_ratio)

        low, high = 1, max(state.balances[i], 1)
        while not overshoots(high):
            high *= 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if overshoots(middle) else (middle, high)
        token = entry["asset"] if sell_asset else entry["quote"]
        deal(self.w3, token, trader, high)
        exchange(self.w3, entry["pool"], i, j, high, trader)

    def sell(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        entry = self.entry(pool, asset) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        deal(self.w3, asset, trader, amount_raw)
        exchange(self.w3, entry["pool"], entry["index"], 0, amount_raw, trader)

    def buy(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        """Buy at least ``amount_raw`` of ``asset``: the smallest input that pays it (no exact-output swap)."""
        entry = self.entry(pool, asset) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        state = self._state(entry)
        low, high = 0, max(1, amount_raw)
        while state.exchange_amounts(0, entry["index"], high)[0] < amount_raw:
            high *= 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if state.exchange_amounts(0, entry["index"], middle)[0] >= amount_raw else (middle, high)
        deal(self.w3, entry["quote"], trader, high)
        exchange(self.w3, entry["pool"], 0, entry["index"], high, trader)
