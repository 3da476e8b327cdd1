"""The Aave V3 liquidation rule over snapshot arrays (accounts × reserves), vectorised.

Each step mirrors a function of ``@aave/core-v3`` (v3.0.x, the devnet's bytecode):

- health factor: ``GenericLogic.calculateUserAccountData`` — collateral counts only where the
  reserve's liquidation threshold is non-zero and the user's collateral flag is on; an e-mode
  user's collateral in its category uses the category threshold; the threshold is the
  collateral-weighted average *floored to whole basis points*, as the contract's integer division
  does (this floor alone moves a mixed-collateral health factor by up to ~1e-4).
- close factor: ``LiquidationLogic._calculateDebt`` — 50% of the debt in the chosen asset, 100%
  when the health factor is at or below ``CLOSE_FACTOR_HF_THRESHOLD`` (0.95).
- collateral: ``LiquidationLogic._calculateAvailableCollateralToLiquidate`` — debt × price ratio ×
  bonus (the e-mode bonus when the collateral is in the user's category), capped at the collateral
  balance, in which case the debt repaid shrinks to what that balance buys at the bonus.
- protocol fee: the same function — ``(collateral − collateral / bonus) × liquidationProtocolFee``,
  sent to the treasury; ``seized`` below is the liquidator's part plus that fee.
- bad debt: v3.0 writes nothing off: once the collateral is gone the rest of the debt stays, and
  ``Rules.bad_debt_usd`` (debt value beyond collateral value) measures it.

Units: token amounts in whole tokens, prices in USD per whole token, ratios as fractions.
Limitation: an e-mode category with its own price source (``EModeCategory.priceSource``) is
priced here with each asset's own oracle price (every category on the devnet has none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from protocols.aave_v3 import interest
from protocols.base import InterestAccrual, LendingBook, Liquidation, Rules

PROTOCOL = "aave-v3"
# the floor of the weighted threshold must not drop a whole bp for float noise on an exact integer
_FLOOR_SLACK_BPS = 1e-7


@dataclass(frozen=True)
class Profile:
    """Constants of one deployed version of ``LiquidationLogic``."""

    name: str
    close_factor: float                    # DEFAULT_LIQUIDATION_CLOSE_FACTOR
    max_close_factor: float                # MAX_LIQUIDATION_CLOSE_FACTOR
    close_factor_hf_threshold: float       # CLOSE_FACTOR_HF_THRESHOLD
    full_close_below_usd: float = 0.0      # 3.3+: MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD (0 = none)
    close_factor_of_total_debt: bool = False  # 3.3+: the 50% applies to the account's total debt
    verified: bool = False
    source: str = ""


PROFILES = {
    "3.0": Profile("3.0", 0.5, 1.0, 0.95, verified=True,
                   source="@aave/core-v3 1.19.3 contracts/protocol/libraries/logic/LiquidationLogic.sol"),
    # Aave V3 Ethereum runs 3.3+ (aave-v3-origin): 100% of the reserve's debt when HF <= 0.95 or
    # when the pair's collateral or debt is worth under $2000, else at most 50% of the account's
    # *total* debt value. Not modelled: the MIN_LEFTOVER_BASE ($1000) dust revert and the deficit
    # write-off when the last collateral goes. Read from a public copy of the 3.3+ source, not
    # from the deployed bytecode: unverified.
    "3.3": Profile("3.3", 0.5, 1.0, 0.95, full_close_below_usd=2000.0, close_factor_of_total_debt=True,
                   verified=False,
                   source="aave-dao/aave-v3-origin src/contracts/protocol/libraries/logic/LiquidationLogic.sol"),
}


def _param_frame(markets: pd.DataFrame) -> pd.DataFrame:
    parsed = pd.DataFrame([json.loads(p) for p in markets["params"]], index=markets.index)
    rates = [c for c in ("liquidity_rate_ray", "variable_borrow_rate_ray") if c in parsed]
    return markets.join(parsed[["reserve_id", "liquidation_protocol_fee_bps", "emode_categories", "version", *rates]])


class AaveV3Rules(Rules, InterestAccrual):
    protocol = PROTOCOL

    def __init__(self, profile: str | None = None):
        if profile is not None and profile not in PROFILES:
            raise ContagionError(f'aave-v3 rules: unknown profile "{profile}" (known: {", ".join(PROFILES)})')
        self.profile_name = profile

    def accrue(self, book: LendingBook, seconds: float, blocks: float) -> LendingBook:
        """Aave accrues per second (``MathUtils``, protocols/aave_v3/interest.py); blocks do not count."""
        return interest.accrue(book, seconds)

    # ---- building the arrays ----------------------------------------------------------------
    def books(self, snapshot) -> list[LendingBook]:
        markets = snapshot.markets[snapshot.markets["protocol"] == PROTOCOL]
        return [self._book(snapshot, market, _param_frame(rows).sort_values("reserve_id"))
                for market, rows in markets.groupby("market", sort=True)]

    def _book(self, snapshot, market: str, mk: pd.DataFrame) -> LendingBook:
        assets = mk["asset"].to_numpy(dtype=object)
        accounts_t = snapshot.accounts[(snapshot.accounts["protocol"] == PROTOCOL) & (snapshot.accounts["market"] == market)]
        pos = snapshot.positions[(snapshot.positions["protocol"] == PROTOCOL) & (snapshot.positions["market"] == market)]
        accounts = accounts_t["account"].to_numpy(dtype=object)
        n, m = len(accounts), len(assets)
        row = pd.Index(accounts).get_indexer(pos["account"])
        col = pd.Index(assets).get_indexer(pos["asset"])
        if (row < 0).any() or (col < 0).any():
            bad = pos[(row < 0) | (col < 0)].iloc[0]
            raise ContagionError(f"snapshot positions: aave-v3 account {bad['account']} / asset {bad['asset']} has no "
                                 f"accounts or markets row in market {market}")
        amount = pos["amount"].to_numpy(dtype=float)
        collateral, debt = np.zeros((n, m)), np.zeros((n, m))
        is_coll = (pos["side"] == "collateral").to_numpy()
        np.add.at(collateral, (row[is_coll], col[is_coll]), amount[is_coll])
        np.add.at(debt, (row[~is_coll], col[~is_coll]), amount[~is_coll])

        collateral_on = np.ones((n, m), dtype=bool)
        flagged = ~accounts_t["params"].str.contains('"collateral_off": []', regex=False).to_numpy()
        for i in np.flatnonzero(flagged):  # only accounts with a supplied reserve not used as collateral
            off = json.loads(accounts_t["params"].iloc[i]).get("collateral_off", [])
            collateral_on[i, pd.Index(assets).get_indexer(off)] = False

        emode_lt, emode_ltv, emode_bonus = np.zeros(256), np.zeros(256), np.zeros(256)
        for key, c in (mk["emode_categories"].iloc[0] or {}).items():
            emode_lt[int(key)], emode_ltv[int(key)] = c["liquidation_threshold"], c["ltv"]
            emode_bonus[int(key)] = c["liquidation_bonus"]
        version = str(mk["version"].iloc[0])
        profile = PROFILES.get(self.profile_name or version)
        if profile is None:
            raise ContagionError(f'aave-v3 market {market}: no rule profile for version "{version}" '
                                 f'(known: {", ".join(PROFILES)})')
        params = {
            "liquidation_threshold_bps": np.rint(mk["liquidation_threshold"].to_numpy() * 1e4),
            "ltv": mk["ltv"].to_numpy(dtype=float),
            "liquidation_threshold": mk["liquidation_threshold"].to_numpy(dtype=float),
            "liquidation_bonus_bps": np.rint(mk["liquidation_bonus"].to_numpy() * 1e4) + 1e4,
            "protocol_fee": mk["liquidation_protocol_fee_bps"].to_numpy(dtype=float) / 1e4,
            "collateral_enabled": mk["collateral_enabled"].to_numpy(dtype=bool),
            "emode_category": mk["category"].to_numpy(dtype=np.int64),
        }
        extra = {"collateral_on": collateral_on, "emode_lt_bps": emode_lt, "emode_ltv_bps": emode_ltv,
                 "emode_bonus_bps": emode_bonus, "oracle_prices": mk["oracle_price_usd"].to_numpy(dtype=float),
                 "profile": profile}
        for rate in ("liquidity_rate", "variable_borrow_rate"):   # ray a year -> fraction a year
            if f"{rate}_ray" in mk:
                extra[rate] = mk[f"{rate}_ray"].astype(float).to_numpy() / 1e27
        return LendingBook(PROTOCOL, market, accounts, assets, collateral, debt,
                           accounts_t["category"].to_numpy(dtype=np.int64), params, extra,
                           per_account=("collateral_on",))

    # ---- the rule ---------------------------------------------------------------------------
    @staticmethod
    def _threshold_bps(book: LendingBook, rows=slice(None)) -> np.ndarray:
        """(k, m) liquidation threshold in bps per account and reserve, e-mode applied."""
        category = book.category[rows]
        base = book.params["liquidation_threshold_bps"]
        out = np.broadcast_to(base, (len(category), len(base)))
        emode = np.flatnonzero(category)
        if len(emode) == 0:       # most accounts use no e-mode: the reserves' thresholds, not copied
            return out
        out = out.copy()
        in_emode = book.params["emode_category"][None, :] == category[emode][:, None]
        out[emode] = np.where(in_emode, book.extra["emode_lt_bps"][category[emode]][:, None], base[None, :])
        return out

    @staticmethod
    def _counted_collateral_usd(book: LendingBook, prices: np.ndarray, rows=slice(None)) -> np.ndarray:
        counted = book.extra["collateral_on"][rows] & (book.params["liquidation_threshold_bps"] > 0)[None, :]
        return book.collateral[rows] * prices[None, :] * counted

    def account_data(self, book: LendingBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(total collateral USD, total debt USD, health factor) as ``Pool.getUserAccountData``."""
        coll_usd = self._counted_collateral_usd(book, prices)
        total_coll = coll_usd.sum(axis=1)
        total_debt = book.debt @ prices
        with np.errstate(invalid="ignore", divide="ignore"):
            avg_lt_bps = np.floor((coll_usd * self._threshold_bps(book)).sum(axis=1) / total_coll + _FLOOR_SLACK_BPS)
            avg_lt_bps = np.where(total_coll > 0, avg_lt_bps, 0.0)
            hf = np.where(total_debt > 0, total_coll * avg_lt_bps / 1e4 / total_debt, np.inf)
        return total_coll, total_debt, hf

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return self.account_data(book, prices)[2]

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """HF < 1 (``HEALTH_FACTOR_LIQUIDATION_THRESHOLD``), some debt, and some collateral the
        liquidator can take (``ValidationLogic.validateLiquidationCall``)."""
        return self._liquidatable(*self.account_data(book, prices))

    @staticmethod
    def _liquidatable(total_coll: np.ndarray, total_debt: np.ndarray, hf: np.ndarray) -> np.ndarray:
        return (hf < 1.0) & (total_debt > 0) & (total_coll > 0)

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        """One ``liquidationCall(collateral, debt, user, type(uint256).max, false)`` per liquidatable
        account: its largest debt (USD) against its largest counted collateral (USD)."""
        profile: Profile = book.extra["profile"]
        total_coll, total_debt, health_factor = self.account_data(book, prices)   # once for both uses
        ok = self._liquidatable(total_coll, total_debt, health_factor)
        if mask is not None:
            ok &= mask
        rows = np.flatnonzero(ok)
        k, m = len(rows), len(book.assets)
        hf = health_factor[rows]
        debt_usd = book.debt[rows] * prices[None, :]
        coll_usd = self._counted_collateral_usd(book, prices, rows)
        j_debt, j_coll = debt_usd.argmax(axis=1), coll_usd.argmax(axis=1)
        idx = np.arange(k)
        debt_balance, coll_balance = book.debt[rows, j_debt], book.collateral[rows, j_coll]
        full_close = hf <= profile.close_factor_hf_threshold
        if profile.full_close_below_usd:
            full_close |= (debt_usd[idx, j_debt] < profile.full_close_below_usd) | \
                          (coll_usd[idx, j_coll] < profile.full_close_below_usd)
        if profile.close_factor_of_total_debt:
            partial_cap = profile.close_factor * debt_usd.sum(axis=1) / prices[j_debt]
            debt_to_cover = np.where(full_close, debt_balance, np.minimum(debt_balance, partial_cap))
        else:
            debt_to_cover = debt_balance * np.where(full_close, profile.max_close_factor, profile.close_factor)

        category = book.category[rows]
        in_emode = (category != 0) & (book.params["emode_category"][j_coll] == category)
        bonus = np.where(in_emode, book.extra["emode_bonus_bps"][category],
                         book.params["liquidation_bonus_bps"][j_coll]) / 1e4
        price_debt, price_coll = prices[j_debt], prices[j_coll]
        max_collateral = debt_to_cover * price_debt / price_coll * bonus
        capped = max_collateral > coll_balance
        seized_amount = np.where(capped, coll_balance, max_collateral)
        repaid_amount = np.where(capped, coll_balance * price_coll / price_debt / bonus, debt_to_cover)
        fee_amount = (seized_amount - seized_amount / bonus) * book.params["protocol_fee"][j_coll]

        repaid, seized, fee = np.zeros((k, m)), np.zeros((k, m)), np.zeros((k, m))
        repaid[idx, j_debt], seized[idx, j_coll], fee[idx, j_coll] = repaid_amount, seized_amount, fee_amount
        return Liquidation(rows=rows, repaid=repaid, seized=seized, fee=fee)

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        out = book.copy()
        rows = liquidation.rows
        out.collateral[rows] = np.maximum(out.collateral[rows] - liquidation.seized, 0.0)
        out.debt[rows] = np.maximum(out.debt[rows] - liquidation.repaid, 0.0)
        return out
