"""Real swaps in Uniswap V4 pools on an anvil chain, through our router (for replay and tests).

``swap`` sends ``V4Router.swap`` (``amount`` > 0: sell exactly that many wei of ``token_in``; with
``exact_output=True`` receive exactly ``amount`` wei of the other token) from ``sender``, approving
the router first when needed, and returns what the PoolManager's ``Swap`` event says happened.
Native ETH (``token_in`` address(0), v4-core's ``Currency.ADDRESS_ZERO``) is sent as the call's
value, which the router settles with the PoolManager and refunds in part if the pool takes less.

The executor trades the reader's pools, native-ETH ones included: there WETH is the pool's asset
(or quote) and the keeper pays or receives native ETH, 1:1 the WETH it stands for (a sale is funded
with native ETH by ``anvil_setBalance`` as an ERC-20 sale is by :func:`analyzer.cheats.deal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from eth_utils import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from analyzer.chain import require_anvil, rpc
from analyzer.cheats import deal
from analyzer.errors import ContagionError
from analyzer.transactions import send
from protocols.base import VenueExecutor
from protocols.uniswap_v4 import state as st
from protocols.uniswap_v4.contracts import ZERO, erc20_abi, pool_key, pool_manager_artifact, router_artifact

MAX_UINT256 = (1 << 256) - 1
Q96 = 2**96


@dataclass
class ExecutedSwap:
    """The PoolManager's ``Swap`` event: the swapper's balance changes (< 0: paid to the pool)."""

    pool: str
    amount0: int
    amount1: int
    sqrt_price_x96: int     # after
    liquidity: int          # after
    tick: int               # after


def swap(w3: Web3, manager: str, router: str, key: tuple, token_in: str, amount: int, sender: str, *,
         exact_output: bool = False, sqrt_price_limit_x96: int = 0, value: int | None = None) -> ExecutedSwap:
    """Swap in the pool of ``key`` through ``router``; ``sender`` must hold ``token_in`` (wei).
    ``token_in`` address(0): native ETH, ``value`` wei sent along (default: ``amount``; an exact
    output names the most it may pay), what the pool does not take refunded."""
    require_anvil(w3)
    if amount <= 0:
        raise ContagionError(f"uniswap-v4 swap: amount must be a positive number of wei, got {amount}")
    token_in = to_checksum_address(token_in)
    if token_in not in key[:2]:
        raise ContagionError(f"uniswap-v4 swap: pool {key} does not trade {token_in}")
    sender, router = to_checksum_address(sender), to_checksum_address(router)
    rpc(w3, "anvil_impersonateAccount", [sender])
    native = token_in == ZERO
    if native:
        value = amount if value is None else value
    else:
        value = 0
        erc20 = w3.eth.contract(address=token_in, abi=erc20_abi())
        if erc20.functions.allowance(sender, router).call() < MAX_UINT256 // 2:
            send(w3, erc20.functions.approve(router, MAX_UINT256), sender, "uniswap-v4 approve the router")
    router_c = w3.eth.contract(address=router, abi=router_artifact()["abi"])
    specified = amount if exact_output else -amount       # v4-core: negative is exact input
    receipt = send(w3, router_c.functions.swap(key, token_in == key[0], specified, sqrt_price_limit_x96), sender,
                   "uniswap-v4 router swap", value=value)
    manager_c = w3.eth.contract(address=to_checksum_address(manager), abi=pool_manager_artifact()["abi"])
    events = manager_c.events.Swap().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise ContagionError(f"uniswap-v4 swap: expected one Swap event, got {len(events)}")
    args = events[0]["args"]
    return ExecutedSwap("0x" + bytes(args["id"]).hex(), int(args["amount0"]), int(args["amount1"]),
                        int(args["sqrtPriceX96"]), int(args["liquidity"]), int(args["tick"]))


def slot0(w3: Web3, manager: str, pool: str) -> dict[str, int]:
    """The pool's slot0 (StateLibrary.getSlot0) read with ``extsload``."""
    manager_c = w3.eth.contract(address=to_checksum_address(manager), abi=pool_manager_artifact()["abi"])
    word = manager_c.get_function_by_signature("extsload(bytes32)")(st.pool_state_slot(pool)).call()
    return st.decode_slot0(int.from_bytes(bytes(word), "big"))


def deploy_router(w3: Web3, manager: str) -> str:
    """Our unlock-callback router for ``manager``, deployed on an anvil chain (a fork of a chain
    where the book names no router: ours exists only where we put it)."""
    require_anvil(w3)
    artifact = router_artifact()
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    deployer = w3.eth.accounts[0]
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(to_checksum_address(manager)).transact({"from": deployer}))
    if receipt["status"] != 1:
        raise ContagionError(f"uniswap-v4: deploying the router for PoolManager {manager} failed")
    return receipt["contractAddress"]


def discover_pools(w3: Web3, deployment: dict, assets: list[str], blocks_per_query: int = 10_000) -> list[dict]:
    """The pools the reader finds at the chain's head (``Initialize`` events since the book's
    ``start_block``) for ``assets``: pool entries for a book that lists none (a built-in one)."""
    from analyzer.multicall import multicall
    from protocols.base import ReadContext
    from protocols.uniswap_v4.reader import UniswapV4Reader

    block = w3.eth.block_number

    def get_logs(address, topics, start: int, end: int) -> list[dict]:
        return [dict(log) for lo in range(start, end + 1, blocks_per_query)
                for log in w3.eth.get_logs({"address": address, "topics": topics, "fromBlock": lo,
                                            "toBlock": min(lo + blocks_per_query - 1, end)})]

    ctx = ReadContext(w3, w3.eth.chain_id, block, lambda calls: multicall(w3, calls, block=block), get_logs,
                      assets=tuple(assets))
    return UniswapV4Reader(ctx, deployment).find_pools()


