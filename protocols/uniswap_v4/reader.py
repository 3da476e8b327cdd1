"""Uniswap V4 reader: the pools of the scanned assets in the PoolManager singleton, at one block.

Pools are found from the PoolManager's ``Initialize`` events (id, currency0, currency1, fee,
tickSpacing, hooks) between the book's ``start_block`` and the scan block, kept when one currency
is a scanned asset or a quote and the other a quote of the book (``quotes``, in order of
preference, as the Uniswap V2 reader pairs them), hooked pools left out (a hook may change a swap's
amounts, which no hook-less simulation can follow).

Native ETH: v4-core's ``Currency`` type names native ETH ``address(0)`` (``CurrencyLibrary.ADDRESS_ZERO``,
src/types/Currency.sol), and on mainnet most of WETH's V4 depth sits in such pools. WETH is ETH
wrapped 1:1 (WETH9 ``deposit``/``withdraw`` exchange them at par), so a native-ETH pool is a
market for WETH: the reader names it by the book's ``weth`` (the chain's WETH) as ``asset`` or
``quote`` and in the venue's ``token0``/``token1``, keeps the pool key's own currencies in
``currency0``/``currency1`` (the executor trades with them), and the simulation is the same pool
maths. A book without ``weth`` leaves native-ETH pools out. Each pool's state is read
with ``extsload(bytes32[])`` (:mod:`protocols.uniswap_v4.state`): slot0, liquidity, every
tickBitmap word, then the liquidityNet of every initialised tick. A pool with a protocol fee set is
left out too (the fee differs per direction; the model has one fee), as is an empty one.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

from analyzer.amm.concentrated_liquidity import Q96, bitmap_words, initialised_ticks
from analyzer.engine.impact import venue_row
from analyzer.multicall import Call
from protocols.base import Reader, Rows, pool_priced_assets
from protocols.uniswap_v4 import state as st
from protocols.uniswap_v4.venue import UniswapV4Venue

ZERO = "0x0000000000000000000000000000000000000000"
INITIALIZE = "0x" + keccak(text="Initialize(bytes32,address,address,uint24,int24,address,uint160,int24)").hex()
EXTSLOAD = "extsload(bytes32[])(bytes32[])"


class UniswapV4Reader(Reader):
    protocol = "uniswap-v4"
    book_keys = ("pool_manager",)

    @property
    def manager(self) -> str:
        return to_checksum_address(self.deployment["pool_manager"])

    def _load(self, slots: list[bytes], what: str) -> list[int]:
        if not slots:
            return []
        result = self.ctx.multicall([Call(self.manager, EXTSLOAD, (slots,))])[0].unwrap(f"uniswap-v4 extsload {what}")
        return [int.from_bytes(bytes(word), "big") for word in result]

    def find_pools(self) -> list[dict]:
        """Initialized hook-less pools of (scanned asset or quote, quote): id, key (``token0``/``token1``
        the key's currencies, address(0) for native ETH), asset, quote (native ETH named as WETH)."""
        weth = self.deployment.get("weth")       # optional: without it native-ETH pools are left out
        weth = to_checksum_address(weth) if weth else None
        quotes = [to_checksum_address(q) for q in self.deployment.get("quotes", [])]
        rank = {q: i for i, q in enumerate(quotes)}
        wanted = {*map(to_checksum_address, self.ctx.assets), *quotes}
        start = int(self.deployment.get("start_block", 0))
        pools = []
        for log in self.ctx.get_logs(self.manager, [INITIALIZE], start, self.ctx.block):
            currency0, currency1 = (to_checksum_address("0x" + bytes(t)[-20:].hex()) for t in log["topics"][2:4])
            fee, spacing, hooks, _, _ = decode(["uint24", "int24", "address", "uint160", "int24"], bytes(log["data"]))
            if int(hooks, 16) != 0 or (currency0 == ZERO and weth is None):
                continue
            token0 = weth if currency0 == ZERO else currency0     # address(0) < every token: always currency0
            if token0 == currency1 or not ({token0, currency1} <= wanted and (token0 in rank or currency1 in rank)):
                continue
            # the preferred quote (earlier in the list) is the quote; the other currency the asset
            quote = min((c for c in (token0, currency1) if c in rank), key=rank.__getitem__)
            asset = currency1 if quote == token0 else token0
            pools.append({"pool": "0x" + bytes(log["topics"][1]).hex(), "token0": currency0, "token1": currency1,
                          "fee": int(fee), "tick_spacing": int(spacing), "asset": asset, "quote": quote})
        return pools

    def read_pools(self) -> list[dict]:
        """Raw pool states (ints) of :meth:`find_pools`: slot0 fields, liquidity, ticks [[tick, net]]."""
        pools = self.find_pools()
        words = self._load([s for p in pools for s in (st.pool_state_slot(p["pool"]), st.liquidity_slot(p["pool"]))],
                           "slot0")
        states = []
        for i, pool in enumerate(pools):
            slot0 = st.decode_slot0(words[2 * i])
            if slot0["sqrt_price_x96"] == 0 or slot0["protocol_fee"] != 0 or words[2 * i + 1] == 0:
                continue
            states.append({**pool, **slot0, "liquidity": words[2 * i + 1]})
        for state in states:
            positions = list(bitmap_words(state["tick_spacing"]))
            bitmap = self._load([st.bitmap_word_slot(state["pool"], w) for w in positions], "tickBitmap")
            ticks = [t for w, word in zip(positions, bitmap, strict=True) if word
                     for t in initialised_ticks(w, word, state["tick_spacing"])]
            infos = self._load([st.tick_info_slot(state["pool"], t) for t in ticks], "ticks")
            state["ticks"] = sorted([t, str(st.liquidity_net(info))] for t, info in zip(ticks, infos, strict=True))
        return states

    def _tokens(self, addresses: list[str]) -> dict[str, tuple[str, int]]:
        calls = [Call(a, sig) for a in addresses for sig in ("symbol()(string)", "decimals()(uint8)")]
        values = [r.unwrap(f"uniswap-v4 token {c.target}") for c, r in zip(calls, self.ctx.multicall(calls),
                                                                            strict=True)]
        return {a: (values[2 * i], values[2 * i + 1]) for i, a in enumerate(addresses)}

    def read_markets(self) -> Rows:
        states = self.read_pools()
        weth = self.deployment.get("weth")
        for s in states:    # the model's tokens: native ETH as WETH (1:1), the key's currencies kept apart
            s["currency0"], s["currency1"] = s["token0"], s["token1"]
            if s["token0"] == ZERO:
                s["token0"] = to_checksum_address(str(weth))
        tokens = self._tokens(sorted({s[k] for s in states for k in ("token0", "token1")}))
        venues, mids = [], {}
        for s in states:
            dec0, dec1 = tokens[s["token0"]][1], tokens[s["token1"]][1]
            params = {"token0": s["token0"], "token1": s["token1"], "currency0": s["currency0"],
                      "currency1": s["currency1"], "decimals0": dec0, "decimals1": dec1,
                      "fee": s["lp_fee"], "tick_spacing": s["tick_spacing"], "sqrt_price_x96": str(s["sqrt_price_x96"]),
                      "tick": s["tick"], "liquidity": str(s["liquidity"]), "ticks": s["ticks"],
                      "pool_manager": self.manager, "key_fee": s["fee"]}
            venues.append(venue_row(self.protocol, s["pool"], s["asset"], s["quote"], UniswapV4Venue.model, params))
            raw = (s["sqrt_price_x96"] / Q96) ** 2 * 10.0 ** (dec0 - dec1)   # token1 per token0, whole units
            mids[(s["asset"], s["quote"])] = raw if s["asset"] == s["token0"] else 1.0 / raw
        return {"assets": pool_priced_assets(tokens, mids), "venues": venues}

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        return []   # liquidity providers hold no lending positions the cascade reads

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        return {}
