"""Morpho Blue's liquidation rule, one isolated book per market, and the vault layer above it.

Mirrors ``Morpho.sol`` (``@morpho-org/morpho-blue`` 1.0.0):

- ``_isHealthy``: a position is liquidatable when ``borrowed > collateral × price / 1e36 × LLTV``
  (the oracle's ``price()`` is collateral in loan units; here both legs are oracle USD).
- ``liquidate``: no close factor; the liquidation incentive factor is
  ``LIF = min(1.15, 1 / (0.3 · LLTV + 0.7))``; repaying ``r`` loan units seizes ``r × LIF /
  price`` collateral. The largest step repays everything, or, when the collateral does not cover
  ``debt × LIF``, seizes all the collateral and repays ``collateral × price / LIF``.
- When a liquidation leaves the position without collateral, its remaining debt is bad debt:
  ``totalBorrowAssets`` and ``totalSupplyAssets`` fall by it at once, i.e. every supplier of that
  market (and no one else: markets are isolated) loses in proportion to its supply shares.

A book is one market: column 0 the loan token, column 1 the collateral. ``collateral[:, 0]`` holds
suppliers' claims (loan units; they back no borrow), ``collateral[:, 1]`` posted collateral,
``debt[:, 0]`` the borrow. A position whose collateral is gone keeps its remaining debt in the
book, where it is the market's realised bad debt (``bad_debt_usd``) and is no longer liquidatable.

Vaults (MetaMorpho v1.0): a vault's total assets are its supply in each market; a market's bad
debt takes ``bad × vault shares / total supply shares`` from it (:func:`vault_share_values`).
The exact integer path is :mod:`protocols.morpho_blue.exact`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from protocols.base import LendingBook, Liquidation, ReceiptWritedownRules
from protocols.morpho_blue.contracts import PROTOCOL

LOAN, COLLATERAL = 0, 1


def incentive_factor(lltv: float) -> float:
    """Morpho's LIF: min(1.15, 1 / (1 − 0.3 · (1 − LLTV)))."""
    return min(1.15, 1.0 / (1.0 - 0.3 * (1.0 - lltv)))


class MorphoBlueRules(ReceiptWritedownRules):
    protocol = PROTOCOL

    def receipt_writedowns(self, snapshot: Snapshot, books: list[LendingBook]) -> dict[str, float]:
        """Each vault share written down by its markets' realised bad debt (:func:`vault_share_values`)."""
        return {vault: 1.0 - value for vault, value in vault_share_values(snapshot, books, self).items()}

    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        positions = snapshot.positions[snapshot.positions["protocol"] == PROTOCOL]
        by_market = dict(tuple(positions.groupby("market", sort=False)))
        books = []
        for market_id, rows in markets.groupby("market", sort=True):
            params = [json.loads(text) for text in rows["params"]]
            if not all("role" in p for p in params):
                raise ContagionError(f"snapshot: morpho-blue market {market_id}: its rows were not written by the "
                                     "morpho-blue reader (no role in params)")
            roles = {p["role"]: (asset, p) for p, asset in zip(params, rows["asset"], strict=True)}
            if "loan" not in roles:
                continue    # a vault's row
            (loan, info), (collateral, _) = roles["loan"], roles["collateral"]
            held = by_market.get(market_id, positions.iloc[:0])
            accounts = np.array(sorted(set(held["account"])), dtype=object)
            assets = np.array([loan, collateral], dtype=object)
            lltv = int(info["lltv"]) / 1e18
            books.append(LendingBook(
                protocol=PROTOCOL, market=str(market_id), accounts=accounts, assets=assets,
                collateral=_matrix(held, "collateral", accounts, assets), debt=_matrix(held, "debt", accounts, assets),
                category=np.zeros(len(accounts), dtype=np.int64),
                params={"liquidation_threshold": np.array([0.0, lltv]),
                        "liquidation_bonus": np.array([0.0, incentive_factor(lltv) - 1.0]),
                        "collateral_enabled": np.array([False, True])},
                extra={"lltv": lltv, "incentive_factor": incentive_factor(lltv), "name": info.get("name", ""),
                       "total_supply_assets": int(info["total_supply_assets"]) / 10 ** int(info["loan_decimals"]),
                       "total_borrow_assets": int(info["total_borrow_assets"]) / 10 ** int(info["loan_decimals"]),
                       "written_off": int(info.get("written_off", 0)) / 10 ** int(info["loan_decimals"])}))
        return books

    # ---- the rule ----

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``collateral × price × LLTV / borrowed``; inf without debt."""
        debt_usd = book.debt[:, LOAN] * prices[LOAN]
        covered_usd = book.collateral[:, COLLATERAL] * prices[COLLATERAL] * book.extra["lltv"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(debt_usd > 0, covered_usd / np.where(debt_usd > 0, debt_usd, 1.0), np.inf)

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Not ``_isHealthy`` and some collateral left (without it the debt is already bad debt)."""
        debt_usd = book.debt[:, LOAN] * prices[LOAN]
        covered_usd = book.collateral[:, COLLATERAL] * prices[COLLATERAL] * book.extra["lltv"]
        return (debt_usd > 0) & (book.collateral[:, COLLATERAL] > 0) & (covered_usd < debt_usd)

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        """The whole debt repaid, or all the collateral seized when it covers less than debt × LIF."""
        hit = self.liquidatable(book, prices)
        if mask is not None:
            hit &= mask
        rows = np.flatnonzero(hit)
        lif = book.extra["incentive_factor"]
        debt, held = book.debt[rows, LOAN], book.collateral[rows, COLLATERAL]
        seize_for_all = debt * prices[LOAN] * lif / prices[COLLATERAL]
        seized = np.minimum(seize_for_all, held)
        repaid = np.where(seize_for_all <= held, debt, held * prices[COLLATERAL] / (lif * prices[LOAN]))
        out_repaid, out_seized = np.zeros((len(rows), 2)), np.zeros((len(rows), 2))
        out_repaid[:, LOAN], out_seized[:, COLLATERAL] = repaid, seized
        return Liquidation(rows=rows, repaid=out_repaid, seized=out_seized, fee=np.zeros_like(out_seized))

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        """Collateral and debt reduced; a position left without collateral keeps its remaining debt
        as the market's bad debt (Morpho realises it: see :meth:`realised_bad_debt`)."""
        out = book.copy()
        rows = liquidation.rows
        out.collateral[rows] -= liquidation.seized
        out.debt[rows] -= liquidation.repaid
        # float residue of "seize everything" is nothing, as on chain (collateral == 0)
        gone = out.collateral[rows, COLLATERAL] <= 1e-12 * np.maximum(book.collateral[rows, COLLATERAL], 1e-300)
        out.collateral[rows[gone], COLLATERAL] = 0.0
        out.debt[rows] = np.maximum(out.debt[rows], 0.0)
        return out

    def bad_debt_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n,)`` borrowed value beyond the collateral's (realised when the collateral is gone)."""
        return np.maximum(book.debt[:, LOAN] * prices[LOAN] - book.collateral[:, COLLATERAL] * prices[COLLATERAL], 0.0)

    def unrealised_loss_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Bad debt of positions that still hold collateral: Morpho takes a position's bad debt
        from ``totalSupplyAssets`` (so from every supply share and vault share price) only when a
        liquidation leaves it without collateral (``Morpho.liquidate``, ``badDebtShares``)."""
        return np.where(book.collateral[:, COLLATERAL] > 0, self.bad_debt_usd(book, prices), 0.0)

    def written_off_usd(self, book: LendingBook, prices: np.ndarray) -> float:
        """Bad debt Morpho has realised in this market before the snapshot (``Liquidate.badDebtAssets``)."""
        return float(book.extra["written_off"] * prices[LOAN])

    def realised_bad_debt(self, book: LendingBook) -> float:
        """Loan units of debt left on positions without collateral: what Morpho has taken from the
        market's suppliers (``Liquidate.badDebtAssets``, summed)."""
        return float(book.debt[book.collateral[:, COLLATERAL] == 0, LOAN].sum())

    def supplier_loss(self, book: LendingBook) -> np.ndarray:
        """``(n,)`` loan units each supplier of the market loses to its realised bad debt: pro rata
        to its supply (``totalSupplyAssets`` falls, the suppliers' shares do not)."""
        supplied = book.collateral[:, LOAN]
        total = book.extra["total_supply_assets"] or supplied.sum()
        return supplied * (self.realised_bad_debt(book) / total) if total > 0 else np.zeros(len(supplied))


