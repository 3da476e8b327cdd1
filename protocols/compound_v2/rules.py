"""Compound V2's liquidation rule (and its forks' through profiles), vectorised over a LendingBook.

Mirrors compound-finance/compound-protocol contracts/Comptroller.sol and CToken.sol:
- liquidity (``getHypotheticalAccountLiquidityInternal``): Σ entered collateral × price × factor
  against Σ entered borrows × price, in USD; the factor is the collateral factor (Compound) or the
  liquidation threshold (Venus isolated pools' ``getAccountLiquidity``);
- liquidatable (``liquidateBorrowAllowed``): shortfall > 0, and for Venus isolated pools total
  collateral ≥ ``minLiquidatableCollateral`` (below it only ``liquidateAccount`` applies); or a
  borrow in a deprecated market (``isDeprecated``: collateral factor 0, borrowing paused, reserve
  factor 1e18), which anyone may repay whatever the account's liquidity;
- repay at most ``closeFactor × borrowBalance`` of one borrowed market (all of it in a deprecated one);
- seized collateral (``liquidateCalculateSeizeTokens``) = repay × incentive × priceBorrowed /
  priceCollateral in underlying units; the protocol keeps ``protocolSeizeShare`` of it
  (``seizeInternal``).
The float64 path is what the engine uses; :mod:`protocols.compound_v2.exact` is the integer path
that the tests compare with the chain to the wei (``liquidity_exact`` wires it to a book).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analyzer.model import Snapshot
from protocols.base import InterestAccrual, LendingBook, Liquidation, Rules
from protocols.compound_v2 import exact
from protocols.compound_v2.constants import MANTISSA, PROTOCOL
from protocols.compound_v2.profiles import profile

INT_PARAMS = ("exchange_rate_mantissa", "collateral_factor_mantissa", "liquidation_threshold_mantissa",
              "price_mantissa", "protocol_seize_share_mantissa", "liquidation_incentive_mantissa")


class CompoundV2Rules(Rules, InterestAccrual):
    protocol = PROTOCOL

    def accrue(self, book: LendingBook, seconds: float, blocks: float) -> LendingBook:
        """``CToken.accrueInterest`` over ``blocks``: borrow balances grow by borrowRatePerBlock ×
        blocks, a cToken's underlying value (its exchange rate) by supplyRatePerBlock × blocks, at
        the rates read with the snapshot. The float book only: the exact integer columns (raw
        balances, exchange rates) stay at the snapshot's block."""
        out = book.copy()
        out.debt = book.debt * (1.0 + book.extra.get("borrow_rate_per_block", 0.0) * blocks)
        out.collateral = book.collateral * (1.0 + book.extra.get("supply_rate_per_block", 0.0) * blocks)
        return out

    # ---- books ----
    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        out = []
        for comptroller, rows in markets.groupby("market", sort=True):
            out.append(self._book(snapshot, str(comptroller), rows.reset_index(drop=True)))
        return out

    def _book(self, snapshot: Snapshot, comptroller: str, rows) -> LendingBook:
        params = [json.loads(p) for p in rows["params"]]
        assets = rows["asset"].astype(str).to_numpy()
        # one column per cToken (its reserve): two markets of one underlying are two columns; a
        # snapshot without reserves (older) names each column by its asset
        reserves = np.array([r or a for r, a in zip(rows["reserve"].astype(str), assets, strict=True)], dtype=object)
        column = {r: j for j, r in enumerate(reserves)}
        column.update({str(p["ctoken"]): j for j, p in enumerate(params) if p.get("ctoken")})
        pos = snapshot.positions[(snapshot.positions["protocol"] == PROTOCOL)
                                 & (snapshot.positions["market"] == comptroller)]
        acc = snapshot.accounts[(snapshot.accounts["protocol"] == PROTOCOL)
                                & (snapshot.accounts["market"] == comptroller)]
        accounts = np.array(sorted(set(pos["account"].astype(str)) | set(acc["account"].astype(str))), dtype=object)
        row_of = {a: i for i, a in enumerate(accounts)}
        n, m = len(accounts), len(assets)
        collateral, debt = np.zeros((n, m)), np.zeros((n, m))
        collateral_raw = np.zeros((n, m), dtype=object)
        debt_raw = np.zeros((n, m), dtype=object)
        r = pos["account"].astype(str).map(row_of).to_numpy(dtype=np.int64)
        keys = np.where(pos["reserve"].astype(str) != "", pos["reserve"].astype(str), pos["asset"].astype(str))
        c = pd.Series(keys).map(column).to_numpy(dtype=np.int64)
        is_coll = (pos["side"] == "collateral").to_numpy()
        amount = pos["amount"].to_numpy(dtype=float)
        raw = np.array([int(x) for x in pos["raw"]], dtype=object)
        collateral[r[is_coll], c[is_coll]] = amount[is_coll]
        debt[r[~is_coll], c[~is_coll]] = amount[~is_coll]
        collateral_raw[r[is_coll], c[is_coll]] = raw[is_coll]
        debt_raw[r[~is_coll], c[~is_coll]] = raw[~is_coll]
        entered = np.zeros((n, m), dtype=bool)
        for account, text in zip(acc["account"].astype(str), acc["params"], strict=True):
            for market in json.loads(text or "{}").get("entered", []):   # cTokens (assets in older snapshots)
                if market in column:
                    entered[row_of[account], column[market]] = True
        first = params[0] if params else {}
        profile = first.get("profile", "compound")
        extra = {
            **{k: np.array([int(p[k]) for p in params], dtype=object) for k in INT_PARAMS},
            "ctoken": np.array([p["ctoken"] for p in params], dtype=object),
            "close_factor_mantissa": int(first.get("close_factor_mantissa", 0)),
            "min_liquidatable_collateral_usd": (int(first["min_liquidatable_collateral_mantissa"]) / MANTISSA
                                                if first.get("min_liquidatable_collateral_mantissa") else 0.0),
            "min_liquidatable_collateral_mantissa": (int(first["min_liquidatable_collateral_mantissa"])
                                                     if first.get("min_liquidatable_collateral_mantissa") else None),
            "profile": profile, "entered": entered, "collateral_raw": collateral_raw, "debt_raw": debt_raw,
            # CToken.accrueInterest: per block, 1e18 mantissas as fractions (0 when not read)
            "borrow_rate_per_block": np.array([int(p.get("borrow_rate_per_block_mantissa", 0)) / MANTISSA
                                               for p in params]),
            "supply_rate_per_block": np.array([int(p.get("supply_rate_per_block_mantissa", 0)) / MANTISSA
                                               for p in params]),
        }
        book_params = {
            "collateral_factor": rows["ltv"].to_numpy(dtype=float),
            "liquidation_threshold": rows["liquidation_threshold"].to_numpy(dtype=float),
            "liquidation_bonus": rows["liquidation_bonus"].to_numpy(dtype=float),
            "close_factor": rows["close_factor"].to_numpy(dtype=float),
            "protocol_fee": rows["protocol_fee"].to_numpy(dtype=float),
            "collateral_enabled": rows["collateral_enabled"].to_numpy(dtype=bool),
            "oracle_price_usd": rows["oracle_price_usd"].to_numpy(dtype=float),
            "deprecated": np.array([bool(p.get("deprecated", False)) for p in params], dtype=bool),
        }
        book = LendingBook(PROTOCOL, comptroller, accounts, assets, collateral, debt, np.zeros(n, dtype=np.int64),
                           book_params, extra, per_account=("entered", "collateral_raw", "debt_raw"),
                           reserves=reserves)
        # the stored balances lag by the blocks since each market's last accrueInterest, which the
        # chain adds at the market's next interaction (a liquidation's first step): the float book
        # owes them from the start (the exact raw columns stay as stored)
        pending = np.array([float(p.get("pending_blocks", 0)) for p in params])
        if pending.any():
            rate_b, rate_s = extra["borrow_rate_per_block"], extra["supply_rate_per_block"]
            book.debt = debt * (1.0 + rate_b * pending)
            book.collateral = collateral * (1.0 + rate_s * pending)
        return book

    def _profile(self, book: LendingBook):
        return profile(book.extra.get("profile"))

    # ---- float64 path ----
    def _entered(self, book: LendingBook) -> np.ndarray:
        entered = book.extra.get("entered")
        return np.ones(book.collateral.shape, dtype=bool) if entered is None else entered

    def weighted_collateral_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n,)`` Σ entered collateral × price × factor (USD): the liquidity check's collateral side."""
        factor = book.params["liquidation_threshold"]
        return (book.collateral * self._entered(book)) @ (np.asarray(prices, dtype=float) * factor)

    def borrows_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return (book.debt * self._entered(book)) @ np.asarray(prices, dtype=float)

    def shortfall_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n,)`` getAccountLiquidity's shortfall in USD (0 when the account has liquidity)."""
        return np.maximum(self.borrows_usd(book, prices) - self.weighted_collateral_usd(book, prices), 0.0)

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Weighted collateral / borrows; 0 for an account with a borrow in a deprecated market,
        which is liquidatable at any price (so that liquidatable ⇔ health factor < 1 holds)."""
        borrows = self.borrows_usd(book, prices)
        with np.errstate(divide="ignore", invalid="ignore"):
            hf = self.weighted_collateral_usd(book, prices) / borrows
        hf = np.where(borrows > 0, hf, np.inf)
        return np.where((book.debt[:, self._deprecated(book)] > 0).any(axis=1), 0.0, hf)

    def _deprecated(self, book: LendingBook) -> np.ndarray:
        return book.params.get("deprecated", np.zeros(len(book.assets), dtype=bool))

    def _in_shortfall(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        ok = self.borrows_usd(book, prices) > self.weighted_collateral_usd(book, prices)
        floor = float(book.extra.get("min_liquidatable_collateral_usd", 0.0))
        if floor > 0:
            # Venus IL preLiquidateHook: MinimalCollateralViolated unless totalCollateral > floor
            total = (book.collateral * self._entered(book)) @ np.asarray(prices, dtype=float)
            ok &= total > floor
        return ok

    def _repayable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n, m)`` bool: the borrows liquidateBorrowAllowed lets a keeper repay now: every borrow
        of an account in shortfall, and any borrow in a deprecated market."""
        borrowed = book.debt > 0
        return borrowed & (self._in_shortfall(book, prices)[:, None] | self._deprecated(book)[None, :])

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return self._repayable(book, prices).any(axis=1)

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        """One ``liquidateBorrow`` per liquidatable account: its largest repayable debt (USD) repaid up
        to the close factor (all of it in a deprecated market) against its largest collateral, capped
        so the seize fits the balance."""
        prices = np.asarray(prices, dtype=float)
        repayable = self._repayable(book, prices)
        ok = repayable.any(axis=1)
        if mask is not None:
            ok &= np.asarray(mask, dtype=bool)
        rows = np.flatnonzero(ok)
        m = len(book.assets)
        repaid, seized, fee = (np.zeros((len(rows), m)) for _ in range(3))
        if len(rows) == 0:
            return Liquidation(rows, repaid, seized, fee)
        debt_usd = book.debt[rows] * prices * repayable[rows]
        seizable = book.collateral[rows]
        if self._profile(book).seize_requires_membership:
            seizable = seizable * self._entered(book)[rows]
        coll_usd = seizable * prices
        j = np.argmax(debt_usd, axis=1)
        k = np.argmax(coll_usd, axis=1)
        idx = np.arange(len(rows))
        incentive = 1.0 + book.params["liquidation_bonus"]
        close_factor = np.where(self._deprecated(book)[j], 1.0, book.params["close_factor"][j])
        close = close_factor * book.debt[rows, j]
        seize = close * incentive[k] * prices[j] / prices[k]
        available = seizable[idx, k]
        capped = seize > available
        repay = np.where(capped, available * prices[k] / (incentive[k] * prices[j]), close)
        seize = np.where(capped, available, seize)
        repaid[idx, j] = repay
        seized[idx, k] = seize
        share = book.params["protocol_fee"][k]
        fee[idx, k] = seize * (share / incentive[k] if self._profile(book).seize_share_over_incentive else share)
        return Liquidation(rows, repaid, seized, fee)

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        out = book.copy()
        out.collateral[liquidation.rows] = np.maximum(out.collateral[liquidation.rows] - liquidation.seized, 0.0)
        out.debt[liquidation.rows] = np.maximum(out.debt[liquidation.rows] - liquidation.repaid, 0.0)
        return out

    # ---- exact integer path (checks against the chain) ----
    def liquidity_exact(self, book: LendingBook,
                        price_mantissa: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(liquidity, shortfall)`` per account, USD mantissa, exactly as ``getAccountLiquidity``."""
        prices = book.extra["price_mantissa"] if price_mantissa is None else price_mantissa
        factor = book.extra["liquidation_threshold_mantissa"]
        return exact.account_liquidity(book.extra["collateral_raw"], book.extra["debt_raw"], self._entered(book),
                                       factor, book.extra["exchange_rate_mantissa"], prices,
                                       self._profile(book).weight_order)

    def liquidatable_exact(self, book: LendingBook, price_mantissa: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` bool, exactly as the Comptroller decides: shortfall > 0 (and, with a minimum
        liquidatable collateral, total collateral above it)."""
        prices = book.extra["price_mantissa"] if price_mantissa is None else price_mantissa
        _, shortfall = self.liquidity_exact(book, prices)
        ok = np.array([s > 0 for s in shortfall], dtype=bool)
        floor = book.extra.get("min_liquidatable_collateral_mantissa")
        if floor is not None:
            total = exact.total_collateral(book.extra["collateral_raw"], self._entered(book),
                                           book.extra["exchange_rate_mantissa"], prices)
            ok &= np.array([t > floor for t in total], dtype=bool)
        return ok | (book.debt > 0)[:, self._deprecated(book)].any(axis=1)

    def seize_exact(self, book: LendingBook, debt_column: int, collateral_column: int, repay_raw: int,
                    price_mantissa: np.ndarray | None = None) -> tuple[int, int]:
        """(seized cTokens, of which the protocol's share) for one ``liquidateBorrow``."""
        prices = book.extra["price_mantissa"] if price_mantissa is None else price_mantissa
        # the collateral market's incentive (one for every market but in Venus core)
        incentive_mantissa = int(book.extra["liquidation_incentive_mantissa"][collateral_column])
        seize = exact.seize_tokens(repay_raw, incentive_mantissa,
                                   int(prices[debt_column]), int(prices[collateral_column]),
                                   int(book.extra["exchange_rate_mantissa"][collateral_column]))
        share = int(book.extra["protocol_seize_share_mantissa"][collateral_column])
        incentive = incentive_mantissa if self._profile(book).seize_share_over_incentive else None
        return seize, exact.protocol_seize_tokens(seize, share, incentive)

    def max_repay_exact(self, book: LendingBook, row: int, debt_column: int, collateral_column: int,
                        price_mantissa: np.ndarray | None = None) -> int:
        """The largest repay ``liquidateBorrow`` accepts: close factor × borrow (all of a borrow in a
        deprecated market), capped by the collateral balance."""
        prices = book.extra["price_mantissa"] if price_mantissa is None else price_mantissa
        borrowed = int(book.extra["debt_raw"][row, debt_column])
        by_close = borrowed if self._deprecated(book)[debt_column] else \
            exact.max_close(book.extra["close_factor_mantissa"], borrowed)
        by_balance = exact.max_repay_for_balance(
            int(book.extra["collateral_raw"][row, collateral_column]),
            int(book.extra["liquidation_incentive_mantissa"][collateral_column]),
            int(prices[debt_column]), int(prices[collateral_column]),
            int(book.extra["exchange_rate_mantissa"][collateral_column]))
        return min(by_close, by_balance)
