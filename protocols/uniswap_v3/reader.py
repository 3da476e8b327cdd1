"""Uniswap V3 reader: each pool's swap state at one block into the snapshot's ``venues`` table.

Per pool (``IUniswapV3PoolState`` / ``IUniswapV3PoolImmutables`` of v3-core): ``slot0()`` (sqrtPriceX96,
tick), ``liquidity()``, ``fee()``, ``tickSpacing()``, ``token0()``, ``token1()``; the ``tickBitmap(int16)``
words that can hold an initialised tick, then ``ticks(int24)`` of every initialised tick for its
``liquidityNet``. Everything goes through Multicall3 at the context's block.

Which words: a bitmap bit is set only by ``UniswapV3Pool.mint`` (``_updatePosition`` flips a tick
whose liquidityGross leaves 0; ``burn`` only lowers it), and every mint emits
``Mint(sender, owner, tickLower, tickUpper, ...)``. So when the pools' history since the book's
``start_block`` fits in :data:`MINT_LOG_BLOCKS` (a devnet, a young deployment), the words read are
those of the ticks the pools' ``Mint`` events name: the same initialised ticks as reading every
word between MIN_TICK's and MAX_TICK's (:func:`analyzer.amm.concentrated_liquidity.bitmap_words`:
6,932 words for a 0.01% pool), from a few dozen. Otherwise (a mainnet pool's years of mints), or
when the ticks found contradict the pool's ``liquidity()`` (Tick.cross bookkeeping: the current
liquidity is the sum of liquidityNet at or below the current tick, and all nets sum to zero; a
node that lost logs), every word is read.
The ``params`` written are those :class:`protocols.uniswap_v3.venue.UniswapV3Venue` simulates from.

``assets`` rows: symbol and decimals from the tokens; price_usd implied by the pools (USD
stablecoins quoted at 1.0, other quotes priced through their own pool against a stablecoin).
Lending readers' oracle rows take precedence where the snapshot merges both.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import keccak, to_checksum_address

from analyzer.amm.concentrated_liquidity import Q96, bitmap_words, initialised_ticks
from analyzer.engine.impact import venue_row
from analyzer.errors import ContagionError
from analyzer.multicall import Call
from protocols.base import Reader, Rows, pool_priced_assets

POOL_STATE = {
    "token0": "token0()(address)", "token1": "token1()(address)", "fee": "fee()(uint24)",
    "tick_spacing": "tickSpacing()(int24)", "liquidity": "liquidity()(uint128)",
    "slot0": "slot0()(uint160,int24,uint16,uint16,uint16,uint8,bool)",
}
TICKS = "ticks(int24)(uint128,int128,uint256,uint256,int56,uint160,uint32,bool)"
TICK_BITMAP = "tickBitmap(int16)(uint256)"
MINT = "0x" + keccak(text="Mint(address,address,int24,int24,uint128,uint256,uint256)").hex()
MINT_LOG_BLOCKS = 100_000     # a history up to this long is read as Mint events (one eth_getLogs range)


class UniswapV3Reader(Reader):
    protocol = "uniswap-v3"
    book_keys = ("pools",)

    def _read(self, calls: Sequence[Call], what: str) -> list:
        return [r.unwrap(f"uniswap-v3 {what} {c.target}") for c, r in zip(calls, self.ctx.multicall(calls), strict=True)]

    def read_pools(self) -> list[dict]:
        """Raw pool states (ints), one dict per pool of the deployment."""
        entries = self.deployment.get("pools", [])
        pools = [to_checksum_address(e["pool"]) for e in entries]
        calls = [Call(pool, sig) for pool in pools for sig in POOL_STATE.values()]
        values = self._read(calls, "pool state")
        states = []
        for i, (entry, pool) in enumerate(zip(entries, pools, strict=True)):
            state = dict(zip(POOL_STATE, values[i * len(POOL_STATE):(i + 1) * len(POOL_STATE)], strict=True))
            state["token0"], state["token1"] = to_checksum_address(state["token0"]), to_checksum_address(state["token1"])
            state.update(pool=pool, asset=to_checksum_address(entry["asset"]), quote=to_checksum_address(entry["quote"]))
            if state["asset"] not in (state["token0"], state["token1"]) or state["quote"] not in (state["token0"],
                                                                                                state["token1"]):
                raise ContagionError(f"uniswap-v3 address book: pool {pool} does not trade {entry['asset']}/{entry['quote']}")
            states.append(state)
        minted = self._minted_words(states)
        ticks = self._initialised_ticks(states, minted)
        if minted is not None and not all(_consistent(s, ticks[s["pool"]]) for s in states):
            ticks = self._initialised_ticks(states, None)
        for state in states:
            state["ticks"] = sorted(ticks[state["pool"]])
        return states

    def _minted_words(self, states: list[dict]) -> dict[str, set[int]] | None:
        """The bitmap words of the ticks each pool's Mint events name (None: the history is too
        long to read as events, every word is read instead)."""
        start = int(self.deployment.get("start_block", 0) or 0)
        if not states or self.ctx.block - start + 1 > MINT_LOG_BLOCKS:
            return None
        spacing = {s["pool"]: s["tick_spacing"] for s in states}
        words: dict[str, set[int]] = {pool: set() for pool in spacing}
        for log in self.ctx.get_logs(list(spacing), [MINT], start, self.ctx.block):
            pool = to_checksum_address(log["address"])
            if pool in words and len(log["topics"]) == 4:
                for topic in log["topics"][2:4]:
                    tick = int.from_bytes(bytes(topic), "big", signed=True)
                    words[pool].add((tick // spacing[pool]) >> 8)     # TickBitmap.position
        return words

    def _initialised_ticks(self, states: list[dict], words: dict[str, set[int]] | None) -> dict[str, list[list]]:
        """[[tick, liquidityNet (decimal text)], ...] per pool, from the bitmap ``words`` (None: every word)."""
        word_calls = [(s, w) for s in states
                      for w in (bitmap_words(s["tick_spacing"]) if words is None else sorted(words[s["pool"]]))]
        found = self._read([Call(s["pool"], TICK_BITMAP, (w,)) for s, w in word_calls], "tickBitmap")
        tick_calls = [(state["pool"], t) for (state, pos), word in zip(word_calls, found, strict=True) if word
                      for t in initialised_ticks(pos, word, state["tick_spacing"])]
        infos = self._read([Call(pool, TICKS, (t,)) for pool, t in tick_calls], "ticks")
        nets: dict[str, list[list]] = {s["pool"]: [] for s in states}
        for (pool, tick), info in zip(tick_calls, infos, strict=True):
            nets[pool].append([tick, str(info[1])])
        return nets

    def _tokens(self, addresses: list[str]) -> dict[str, tuple[str, int]]:
        calls = [Call(a, sig) for a in addresses for sig in ("symbol()(string)", "decimals()(uint8)")]
        values = self._read(calls, "token")
        return {a: (values[2 * i], values[2 * i + 1]) for i, a in enumerate(addresses)}

    def read_markets(self) -> Rows:
        states = self.read_pools()
        tokens = self._tokens(sorted({s[k] for s in states for k in ("token0", "token1")}))
        venues, mids = [], {}
        for s in states:
            dec0, dec1 = tokens[s["token0"]][1], tokens[s["token1"]][1]
            params = {"token0": s["token0"], "token1": s["token1"], "decimals0": dec0, "decimals1": dec1,
                      "fee": s["fee"], "tick_spacing": s["tick_spacing"], "sqrt_price_x96": str(s["slot0"][0]),
                      "tick": s["slot0"][1], "liquidity": str(s["liquidity"]), "ticks": s["ticks"]}
            venues.append(venue_row(self.protocol, s["pool"], s["asset"], s["quote"], "uniswap_v3", params))
            raw = (s["slot0"][0] / Q96) ** 2 * 10.0 ** (dec0 - dec1)   # token1 per token0, whole units
            mids[(s["asset"], s["quote"])] = raw if s["asset"] == s["token0"] else 1.0 / raw
        return {"assets": pool_priced_assets(tokens, mids), "venues": venues}

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        return []   # liquidity providers hold no lending positions the cascade reads

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        return {}


def _consistent(state: dict, ticks: list[list]) -> bool:
    """Whether ``ticks`` agree with the pool's liquidity (Tick.cross bookkeeping): the nets at or
    below the current tick sum to ``liquidity()``, and all of them to zero."""
    nets = [(int(t), int(n)) for t, n in ticks]
    return (sum(n for _, n in nets) == 0
            and sum(n for t, n in nets if t <= state["slot0"][1]) == state["liquidity"])
