"""Reader, rules and devnet of ToyLending (ToyLending.sol beside this file)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from eth_utils import event_abi_to_log_topic, to_checksum_address

from analyzer.devnet.context import DevnetContext
from analyzer.devnet.scenario import account_address
from analyzer.model import Snapshot
from analyzer.multicall import Call
from protocols.base import Devnet, LendingBook, Liquidation, Reader, Rows, Rules

PROTOCOL = "toy-lending"
ARTIFACT = json.loads((Path(__file__).with_name("ToyLending.json")).read_text())
POSITION_SET = "0x" + event_abi_to_log_topic(next(e for e in ARTIFACT["abi"] if e.get("name") == "PositionSet")).hex()


class ToyReader(Reader):
    protocol = PROTOCOL

    @property
    def lending(self) -> str:
        return to_checksum_address(self.deployment["lending"])

    def _assets(self) -> list[dict]:
        (count,) = [r.unwrap() for r in self.ctx.multicall([Call(self.lending, "assetCount()(uint256)")])]
        listed = [r.unwrap() for r in self.ctx.multicall(
            [Call(self.lending, "assets(uint256)(address)", (i,)) for i in range(count)])]
        calls = []
        for asset in listed:
            calls += [Call(self.lending, "feedOf(address)(address)", (asset,)),
                      Call(self.lending, "thresholdBps(address)(uint256)", (asset,)),
                      Call(asset, "symbol()(string)"), Call(asset, "decimals()(uint8)")]
        values = [r.unwrap() for r in self.ctx.multicall(calls)]
        feeds = [values[4 * i] for i in range(len(listed))]
        prices = [r.unwrap() for r in self.ctx.multicall([Call(f, "latestAnswer()(int256)") for f in feeds])]
        return [{"asset": to_checksum_address(a), "threshold_bps": values[4 * i + 1], "symbol": values[4 * i + 2],
                 "decimals": values[4 * i + 3], "price_usd": prices[i] / 1e8} for i, a in enumerate(listed)]

    def read_markets(self) -> Rows:
        listed = self._assets()
        return {
            "assets": [{"address": a["asset"], "symbol": a["symbol"], "decimals": a["decimals"],
                        "price_usd": a["price_usd"], "receipt_of": ""} for a in listed],
            "markets": [{"protocol": PROTOCOL, "market": self.lending, "asset": a["asset"],
                         "oracle_price_usd": a["price_usd"], "ltv": a["threshold_bps"] / 1e4,
                         "liquidation_threshold": a["threshold_bps"] / 1e4, "liquidation_bonus": 0.0,
                         "close_factor": 1.0, "protocol_fee": 0.0, "collateral_enabled": True, "borrowable": True,
                         "params": json.dumps({"decimals": a["decimals"]})} for a in listed]}

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        logs = self.ctx.get_logs(self.lending, [POSITION_SET], from_block, to_block)
        return sorted({to_checksum_address(bytes(log["topics"][1])[-20:]) for log in logs})

    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        listed = self._assets()
        calls = [Call(self.lending, f"{side}Of(address,address)(uint256)", (account, a["asset"]))
                 for account in accounts for a in listed for side in ("collateral", "debt")]
        values = iter(r.unwrap() for r in self.ctx.multicall(calls))
        positions, seen = [], []
        for account in accounts:
            for a in listed:
                for side in ("collateral", "debt"):
                    raw = next(values)
                    if raw:
                        positions.append({"protocol": PROTOCOL, "market": self.lending, "account": account,
                                          "asset": a["asset"], "side": side, "amount": raw / 10 ** a["decimals"],
                                          "raw": str(raw)})
                        if account not in seen:
                            seen.append(account)
        return {"positions": positions,
                "accounts": [{"protocol": PROTOCOL, "market": self.lending, "account": a, "params": "{}"} for a in seen]}


class ToyRules(Rules):
    """Liquidatable below Σ collateral × price × threshold < Σ debt × price; a liquidation closes
    the whole account (all debt repaid, all collateral seized, no fee)."""

    protocol = PROTOCOL

    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        books = []
        markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        for market, rows in markets.groupby("market", sort=True):
            assets = rows["asset"].to_numpy(object)
            held = snapshot.positions[(snapshot.positions["protocol"] == PROTOCOL)
                                      & (snapshot.positions["market"] == market)]
            accounts = np.array(sorted(set(held["account"])), dtype=object)
            collateral, debt = np.zeros((len(accounts), len(assets))), np.zeros((len(accounts), len(assets)))
            row = {a: i for i, a in enumerate(accounts)}
            col = {a: j for j, a in enumerate(assets)}
            for account, asset, side, amount in zip(held["account"], held["asset"], held["side"], held["amount"],
                                                    strict=True):
                (collateral if side == "collateral" else debt)[row[account], col[asset]] += amount
            books.append(LendingBook(PROTOCOL, str(market), accounts, assets, collateral, debt,
                                     np.zeros(len(accounts), dtype=np.int64),
                                     {"liquidation_threshold": rows["liquidation_threshold"].to_numpy(float)}))
        return books

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        debt = book.debt @ prices
        covered = book.collateral @ (prices * book.params["liquidation_threshold"])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(debt > 0, covered / np.where(debt > 0, debt, 1.0), np.inf)

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return self.health_factor(book, prices) < 1.0

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        hit = self.liquidatable(book, prices) & (np.ones(len(book.accounts), dtype=bool) if mask is None else mask)
        rows = np.flatnonzero(hit)
        return Liquidation(rows, book.debt[rows].copy(), book.collateral[rows].copy(), np.zeros((len(rows), len(book.assets))))

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        out = book.copy()
        out.collateral[liquidation.rows] -= liquidation.seized
        out.debt[liquidation.rows] -= liquidation.repaid
        return out


class ToyDevnet(Devnet):
    """Deploys ToyLending, lists every scenario asset at ``threshold_bps`` and records the
    scenario's ``[protocols.toy-lending] positions``: ``[label, collateral symbol, amount, debt
    symbol, amount]`` (whole tokens)."""

    protocol = PROTOCOL

    def deploy(self, ctx: DevnetContext) -> dict[str, Any]:
        spec = ctx.scenario.protocol(PROTOCOL)
        lending = ctx.deploy(ARTIFACT)
        for symbol, token in ctx.book["tokens"].items():
            ctx.transact(lending.functions.list(token, ctx.book["feeds"][symbol], int(spec.get("threshold_bps", 8000))))
        return {"lending": lending.address, "start_block": ctx.w3.eth.block_number}

    def seed(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        lending = ctx.contract(deployment["lending"], ARTIFACT["abi"])
        tokens, decimals = ctx.book["tokens"], ctx.book["decimals"]
        for label, coll, coll_amount, debt, debt_amount in ctx.scenario.protocol(PROTOCOL).get("positions", []):
            account = account_address(label)
            coll_raw, debt_raw = int(coll_amount * 10 ** decimals[coll]), int(debt_amount * 10 ** decimals[debt])
            if coll == debt:
                ctx.transact(lending.functions.setPosition(account, tokens[coll], coll_raw, debt_raw))
            else:
                ctx.transact(lending.functions.setPosition(account, tokens[coll], coll_raw, 0))
                ctx.transact(lending.functions.setPosition(account, tokens[debt], 0, debt_raw))
