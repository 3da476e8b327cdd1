"""Uniswap V2 reader: the pairs of the scanned assets against the main quote assets, at one block.

Pairs are found as a router finds them, ``UniswapV2Factory.getPair(tokenA, tokenB)`` (zero when
there is none), for every asset the scan found so far (``ReadContext.assets``) against each of
the deployment's ``quotes`` (in order of preference: USD stablecoins, then WETH). Per pair:
``token0()``, ``token1()``, ``getReserves()`` through Multicall3 at the context's block. A pair of
two quotes (WETH/USDC) trades the later quote of the list against the earlier one.

``assets`` rows: symbol and decimals from the tokens, price_usd implied by the pairs (USD
stablecoins at 1.0); lending readers' oracle rows take precedence where the snapshot merges both.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address

from analyzer.engine.impact import venue_row
from analyzer.multicall import Call
from protocols.base import Reader, Rows, pool_priced_assets
from protocols.uniswap_v2.venue import UniswapV2Venue

ZERO = "0x0000000000000000000000000000000000000000"
GET_PAIR = "getPair(address,address)(address)"
PAIR_STATE = {"token0": "token0()(address)", "token1": "token1()(address)",
              "reserves": "getReserves()(uint112,uint112,uint32)"}


class UniswapV2Reader(Reader):
    protocol = "uniswap-v2"
    book_keys = ("factory",)

    def _read(self, calls: Sequence[Call], what: str) -> list:
        return [r.unwrap(f"uniswap-v2 {what} {c.target}") for c, r in zip(calls, self.ctx.multicall(calls), strict=True)]

    def quotes(self) -> list[str]:
        return [to_checksum_address(q) for q in self.deployment.get("quotes", [])]

    def find_pairs(self) -> list[dict]:
        """Every existing pair of (scanned asset, quote), each once: pair, asset, quote addresses."""
        quotes = self.quotes()
        rank = {q: i for i, q in enumerate(quotes)}
        candidates: dict[frozenset, tuple[str, str]] = {}
        for asset in [*map(to_checksum_address, self.ctx.assets), *quotes]:
            for quote in quotes:
                if asset != quote and frozenset((asset, quote)) not in candidates:
                    # two quotes: the preferred one (earlier in the list) is the quote
                    pair = (asset, quote) if rank.get(asset, len(quotes)) > rank[quote] else (quote, asset)
                    candidates[frozenset((asset, quote))] = pair
        pairs = list(candidates.values())
        factory = to_checksum_address(self.deployment["factory"])
        found = self._read([Call(factory, GET_PAIR, (a, q)) for a, q in pairs], "getPair")
        return [{"pair": to_checksum_address(p), "asset": a, "quote": q}
                for (a, q), p in zip(pairs, found, strict=True) if int(p, 16) != 0]

    def read_pairs(self) -> list[dict]:
        """Raw pair states (ints): pair, asset, quote, token0, token1, reserve0, reserve1."""
        pairs = self.find_pairs()
        values = self._read([Call(p["pair"], sig) for p in pairs for sig in PAIR_STATE.values()], "pair state")
        states = []
        for i, pair in enumerate(pairs):
            token0, token1, reserves = values[i * 3:(i + 1) * 3]
            if reserves[0] == 0 or reserves[1] == 0:
                continue    # an empty pair trades nothing
            states.append({**pair, "token0": to_checksum_address(token0), "token1": to_checksum_address(token1),
                           "reserve0": int(reserves[0]), "reserve1": int(reserves[1])})
        return states

    def _tokens(self, addresses: list[str]) -> dict[str, tuple[str, int]]:
        calls = [Call(a, sig) for a in addresses for sig in ("symbol()(string)", "decimals()(uint8)")]
        values = self._read(calls, "token")
        return {a: (values[2 * i], values[2 * i + 1]) for i, a in enumerate(addresses)}

    def read_markets(self) -> Rows:
        states = self.read_pairs()
        tokens = self._tokens(sorted({s[k] for s in states for k in ("token0", "token1")}))
        venues, mids = [], {}
        for s in states:
            params = {"token0": s["token0"], "token1": s["token1"], "decimals0": tokens[s["token0"]][1],
                      "decimals1": tokens[s["token1"]][1], "reserve0": str(s["reserve0"]),
                      "reserve1": str(s["reserve1"])}
            venues.append(venue_row(self.protocol, s["pair"], s["asset"], s["quote"], UniswapV2Venue.model, params))
            mids[(s["asset"], s["quote"])] = UniswapV2Venue(s["asset"], s["quote"], params).mid_price()
        return {"assets": pool_priced_assets(tokens, mids), "venues": venues}

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        return []   # liquidity providers hold no lending positions the cascade reads

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        return {}
