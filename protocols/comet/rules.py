"""Comet's liquidation rule: absorb the whole account, pay its debt from reserves, sell collateral.

Mirrors compound-finance/comet ``contracts/Comet.sol`` (mainnet cUSDCv3 implementation):

- ``isLiquidatable``: ``Σ_j collateral_j × price_j × liquidateCollateralFactor_j < debt × base_price``.
- ``absorbInternal``: the protocol takes *all* collateral; the account is credited
  ``credit = Σ_j collateral_j × price_j × liquidationFactor_j / base_price`` (base units); its new
  balance is ``max(credit − debt, 0)``, so the protocol pays out ``max(credit, debt)`` and its
  reserves (``getReserves() = held − supplied + borrowed``) fall by that much. Debt beyond the
  collateral's credit is the protocol's loss: bad debt shows as reserves going negative.
- ``quoteCollateral``: the absorbed collateral is sold for base at the store-front price
  ``price × (1 − storeFrontPriceFactor × (1 − liquidationFactor))``.

Units: amounts in whole tokens (float64), prices in USD per whole token, factors as fractions.
The exact integer path is :mod:`protocols.comet.exact` (:func:`exact_state`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.model import Snapshot
from protocols.base import AbsorbingRules, InterestAccrual, LendingBook, Liquidation
from protocols.comet import exact

PROTOCOL = "comet"


@dataclass
class CometAbsorb(Liquidation):
    """An absorb step: also the base credit of each account (collateral value × liquidationFactor,
    base units), what the reserves pay for it (``max(credit, debt)``, base units) and the base
    price used, so :meth:`CometRules.apply` can leave the excess credit to the account and move
    the reserves in base units."""

    ROW_FIELDS = (*Liquidation.ROW_FIELDS, "base_credit", "base_paid_out")
    AMOUNT_FIELDS = (*Liquidation.AMOUNT_FIELDS, "base_credit", "base_paid_out")

    base_credit: np.ndarray = field(default_factory=lambda: np.zeros(0))
    base_paid_out: np.ndarray = field(default_factory=lambda: np.zeros(0))
    base_price_usd: float = 1.0

    def select(self, keep: np.ndarray) -> CometAbsorb:
        out = super().select(keep)
        assert isinstance(out, CometAbsorb)
        out.reserves_change_usd = -float(out.base_paid_out.sum() * out.base_price_usd)
        return out

    def scaled(self, share: np.ndarray) -> CometAbsorb:
        out = super().scaled(share)
        assert isinstance(out, CometAbsorb)
        out.reserves_change_usd = -float(out.base_paid_out.sum() * out.base_price_usd)
        return out


def _factor(params: list[dict], key: str) -> np.ndarray:
    """A per-column factor from the markets' params (raw 1e18 integers as strings; 0 for the base)."""
    return np.array([int(p.get(key, 0)) / 1e18 for p in params])


