"""StableSwap reader: each pool of the deployment at one block into ``venues`` rows.

Per pool (the interface of Curve's plain pools, as our fixture exposes it): ``coins(i)``,
``balances(i)``, ``A_precise()``, ``fee()``, ``admin_fee()``; the per-coin ``rates`` come from the
address book (the pool's immutable rate multipliers); the tokens' ``decimals()``. Every coin of a
pool trades against the pool's first coin (the quote: WETH in an LST pool, USDC in a stablecoin pool).
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import to_checksum_address

from analyzer.engine.impact import venue_row
from analyzer.multicall import Call
from protocols.base import Reader, Rows
from protocols.stableswap.venue import StableSwapVenue

POOL_STATE = ("A_precise()(uint256)", "fee()(uint256)", "admin_fee()(uint256)")


class StableSwapReader(Reader):
    protocol = "stableswap"

    def _read(self, calls: Sequence[Call], what: str) -> list:
        return [r.unwrap(f"stableswap {what} {c.target}") for c, r in zip(calls, self.ctx.multicall(calls), strict=True)]

    def read_pools(self) -> list[dict]:
        """Raw pool states: pool, coins, balances, rates, amp, fee, admin_fee, decimals."""
        entries = self.deployment.get("pools", [])
        calls = []
        for e in entries:
            n = len(e["rates"])
            calls += [Call(e["pool"], sig) for sig in POOL_STATE]
            calls += [Call(e["pool"], "coins(uint256)(address)", (i,)) for i in range(n)]
            calls += [Call(e["pool"], "balances(uint256)(uint256)", (i,)) for i in range(n)]
        values, at, states = self._read(calls, "pool state"), 0, []
        for e in entries:
            n = len(e["rates"])
            amp, fee, admin_fee = values[at:at + 3]
            coins = [to_checksum_address(c) for c in values[at + 3:at + 3 + n]]
            balances = values[at + 3 + n:at + 3 + 2 * n]
            at += 3 + 2 * n
            states.append({"pool": to_checksum_address(e["pool"]), "coins": coins, "balances": balances,
                           "rates": [int(r) for r in e["rates"]], "amp": amp, "fee": fee, "admin_fee": admin_fee})
        tokens = sorted({c for s in states for c in s["coins"]})
        decimals = dict(zip(tokens, self._read([Call(t, "decimals()(uint8)") for t in tokens], "decimals"), strict=True))
        for s in states:
            s["decimals"] = [decimals[c] for c in s["coins"]]
        return states

    def read_markets(self) -> Rows:
        venues = []
        for s in self.read_pools():
            params = {"coins": s["coins"], "decimals": s["decimals"], "balances": [str(b) for b in s["balances"]],
                      "rates": [str(r) for r in s["rates"]], "amp": s["amp"], "fee": s["fee"],
                      "admin_fee": s["admin_fee"]}
            for coin in s["coins"][1:]:
                venues.append(venue_row(self.protocol, s["pool"], coin, s["coins"][0], StableSwapVenue.model, params))
        return {"venues": venues}

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        return []   # liquidity providers hold no lending positions the cascade reads

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        return {}