def _matrix(positions: pd.DataFrame, side: str, accounts: np.ndarray, assets: np.ndarray) -> np.ndarray:
    rows = positions[positions["side"] == side]
    out = np.zeros((len(accounts), len(assets)))
    if len(rows) == 0:
        return out
    i = np.searchsorted(accounts, rows["account"].to_numpy(dtype=object))
    if side == "collateral":
        # a supply and a collateral may be the same token in two markets but not in one: the
        # collateral column is the non-loan asset; a supply is in the loan column
        j = np.where(rows["asset"].to_numpy(dtype=object) == assets[LOAN], LOAN, COLLATERAL)
    else:
        j = np.zeros(len(rows), dtype=np.int64)
    np.add.at(out, (i, j), rows["amount"].to_numpy())
    return out


def vault_share_values(snapshot: Snapshot, books: list[LendingBook], rules: MorphoBlueRules) -> dict[str, float]:
    """Per vault address: the fraction of its total assets left after its markets' realised bad
    debt in ``books`` (1.0 = untouched): MetaMorpho v1.0's ``totalAssets`` is the sum of its
    supply in each market, and a market's loss takes from each supplier pro rata to its shares.
    A v1.1 vault (it answers ``lostAssets()``) counts the loss as lost assets and keeps its share
    price: 1.0, the loss falls on whoever withdraws last.
    The share price (``convertToAssets``) scales by the same fraction (up to OpenZeppelin's one
    virtual asset)."""
    markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
    by_market = {b.market: b for b in books}
    out = {}
    for vault, text in zip(markets["market"], markets["params"], strict=True):
        params = json.loads(text)
        if params.get("role") != "vault":
            continue
        if not params.get("realises_bad_debt", True):
            out[vault] = 1.0    # MetaMorpho v1.1: the loss goes to lostAssets, the share price holds
            continue
        total = int(params["total_assets"])
        lost = 0.0
        for market_id in params["supply_shares"]:
            book = by_market.get(market_id)
            if book is None or vault not in set(book.accounts):
                continue
            row = int(np.flatnonzero(book.accounts == vault)[0])
            decimals = _loan_decimals(markets, market_id)
            lost += rules.supplier_loss(book)[row] * 10**decimals
        out[vault] = (total - lost) / total if total > 0 else 1.0
    return out


def _loan_decimals(markets: pd.DataFrame, market_id: str) -> int:
    row = markets[markets["market"] == market_id].iloc[0]
    return int(json.loads(row["params"])["loan_decimals"])
