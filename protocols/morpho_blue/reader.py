"""Reads Morpho Blue at one block: its markets (from ``CreateMarket``), their accrued totals and
oracle prices, positions with exact share math, and the vaults of the address book.

Every read goes through Multicall3 at the context's block. Per market: ``market(id)`` (six
totals), the oracle's ``price()`` (1e36 scale), and the IRM's ``borrowRateView`` to accrue the
totals to the block's timestamp as ``MorphoBalancesLib.expectedMarketBalances`` does (so a
position's debt is what ``liquidate`` would see in that block). Per account and market:
``position(id, user)`` → supply shares, borrow shares, collateral.

USD prices: Morpho's oracles only price collateral in loan units. A token's USD price comes from
the address book's ``usd_feeds`` (token → Chainlink-style USD feed); a collateral without one
is priced through its market's oracle from the loan token's USD price, and a vault share as
``convertToAssets(one share)`` of its asset.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction

from eth_abi import decode
from eth_utils import to_checksum_address

from analyzer.errors import ContagionError
from analyzer.model import raw_to_amount
from analyzer.multicall import Call
from protocols.base import AccountEvents, Reader, Rows
from protocols.morpho_blue import exact
from protocols.morpho_blue.contracts import (
    ACCOUNT_EVENTS,
    CREATE_MARKET,
    ENABLE_LLTV,
    LIQUIDATE,
    MARKET,
    MARKET_PARAMS,
    ORACLE_PRICE_SCALE,
    PROTOCOL,
    topic,
)

ZERO = "0x0000000000000000000000000000000000000000"
# the account an event names: its topic index (Supply and SupplyCollateral: onBehalf is the third
# indexed argument; Borrow: the second)
ACCOUNT_TOPIC = {topic(ACCOUNT_EVENTS[0]): 3, topic(ACCOUNT_EVENTS[1]): 2, topic(ACCOUNT_EVENTS[2]): 3}


def _hex(value) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


class MorphoBlueReader(Reader):
    """One Morpho Blue singleton: ``deployment["morpho"]``, ``start_block``, optional ``vaults``
    ({name: address}) and ``usd_feeds`` ({token: feed})."""

    protocol = PROTOCOL
    book_keys = ("morpho",)

    @property
    def morpho(self) -> str:
        address = self.deployment.get("morpho")
        if not address:
            raise ContagionError('morpho-blue address book entry: missing "morpho" (the singleton address)')
        return to_checksum_address(address)

    def _read(self, calls: Sequence[Call], what: str) -> list:
        return [r.unwrap(f"{what}: {c.signature.split('(')[0]} on {c.target}")
                for c, r in zip(calls, self.ctx.multicall(calls), strict=True)]

    # ---- markets ----

    def market_params(self) -> dict[str, tuple]:
        """Market id (0x-hex) -> (loan, collateral, oracle, irm, lltv), from CreateMarket events."""
        if getattr(self, "_params", None) is None:
            start = int(self.deployment.get("start_block", 0) or 0)
            logs = self.ctx.get_logs(self.morpho, [[topic(CREATE_MARKET)]], start, self.ctx.block)
            params = {}
            for log in logs:
                data = bytes.fromhex(_hex(log["data"])[2:])
                loan, collateral, oracle, irm, lltv = decode(["address", "address", "address", "address", "uint256"], data)
                params[_hex(log["topics"][1]).lower()] = (to_checksum_address(loan), to_checksum_address(collateral),
                                                          to_checksum_address(oracle), to_checksum_address(irm), lltv)
            self._params = params
        return self._params

    def market_state(self) -> dict[str, dict]:
        """Per market id: params, accrued totals (:class:`exact.MarketTotals`), oracle price raw
        (None when the oracle reverts), borrow rate."""
        cached: dict[str, dict] | None = getattr(self, "_state", None)
        if cached is not None:
            return cached
        params = self.market_params()
        ids = sorted(params)
        morpho = self.morpho
        totals = self._read([Call(morpho, f"market(bytes32){MARKET}", (bytes.fromhex(i[2:]),)) for i in ids],
                            "morpho markets")
        prices = self.ctx.multicall([Call(params[i][2], "price()(uint256)") for i in ids])
        rate_calls = [(i, Call(params[i][3], f"borrowRateView({MARKET_PARAMS},{MARKET})(uint256)",
                               (params[i], tuple(t)))) for i, t in zip(ids, totals, strict=True) if params[i][3] != ZERO]
        rates = dict(zip([i for i, _ in rate_calls], self._read([c for _, c in rate_calls], "morpho irm"), strict=True))
        timestamp = self.ctx.w3.eth.get_block(self.ctx.block)["timestamp"]
        written_off = self.written_off()
        state = {}
        for i, raw_totals, price in zip(ids, totals, prices, strict=True):
            market = exact.MarketTotals(*raw_totals)
            rate = rates.get(i, 0)
            state[i] = {"params": params[i], "raw": market, "accrued": market.accrued(rate, timestamp),
                        "borrow_rate": rate, "price": price.value if price.success else None, "timestamp": timestamp,
                        "written_off": written_off.get(i, 0)}
        self._state = state
        return state

    def enabled_lltvs(self) -> list[int]:
        """The LLTVs governance has enabled (``EnableLltv`` events; ``isLltvEnabled`` has no list):
        those a market may be created at, 1e18-scaled, ascending."""
        if getattr(self, "_lltvs", None) is None:
            start = int(self.deployment.get("start_block", 0) or 0)
            logs = self.ctx.get_logs(self.morpho, [[topic(ENABLE_LLTV)]], start, self.ctx.block)
            self._lltvs = sorted({decode(["uint256"], bytes.fromhex(_hex(log["data"])[2:]))[0] for log in logs})
        return self._lltvs

    def written_off(self) -> dict[str, int]:
        """Per market id: bad debt realised so far (raw loan units), the sum of ``Liquidate``'s
        ``badDebtAssets``: what the market's suppliers have lost, gone from every position."""
        start = int(self.deployment.get("start_block", 0) or 0)
        out: dict[str, int] = {}
        for log in self.ctx.get_logs(self.morpho, [[topic(LIQUIDATE)]], start, self.ctx.block):
            market_id = _hex(log["topics"][1]).lower()
            bad_debt_assets = decode(["uint256"] * 5, bytes.fromhex(_hex(log["data"])[2:]))[3]
            out[market_id] = out.get(market_id, 0) + bad_debt_assets
        return out

    def token_info(self, tokens: Sequence[str]) -> dict[str, dict]:
        decimals = self._read([Call(t, "decimals()(uint8)") for t in tokens], "token decimals")
        symbols = self.ctx.multicall([Call(t, "symbol()(string)") for t in tokens])
        return {t: {"decimals": d, "symbol": s.value if s.success else ""}
                for t, d, s in zip(tokens, decimals, symbols, strict=True)}

    def vault_state(self) -> dict[str, dict]:
        """Per vault address: asset, totals, decimals and its supply shares in each market of its
        withdraw queue (MetaMorpho's ``withdrawQueue``)."""
        vaults = [to_checksum_address(a) for a in (self.deployment.get("vaults") or {}).values()]
        if not vaults:
            return {}
        head = self._read([Call(v, sig) for v in vaults for sig in
                           ("asset()(address)", "totalAssets()(uint256)", "totalSupply()(uint256)",
                            "decimals()(uint8)", "withdrawQueueLength()(uint256)")], "morpho vaults")
        # MetaMorpho v1.1 keeps realised bad debt aside (lostAssets) instead of lowering the share
        # price; v1.0 (and our devnet vaults) has no lostAssets() and realises it at once
        lost = self.ctx.multicall([Call(v, "lostAssets()(uint256)") for v in vaults])
        out = {}
        for n, vault in enumerate(vaults):
            asset, total_assets, total_supply, decimals, length = head[5 * n:5 * n + 5]
            ids = self._read([Call(vault, "withdrawQueue(uint256)(bytes32)", (k,)) for k in range(length)], "vault queue")
            ids = ["0x" + bytes(i).hex() for i in ids]
            shares = self._read([Call(self.morpho, "position(bytes32,address)(uint256,uint128,uint128)",
                                      (bytes.fromhex(i[2:]), vault)) for i in ids], "vault positions")
            out[vault] = {"asset": to_checksum_address(asset), "total_assets": total_assets,
                          "total_supply": total_supply, "decimals": decimals, "realises_bad_debt": not lost[n].success,
                          "supply_shares": {i: s[0] for i, s in zip(ids, shares, strict=True)}}
        return out

    def usd_prices(self, state: dict, info: dict, vaults: dict) -> dict[str, float]:
        feeds = {to_checksum_address(t): to_checksum_address(f) for t, f in (self.deployment.get("usd_feeds") or {}).items()}
        listed = [t for t in feeds if t in info]
        answers = self._read([Call(feeds[t], "latestRoundData()(uint80,int256,uint256,uint256,uint80)") for t in listed]
                             + [Call(feeds[t], "decimals()(uint8)") for t in listed], "usd feeds")
        usd = {t: answers[k][1] / 10 ** answers[len(listed) + k] for k, t in enumerate(listed)}
        for vault, v in vaults.items():
            if v["asset"] in usd:
                per_share = Fraction(v["total_assets"] + 1, v["total_supply"] + 10 ** (v["decimals"] - info[v["asset"]]["decimals"]))
                usd[vault] = float(per_share * 10 ** v["decimals"] / 10 ** info[v["asset"]]["decimals"]) * usd[v["asset"]]
        for market in state.values():   # collateral without a feed: through its market's oracle
            loan, collateral = market["params"][:2]
            if collateral not in usd and loan in usd and market["price"]:
                usd[collateral] = self._oracle_usd(market["price"], info[collateral]["decimals"],
                                                   info[loan]["decimals"], usd[loan])
        return usd

    @staticmethod
    def _oracle_usd(price_raw: int, collateral_decimals: int, loan_decimals: int, loan_usd: float) -> float:
        """USD per whole collateral token seen by a market's oracle: price / 1e36 loan wei per
        collateral wei, times the decimals' ratio, times the loan token's USD."""
        return float(Fraction(price_raw, ORACLE_PRICE_SCALE) * 10 ** collateral_decimals / 10 ** loan_decimals) * loan_usd

    def read_markets(self) -> Rows:
        state, vaults = self.market_state(), self.vault_state()
        # every vault's share is a receipt token (usable as collateral anywhere), not only those a
        # Morpho market takes
        tokens = sorted({t for m in state.values() for t in m["params"][:2]} | {v["asset"] for v in vaults.values()}
                        | set(vaults))
        info = self.token_info(tokens)
        usd = self.usd_prices(state, info, vaults)
        assets = []
        for token in tokens:
            receipt = f"{PROTOCOL}:{vaults[token]['asset']}" if token in vaults else ""
            assets.append({"address": token, "symbol": info[token]["symbol"], "decimals": info[token]["decimals"],
                           "price_usd": usd.get(token, float("nan")), "receipt_of": receipt, "iv": float("nan")})
        markets = []
        for market_id, m in state.items():
            markets += self._market_rows(market_id, m, info, usd)
        for vault, v in vaults.items():
            markets.append(self._vault_row(vault, v, usd))
        return {"assets": assets, "markets": markets}

    def _market_rows(self, market_id: str, m: dict, info: dict, usd: dict) -> list[dict]:
        loan, collateral, oracle, irm, lltv = m["params"]
        acc = m["accrued"]
        loan_usd = usd.get(loan, float("nan"))
        collateral_oracle_usd = (self._oracle_usd(m["price"], info[collateral]["decimals"], info[loan]["decimals"], loan_usd)
                                 if m["price"] else float("nan"))
        shared = {"id": market_id, "name": f"{info[collateral]['symbol']}/{info[loan]['symbol']} {lltv / 1e18:g}",
                  "loan_token": loan, "collateral_token": collateral, "oracle": oracle, "irm": irm, "lltv": str(lltv),
                  "price_raw": str(m["price"] or 0), "borrow_rate": str(m["borrow_rate"]), "timestamp": m["timestamp"],
                  "total_supply_assets": str(acc.total_supply_assets), "total_supply_shares": str(acc.total_supply_shares),
                  "total_borrow_assets": str(acc.total_borrow_assets), "total_borrow_shares": str(acc.total_borrow_shares),
                  "last_update": str(m["raw"].last_update), "fee": str(acc.fee), "written_off": str(m["written_off"]),
                  "loan_decimals": info[loan]["decimals"], "collateral_decimals": info[collateral]["decimals"],
                  "enabled_lltvs": [str(v) for v in self.enabled_lltvs()]}
        bonus = exact.liquidation_incentive_factor(lltv) / 1e18 - 1.0
        row = {"protocol": PROTOCOL, "market": market_id, "close_factor": 1.0, "protocol_fee": 0.0, "supply_cap": 0.0,
               "borrow_cap": 0.0, "category": 0, "isolated": True, "ltv": lltv / 1e18,
               "liquidation_threshold": lltv / 1e18, "liquidation_bonus": bonus}
        return [{**row, "asset": loan, "oracle_price_usd": loan_usd, "borrowable": True, "collateral_enabled": False,
                 "params": json.dumps({**shared, "role": "loan"})},
                {**row, "asset": collateral, "oracle_price_usd": collateral_oracle_usd, "borrowable": False,
                 "collateral_enabled": True, "params": json.dumps({**shared, "role": "collateral"})}]

    def _vault_row(self, vault: str, v: dict, usd: dict) -> dict:
        """A vault as a market row of its own (role "vault"): what its share price is made of."""
        params = {"role": "vault", "total_assets": str(v["total_assets"]), "total_supply": str(v["total_supply"]),
                  "realises_bad_debt": v["realises_bad_debt"],
                  "decimals": v["decimals"], "supply_shares": {i: str(s) for i, s in v["supply_shares"].items()}}
        return {"protocol": PROTOCOL, "market": vault, "asset": v["asset"], "oracle_price_usd": usd.get(v["asset"], float("nan")),
                "ltv": 0.0, "liquidation_threshold": 0.0, "liquidation_bonus": 0.0, "close_factor": 0.0,
                "protocol_fee": 0.0, "supply_cap": 0.0, "borrow_cap": 0.0, "category": 0, "isolated": False,
                "borrowable": False, "collateral_enabled": False, "params": json.dumps(params)}

    # ---- accounts ----

    def account_events(self) -> AccountEvents:
        """Accounts named (onBehalf) by Supply, Borrow and SupplyCollateral events."""

        def accounts(log: dict) -> list[str]:
            topics = [_hex(t).lower() for t in log["topics"]]
            index = ACCOUNT_TOPIC.get(topics[0]) if topics else None
            if index is None or len(topics) <= index:
                return []
            return [to_checksum_address(bytes.fromhex(topics[index][2:])[-20:])]

        return AccountEvents((self.morpho,), tuple(ACCOUNT_TOPIC), accounts)

    # up to this many markets, every account is read in every market; beyond (Ethereum has thousands),
    # only in the markets its own events name
    ALL_MARKETS_UP_TO = 64

    def markets_of(self, accounts: Sequence[str]) -> dict[str, list[str]]:
        """Per account: the ids of the markets whose Supply / Borrow / SupplyCollateral events name it
        as ``onBehalf`` (two log queries filtered by the accounts, whatever their number of markets)."""
        start = int(self.deployment.get("start_block", 0) or 0)
        padded = ["0x" + bytes.fromhex(to_checksum_address(a)[2:]).rjust(32, b"\0").hex() for a in accounts]
        supply = [topic(ACCOUNT_EVENTS[0]), topic(ACCOUNT_EVENTS[2])]
        logs = (self.ctx.get_logs(self.morpho, [supply, None, None, padded], start, self.ctx.block)
                + self.ctx.get_logs(self.morpho, [[topic(ACCOUNT_EVENTS[1])], None, padded], start, self.ctx.block))
        out: dict[str, set[str]] = {to_checksum_address(a): set() for a in accounts}
        for log in logs:
            topics = [_hex(t).lower() for t in log["topics"]]
            account = to_checksum_address(bytes.fromhex(topics[ACCOUNT_TOPIC[topics[0]]][2:])[-20:])
            if account in out:
                out[account].add(topics[1])
        return {a: sorted(ids) for a, ids in out.items()}

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        state = self.market_state()
        accounts = [to_checksum_address(a) for a in accounts]
        if len(state) <= self.ALL_MARKETS_UP_TO:
            pairs = [(a, i) for a in accounts for i in sorted(state)]
        else:
            named = self.markets_of(accounts)
            pairs = [(a, i) for a in accounts for i in named[a] if i in state]
        calls = [Call(self.morpho, "position(bytes32,address)(uint256,uint128,uint128)", (bytes.fromhex(i[2:]), a))
                 for a, i in pairs]
        values = self._read(calls, "morpho positions")
        info = self.token_info(sorted({t for m in state.values() for t in m["params"][:2]}))
        positions, rows = [], []
        for (account, market_id), value in zip(pairs, values, strict=True):
            supply_shares, borrow_shares, collateral = value
            if not (supply_shares or borrow_shares or collateral):
                continue
            m = state[market_id]
            loan, collateral_token = m["params"][:2]
            lltv, price = m["params"][4], m["price"] or 0
            # Morpho._isHealthy's two sides, exact: what may be borrowed and what is
            max_borrow = exact.max_borrow(collateral, price, lltv)
            borrowed = exact.borrowed_assets(borrow_shares, m["accrued"])
            rows.append({"protocol": PROTOCOL, "market": market_id, "account": account, "category": 0,
                         "params": json.dumps({"supply_shares": str(supply_shares), "borrow_shares": str(borrow_shares),
                                               "collateral": str(collateral), "max_borrow": str(max_borrow),
                                               "healthy": borrow_shares == 0 or max_borrow >= borrowed})})
            if borrow_shares:
                positions.append(self._position(market_id, account, loan, "debt", borrowed, info[loan]["decimals"]))
            if supply_shares:   # a lender's claim: bears the market's bad debt, backs no borrow
                supplied = exact.supplied_assets(supply_shares, m["accrued"])
                positions.append(self._position(market_id, account, loan, "collateral", supplied,
                                                info[loan]["decimals"]))
            if collateral:
                positions.append(self._position(market_id, account, collateral_token, "collateral", collateral,
                                                info[collateral_token]["decimals"]))
        return {"positions": positions, "accounts": rows}

    @staticmethod
    def _position(market: str, account: str, asset: str, side: str, raw: int, decimals: int) -> dict:
        return {"protocol": PROTOCOL, "market": market, "account": account, "asset": asset, "side": side,
                "amount": raw_to_amount(raw, decimals), "raw": str(raw)}
