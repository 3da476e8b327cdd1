"""Uniswap V3 reader: each pool's swap state at one block into the snapshot's ``venues`` table.

Per pool (``IUniswapV3PoolState`` / ``IUniswapV3PoolImmutables`` of v3-core): ``slot0()`` (sqrtPriceX96,
tick), ``liquidity()``, ``fee()``, ``tickSpacing()``, ``token0()``, ``token1()``; every word of
``tickBitmap(int16)`` between the words of MIN_TICK and MAX_TICK
(:func:`analyzer.amm.concentrated_liquidity.bitmap_words`), then ``ticks(int24)`` of every
initialised tick for its ``liquidityNet``. Everything goes through Multicall3 at the context's block.
The ``params`` written are those :class:`protocols.uniswap_v3.venue.UniswapV3Venue` simulates from.

``assets`` rows: symbol and decimals from the tokens; price_usd implied by the pools (USD
stablecoins quoted at 1.0, other quotes priced through their own pool against a stablecoin).
Lending readers' oracle rows take precedence where the snapshot merges both.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address

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
        word_calls = [(s, w) for s in states for w in bitmap_words(s["tick_spacing"])]
        words = self._read([Call(s["pool"], TICK_BITMAP, (w,)) for s, w in word_calls], "tickBitmap")
        by_pool: dict[str, list[int]] = {s["pool"]: [] for s in states}
        for (state, pos), word in zip(word_calls, words, strict=True):
            if word:
                by_pool[state["pool"]].extend(initialised_ticks(pos, word, state["tick_spacing"]))
        tick_calls = [(pool, t) for pool, ticks in by_pool.items() for t in ticks]
        infos = self._read([Call(pool, TICKS, (t,)) for pool, t in tick_calls], "ticks")
        nets: dict[str, list[list]] = {s["pool"]: [] for s in states}
        for (pool, tick), info in zip(tick_calls, infos, strict=True):
            nets[pool].append([tick, str(info[1])])
        for state in states:
            state["ticks"] = sorted(nets[state["pool"]])
        return states

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