class UniswapV4VenueExecutor(VenueExecutor):
    """The Uniswap V4 pools of the address book, read and moved on an anvil chain (for replay).

    A book without ``router`` (a built-in one: our router is not on mainnet) gets ours deployed
    on the fork; a book without ``pools`` trades the pools the reader finds for the snapshot's
    assets (the keys of ``decimals``)."""

    def __init__(self, w3, deployment: dict, decimals: dict[str, int], symbols: dict[str, str]):
        require_anvil(w3)
        self.w3 = w3
        self.manager = deployment["pool_manager"]
        self.router = deployment.get("router") or deploy_router(w3, self.manager)
        self.entries = deployment["pools"] if "pools" in deployment else discover_pools(w3, deployment, list(decimals))
        self.decimals = decimals
        self.symbols = symbols

    @staticmethod
    def key(entry) -> tuple:
        """The PoolKey: the reader's entries carry the key's currencies (``token0``/``token1``,
        address(0) for native ETH), the devnet's book its ERC-20 ``asset`` and ``quote``."""
        if "token0" in entry:
            return (to_checksum_address(entry["token0"]), to_checksum_address(entry["token1"]), int(entry["fee"]),
                    int(entry["tick_spacing"]), ZERO)
        return pool_key(entry["asset"], entry["quote"], entry["fee"], entry["tick_spacing"])

    def currency(self, entry, token: str) -> str:
        """The pool's currency for ``token``: itself, or native ETH where the pool trades ETH for WETH."""
        token = to_checksum_address(token)
        return token if token in self.key(entry)[:2] else ZERO

    def _fund(self, entry, token: str, keeper: str, amount_raw: int) -> str:
        """Give ``keeper`` ``amount_raw`` of ``token`` to pay with (native ETH on top of its gas
        money where the pool trades ETH), and return the currency it pays in."""
        currency = self.currency(entry, token)
        if currency == ZERO:
            rpc(self.w3, "anvil_setBalance", [keeper, hex(self.w3.eth.get_balance(keeper) + amount_raw)])
        else:
            deal(self.w3, token, keeper, amount_raw)
        return currency

    def ratio(self, entry) -> float:
        """Quote per asset in the pool (whole tokens)."""
        sqrt_price = slot0(self.w3, self.manager, entry["pool"])["sqrt_price_x96"]
        asset, quote = entry["asset"], entry["quote"]
        raw = Fraction(sqrt_price * sqrt_price, Q96 * Q96)       # token1 wei per token0 wei
        per_asset_wei = raw if self.key(entry)[0] == self.currency(entry, asset) else 1 / raw
        return float(per_asset_wei * Fraction(10 ** self.decimals[asset], 10 ** self.decimals[quote]))

    def move_to(self, entry, target_ratio: float, keeper: str) -> None:
        """Swap in ``entry``'s pool until its price is ``target_ratio`` (quote per asset)."""
        asset, quote = entry["asset"], entry["quote"]
        current = self.ratio(entry)
        if abs(target_ratio / current - 1) < 1e-9:
            return
        token_in = asset if target_ratio < current else quote
        key = self.key(entry)
        wei_ratio = Fraction(target_ratio) * Fraction(10 ** self.decimals[quote], 10 ** self.decimals[asset])
        token1_per_token0 = wei_ratio if key[0] == self.currency(entry, asset) else 1 / wei_ratio
        limit = int((Fraction(token1_per_token0) * Q96 * Q96) ** 0.5)
        huge = 10 ** (self.decimals[token_in] + 12)
        currency = self._fund(entry, token_in, keeper, huge)
        swap(self.w3, self.manager, self.router, key, currency, huge, keeper, sqrt_price_limit_x96=limit)

    def entry(self, pool: str):
        for entry in self.entries:
            if entry["pool"].lower() == pool.lower():
                return entry
        raise ContagionError(f"uniswap-v4: pool {pool} is not in the address book")

    def sell(self, asset: str, amount_raw: int, keeper: str, pool: str | None = None) -> None:
        """Sell ``amount_raw`` of ``asset`` in ``pool`` (default: its stablecoin pool)."""
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        currency = self._fund(entry, asset, keeper, amount_raw)
        swap(self.w3, self.manager, self.router, self.key(entry), currency, amount_raw, keeper)

    def buy(self, asset: str, amount_raw: int, keeper: str, pool: str | None = None) -> None:
        """Buy exactly ``amount_raw`` of ``asset`` in ``pool`` (default: its stablecoin pool)."""
        entry = self.entry(pool) if pool else self.primary(asset)
        if entry is None or amount_raw <= 0:
            return
        budget = 10 ** (self.decimals[entry["quote"]] + 15)
        currency = self._fund(entry, entry["quote"], keeper, budget)
        swap(self.w3, self.manager, self.router, self.key(entry), currency, amount_raw, keeper,
             exact_output=True, value=budget)