class CometRules(AbsorbingRules, InterestAccrual):
    protocol = PROTOCOL

    def accrue(self, book: LendingBook, seconds: float, blocks: float) -> LendingBook:
        """``Comet.accruedInterestIndices``: the base borrow and supply indices grow by
        rate × elapsed seconds (1e18 per second, read at the snapshot's utilization); collateral
        earns nothing."""
        out = book.copy()
        base = book.extra["base_column"]
        out.debt[:, base] *= 1.0 + book.extra.get("borrow_rate_per_second", 0.0) * seconds
        out.collateral[:, base] *= 1.0 + book.extra.get("supply_rate_per_second", 0.0) * seconds
        return out

    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        """One book per Comet: columns are the base asset (column 0) then the collaterals by offset."""
        markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        books = []
        for comet, rows in markets.groupby("market", sort=True):
            params = [json.loads(text) for text in rows["params"]]
            offset = np.array([p.get("offset", -1) for p in params])
            order = np.lexsort((offset, np.array([p.get("role") != "base" for p in params])))
            rows, params = rows.iloc[order], [params[i] for i in order]
            assets = rows["asset"].to_numpy(dtype=object)
            base = params[0]
            positions = snapshot.positions[(snapshot.positions["protocol"] == PROTOCOL)
                                           & (snapshot.positions["market"] == comet)]
            accounts = np.array(sorted(set(positions["account"])), dtype=object)
            collateral = self._matrix(positions, "collateral", accounts, assets)
            debt = self._matrix(positions, "debt", accounts, assets)
            account_params = snapshot.accounts[(snapshot.accounts["protocol"] == PROTOCOL)
                                               & (snapshot.accounts["market"] == comet)]
            books.append(LendingBook(
                protocol=PROTOCOL, market=str(comet), accounts=accounts, assets=assets,
                collateral=collateral, debt=debt, category=np.zeros(len(accounts), dtype=np.int64),
                params={**{key: _factor(params, key) for key in
                           ("borrow_collateral_factor", "liquidate_collateral_factor", "liquidation_factor")},
                        "collateral_enabled": rows["collateral_enabled"].to_numpy(dtype=bool)},
                extra={"base_column": 0,
                       "supply_rate_per_second": int(base.get("supply_rate_per_second", 0)) / 1e18,
                       "borrow_rate_per_second": int(base.get("borrow_rate_per_second", 0)) / 1e18,
                       "store_front_price_factor": int(base["store_front_price_factor"]) / 1e18,
                       "target_reserves": int(base["target_reserves"]) / int(base["base_scale"]),
                       "reserves": int(base["reserves"]) / int(base["base_scale"]),
                       # absorbed collateral the protocol holds for sale, token units per column
                       "protocol_collateral": np.array([int(p.get("collateral_reserves", 0)) / int(p.get("scale", 1))
                                                        for p in params]),
                       "market_params": params, "account_params": {
                           a: json.loads(t) for a, t in zip(account_params["account"], account_params["params"],
                                                             strict=True)}}))
        return books

    @staticmethod
    def _matrix(positions: pd.DataFrame, side: str, accounts: np.ndarray, assets: np.ndarray) -> np.ndarray:
        rows = positions[positions["side"] == side]
        out = np.zeros((len(accounts), len(assets)))
        i = np.searchsorted(accounts, rows["account"].to_numpy(dtype=object))
        j = pd.Index(assets).get_indexer(rows["asset"])
        keep = j >= 0
        np.add.at(out, (i[keep], j[keep]), rows["amount"].to_numpy()[keep])
        return out

    # ---- the rule ----

    def _debt_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return book.debt @ prices

    def _seizable(self, book: LendingBook) -> np.ndarray:
        return book.collateral * book.params["collateral_enabled"]

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``Σ collateral × price × liquidateCollateralFactor / (debt × base price)``; inf without debt."""
        debt_usd = self._debt_usd(book, prices)
        covered_usd = self._seizable(book) @ (prices * book.params["liquidate_collateral_factor"])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(debt_usd > 0, covered_usd / np.where(debt_usd > 0, debt_usd, 1.0), np.inf)

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Comet.isLiquidatable: liquidation-factor-weighted collateral value below the debt's."""
        debt_usd = self._debt_usd(book, prices)
        covered_usd = self._seizable(book) @ (prices * book.params["liquidate_collateral_factor"])
        return (debt_usd > 0) & (covered_usd < debt_usd)

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> CometAbsorb:
        """Comet.absorb on every liquidatable account: all collateral and all debt at once."""
        hit = self.liquidatable(book, prices)
        if mask is not None:
            hit &= mask
        rows = np.flatnonzero(hit)
        seized = self._seizable(book)[rows]
        repaid = book.debt[rows].copy()
        base_price = float(prices[book.extra["base_column"]])
        credit = self.absorb_credit(book, prices, rows)
        paid_out = np.maximum(credit, repaid[:, book.extra["base_column"]])
        return CometAbsorb(rows=rows, repaid=repaid, seized=seized, fee=np.zeros_like(seized),
                           absorbed_by_protocol=True, reserves_change_usd=-float(paid_out.sum() * base_price),
                           base_credit=credit, base_paid_out=paid_out, base_price_usd=base_price)

    def absorb_credit(self, book: LendingBook, prices: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(k,)`` base units credited to each absorbed account: collateral value × liquidationFactor."""
        base_price = prices[book.extra["base_column"]]
        return self._seizable(book)[rows] @ (prices * book.params["liquidation_factor"]) / base_price

    def base_paid_out(self, book: LendingBook, prices: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``(k,)`` base units the reserves pay per absorbed account (AbsorbDebt.basePaidOut):
        ``max(credit, debt)`` — the debt repaid plus any excess credit left to the account."""
        return np.maximum(self.absorb_credit(book, prices, rows), book.debt[rows, book.extra["base_column"]])

    def bad_debt_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n,)`` USD of debt that an absorb now would not cover with the account's credit
        (collateral value × liquidationFactor): what the reserves pay beyond the credit, before
        the absorbed collateral is sold (at the store-front price, above the credit)."""
        credit_usd = self._seizable(book) @ (prices * book.params["liquidation_factor"])
        return np.maximum(self._debt_usd(book, prices) - credit_usd, 0.0)

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        """The book after absorb: collateral and debt gone, excess credit left as a base supply,
        the protocol's reserves reduced and its collateral inventory grown."""
        if not isinstance(liquidation, CometAbsorb):
            raise TypeError(f"comet rules apply a CometAbsorb step, not a {type(liquidation).__name__}")
        out = book.copy()
        rows, base = liquidation.rows, book.extra["base_column"]
        if len(rows) == 0:
            return out
        debt_before = book.debt[rows, base]
        out.collateral[rows] -= liquidation.seized
        out.debt[rows] -= liquidation.repaid
        out.collateral[rows, base] += np.maximum(liquidation.base_credit - debt_before, 0.0)
        out.extra["reserves"] = book.extra["reserves"] - float(liquidation.base_paid_out.sum())
        out.extra["protocol_collateral"] = book.extra["protocol_collateral"] + liquidation.seized.sum(axis=0)
        return out

    # ---- selling the absorbed collateral ----

    def store_front_price(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(m,)`` USD per token at which Comet sells collateral (Comet.quoteCollateral)."""
        discount = book.extra["store_front_price_factor"] * (1.0 - book.params["liquidation_factor"])
        return prices * (1.0 - discount)

    def quote_collateral(self, book: LendingBook, prices: np.ndarray, column: int, base_amount: float) -> float:
        """Tokens of collateral ``column`` that ``base_amount`` base tokens buy (Comet.quoteCollateral)."""
        return base_amount * prices[book.extra["base_column"]] / self.store_front_price(book, prices)[column]


def exact_state(snapshot: Snapshot, comet: str) -> exact.CometState:
    """The snapshot's exact integers for one Comet as an :class:`exact.CometState` (the check path
    of the 1e-9 tests: indices are those accrued to the snapshot block's timestamp)."""
    markets = snapshot.markets[(snapshot.markets["protocol"] == PROTOCOL) & (snapshot.markets["market"] == comet)]
    params = [json.loads(p) for p in markets["params"]]
    base = next(p for p in params if p["role"] == "base")
    base_asset = markets["asset"].iloc[[p["role"] for p in params].index("base")]
    by_offset = sorted((p["offset"], asset, p) for p, asset in zip(params, markets["asset"], strict=True)
                       if p["role"] == "collateral")
    column = {asset: i for i, (_, asset, _) in enumerate(by_offset)}
    state = exact.CometState(
        supply_index=int(base["supply_index"]), borrow_index=int(base["borrow_index"]),
        total_supply_base=int(base["total_supply_base"]), total_borrow_base=int(base["total_borrow_base"]),
        base_balance=int(base["base_balance"]), base_price=int(base["price_raw"]), base_scale=int(base["base_scale"]),
        asset_scale=[int(p["scale"]) for _, _, p in by_offset],
        asset_price=[int(p["price_raw"]) for _, _, p in by_offset],
        liquidate_collateral_factor=[int(p["liquidate_collateral_factor"]) for _, _, p in by_offset],
        liquidation_factor=[int(p["liquidation_factor"]) for _, _, p in by_offset])
    accounts = snapshot.accounts[(snapshot.accounts["protocol"] == PROTOCOL) & (snapshot.accounts["market"] == comet)]
    for account, text in zip(accounts["account"], accounts["params"], strict=True):
        state.principal[account] = int(json.loads(text)["principal"])
        state.collateral[account] = [0] * len(by_offset)
    held = snapshot.positions[(snapshot.positions["protocol"] == PROTOCOL) & (snapshot.positions["market"] == comet)
                              & (snapshot.positions["side"] == "collateral")
                              & (snapshot.positions["asset"] != base_asset)]
    for account, asset, raw in zip(held["account"], held["asset"], held["raw"], strict=True):
        state.collateral.setdefault(account, [0] * len(by_offset))[column[asset]] = int(raw)
    return state
