"""The Aave V3 liquidation rule over snapshot arrays (accounts × reserves), vectorised, for every
release from 3.0 to 3.6 (:mod:`.profiles` says what changed where; the version is the one the
reader found on chain, ``params.version``).

Each step mirrors a function of the release's source:

- health factor: ``GenericLogic.calculateUserAccountData`` — collateral counts where the user's
  collateral flag is on (and, up to 3.5, the reserve's own threshold is non-zero); a reserve in the
  user's e-mode category (its collateral bitmap; the reserve's category bits up to 3.1) uses the
  category threshold. 3.0-3.4 floor the collateral-weighted average threshold to whole bps; 3.5+
  do not. The floor is taken on min(LT) + Σ value·(LT − min LT) / Σ value, exact whenever every
  counted reserve has the same threshold (no slack: an average a float error puts a hair under a
  whole bp can still floor one bp low; :mod:`.exact` is the contract's integer math).
- close factor: ``LiquidationLogic.executeLiquidationCall`` — before 3.3, 50% of the reserve's
  debt (100% at HF ≤ 0.95); 3.3+, 100% unless HF > 0.95 and both legs ≥ $2,000, then at most
  half of the account's total debt.
- collateral: ``_calculateAvailableCollateralToLiquidate`` — debt × price ratio × bonus (the e-mode
  bonus when the collateral is in the user's category), capped at the balance, in which case the
  debt repaid shrinks to what the balance buys; protocol fee ``(seized − seized / bonus) × fee``.
- dust (3.3+): a step that leaves less than $1,000 of the debt or of the collateral of its pair
  without clearing either is refused (``MustNotLeaveDust``): :meth:`AaveV3Rules.step` reports it,
  :meth:`liquidate` leaves the account alone as the chain would.
- deficit (3.3+): when the step takes the account's last counted collateral, its remaining debt is
  written off (``_burnBadDebt``): it leaves the book and stays as ``extra["deficit"]``, counted by
  :meth:`bad_debt_usd`. Before 3.3 the debt stays and :meth:`bad_debt_usd` measures what no
  collateral backs.
- grace period (3.1+): reserves in their liquidation grace period at the snapshot's block are
  neither repaid nor seized.
- PriceOracleSentinel (L2 markets): while the sequencer is down or within its grace period, only
  accounts under HF 0.95 may be liquidated (:meth:`AaveV3Rules.sentinel_permits`).

Units: token amounts in whole tokens, prices in USD per whole token, ratios as fractions.
Limitation: a 3.0/3.1 e-mode category with its own price source is priced with each asset's own
oracle price.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from protocols.aave_v3 import interest
from protocols.aave_v3.profiles import PROFILES, Profile, profile
from protocols.base import InterestAccrual, LendingBook, Liquidation, Rules

PROTOCOL = "aave-v3"
PARAM_KEYS = ("reserve_id", "liquidation_protocol_fee_bps", "emode_categories", "version", "in_grace_period")


@dataclass
class AaveLiquidation(Liquidation):
    """A step; ``writes_off[i]``: the step takes the last collateral of rows[i] and its remaining
    debt becomes the reserves' deficit (3.3+)."""

    ROW_FIELDS: ClassVar[tuple[str, ...]] = (*Liquidation.ROW_FIELDS, "writes_off")
    writes_off: np.ndarray | None = None

    def scaled(self, share: np.ndarray) -> AaveLiquidation:
        out = super().scaled(share)
        assert isinstance(out, AaveLiquidation)
        if self.writes_off is not None:  # a partial step leaves collateral: nothing is written off
            out = replace(out, writes_off=self.writes_off & (np.asarray(share, dtype=float) >= 1.0))
        return out


@dataclass
class Step:
    """What ``liquidationCall(collateral, debt, user, max, false)`` would do on each liquidatable
    account (``liquidation``) and which of them the dust rule refuses (``refused``, rows)."""

    liquidation: AaveLiquidation
    refused: np.ndarray


def _param_frame(markets: pd.DataFrame) -> pd.DataFrame:
    parsed = pd.DataFrame([json.loads(p) for p in markets["params"]], index=markets.index)
    for key, default in (("in_grace_period", False), ("deficit_raw", "0")):
        if key not in parsed:
            parsed[key] = default
    rates = [c for c in ("liquidity_rate_ray", "variable_borrow_rate_ray") if c in parsed]
    return markets.join(parsed[[*PARAM_KEYS, "deficit_raw", *rates]])


def _reserve_deficits(snapshot, mk: pd.DataFrame) -> np.ndarray:
    """(m,) each reserve's deficit in whole tokens (``getReserveDeficit``; 0 before 3.3)."""
    decimals = dict(zip(snapshot.assets["address"], snapshot.assets["decimals"], strict=True))
    return np.array([int(raw) / 10 ** int(decimals.get(a, 18))
                     for a, raw in zip(mk["asset"], mk["deficit_raw"].fillna("0"), strict=True)], dtype=float)


def _emode_tables(mk: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(256,) threshold and bonus in bps and (256, m) collateral membership per category id."""
    m = len(mk)
    lt, bonus, member = np.zeros(256), np.zeros(256), np.zeros((256, m), dtype=bool)
    reserve_ids = mk["reserve_id"].to_numpy(dtype=np.int64)
    for key, c in (mk["emode_categories"].iloc[0] or {}).items():
        i = int(key)
        lt[i], bonus[i] = c["liquidation_threshold"], c["liquidation_bonus"]
        if "collateral_bitmap" in c:
            bitmap = int(c["collateral_bitmap"])
            member[i] = [(bitmap >> int(r)) & 1 == 1 for r in reserve_ids]
        else:  # a snapshot without bitmaps: the reserves' category column (3.0/3.1)
            member[i] = mk["category"].to_numpy(dtype=np.int64) == i
    return lt, bonus, member


class AaveV3Rules(Rules, InterestAccrual):
    protocol = PROTOCOL

    def __init__(self, profile: str | None = None):
        """``profile`` forces a version's rule on every market (default: each market's own)."""
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

        emode_lt, emode_bonus, emode_collateral = _emode_tables(mk)
        version = str(mk["version"].iloc[0])
        rule = profile(self.profile_name or version, f"aave-v3 market {market}")
        params = {
            "liquidation_threshold_bps": np.rint(mk["liquidation_threshold"].to_numpy() * 1e4),
            "ltv": mk["ltv"].to_numpy(dtype=float),
            "liquidation_threshold": mk["liquidation_threshold"].to_numpy(dtype=float),
            "liquidation_bonus_bps": np.rint(mk["liquidation_bonus"].to_numpy() * 1e4) + 1e4,
            "protocol_fee": mk["liquidation_protocol_fee_bps"].to_numpy(dtype=float) / 1e4,
            "collateral_enabled": mk["collateral_enabled"].to_numpy(dtype=bool),
            "in_grace_period": mk["in_grace_period"].to_numpy(dtype=bool) & rule.grace_period,
        }
        extra = {"collateral_on": collateral_on, "emode_lt_bps": emode_lt, "emode_bonus_bps": emode_bonus,
                 "emode_collateral": emode_collateral, "oracle_prices": mk["oracle_price_usd"].to_numpy(dtype=float),
                 "profile": rule, "deficit": np.zeros((n, m)),
                 "reserve_deficit": _reserve_deficits(snapshot, mk)}
        for rate in ("liquidity_rate", "variable_borrow_rate"):   # ray a year -> fraction a year
            if f"{rate}_ray" in mk:
                extra[rate] = mk[f"{rate}_ray"].astype(float).to_numpy() / 1e27
        return LendingBook(PROTOCOL, market, accounts, assets, collateral, debt,
                           accounts_t["category"].to_numpy(dtype=np.int64), params, extra,
                           per_account=("collateral_on", "deficit"))

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
        in_emode = book.extra["emode_collateral"][category[emode]]
        out[emode] = np.where(in_emode, book.extra["emode_lt_bps"][category[emode]][:, None], base[None, :])
        return out

    @staticmethod
    def _counted(book: LendingBook, rows=slice(None)) -> np.ndarray:
        """(k, m) reserves that count as (and can be seized as) collateral."""
        counted = book.extra["collateral_on"][rows]
        if book.extra["profile"].collateral_needs_reserve_threshold:
            counted = counted & (book.params["liquidation_threshold_bps"] > 0)[None, :]
        return counted

    def account_data(self, book: LendingBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(total collateral USD, total debt USD, health factor) as ``Pool.getUserAccountData``."""
        return self._account_data(book, prices)[:3]

    def _account_data(self, book: LendingBook, prices: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`account_data` and the (n, m) reserves counted as collateral (:meth:`_counted`)."""
        profile_: Profile = book.extra["profile"]
        counted = self._counted(book)
        coll_usd = book.collateral * prices[None, :]
        coll_usd *= counted
        total_coll = coll_usd.sum(axis=1)
        total_debt = book.debt @ prices
        threshold = self._threshold_bps(book)
        with np.errstate(invalid="ignore", divide="ignore"):
            if profile_.floor_average_threshold:
                lowest = np.min(threshold, axis=1, where=coll_usd > 0, initial=np.inf)
                lowest = np.where(np.isfinite(lowest), lowest, 0.0)
                above_lowest = threshold - lowest[:, None]
                above_lowest *= coll_usd
                excess = above_lowest.sum(axis=1)
                average = np.where(total_coll > 0, np.floor(lowest + excess / total_coll), 0.0)
                weighted = total_coll * average
            else:
                weighted = (coll_usd * threshold).sum(axis=1)
            hf = np.where(total_debt > 0, weighted / 1e4 / total_debt, np.inf)
        return total_coll, total_debt, hf, counted

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return self.account_data(book, prices)[2]

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """HF < 1 (``HEALTH_FACTOR_LIQUIDATION_THRESHOLD``), some debt and some collateral the
        liquidator can take, outside any grace period (``ValidationLogic.validateLiquidationCall``)."""
        return self.health_and_liquidatable(book, prices)[1]

    # ValidationLogic.MINIMUM_HEALTH_FACTOR_LIQUIDATION_THRESHOLD (0.95e18), every release 3.0-3.6
    SENTINEL_EXEMPT_HEALTH_FACTOR: ClassVar[float] = 0.95

    def sentinel_permits(self, book: LendingBook, prices: np.ndarray, liquidation_allowed: bool) -> np.ndarray:
        """Which accounts an L2 market's PriceOracleSentinel lets be liquidated
        (``ValidationLogic.validateLiquidationCall``: no sentinel, or HF < 0.95, or the sentinel's
        ``isLiquidationAllowed()``). ``liquidation_allowed`` is the sentinel's answer (the sequencer
        up and past its grace period: :func:`analyzer.oracles.sequencer_down` is None); while it is
        False only accounts under 0.95 may be liquidated. Borrows have no such exemption
        (``validateBorrow``: ``isBorrowAllowed()``, the same check)."""
        if liquidation_allowed:
            return np.ones(len(book.accounts), dtype=bool)
        return self.health_factor(book, prices) < self.SENTINEL_EXEMPT_HEALTH_FACTOR

    def health_and_liquidatable(self, book: LendingBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`health_factor` and :meth:`liquidatable` from one :meth:`account_data`."""
        total_coll, total_debt, hf, counted = self._account_data(book, prices)
        return hf, self._liquidatable(book, hf, total_debt, counted)

    def _liquidatable(self, book: LendingBook, hf: np.ndarray, total_debt: np.ndarray,
                      counted: np.ndarray) -> np.ndarray:
        """:meth:`liquidatable` given :meth:`_account_data`; the seizable and repayable reserves are
        looked up only for the accounts under 1 with debt."""
        out = (hf < 1.0) & (total_debt > 0)
        rows = np.flatnonzero(out)
        if len(rows):
            open_ = ~book.params["in_grace_period"][None, :]
            seizable = (counted[rows] & (np.take(book.collateral, rows, axis=0) > 0) & open_).any(axis=1)
            repayable = ((np.take(book.debt, rows, axis=0) > 0) & open_).any(axis=1)
            out[rows] = seizable & repayable
        return out

    def step(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Step:
        """One ``liquidationCall(collateral, debt, user, type(uint256).max, false)`` per liquidatable
        account: its largest debt (USD) against its largest counted collateral (USD), both outside
        any grace period; the dust rule's refusals beside it."""
        rule: Profile = book.extra["profile"]
        total_coll, total_debt, health_factor, counted = self._account_data(book, prices)
        ok = self._liquidatable(book, health_factor, total_debt, counted)
        if mask is not None:
            ok &= mask
        rows = np.flatnonzero(ok)
        k, m, idx = len(rows), len(book.assets), np.arange(len(rows))
        open_ = ~book.params["in_grace_period"][None, :]
        debt_usd = book.debt[rows] * prices[None, :]
        coll_usd = book.collateral[rows] * prices[None, :] * counted[rows]
        j_debt, j_coll = (debt_usd * open_).argmax(axis=1), (coll_usd * open_).argmax(axis=1)
        hf = health_factor[rows]
        debt_balance, coll_balance = book.debt[rows, j_debt], book.collateral[rows, j_coll]
        debt_leg, coll_leg = debt_usd[idx, j_debt], coll_usd[idx, j_coll]
        if rule.min_full_close_usd:
            partial = (coll_leg >= rule.min_full_close_usd) & (debt_leg >= rule.min_full_close_usd) & \
                      (hf > rule.close_factor_hf_threshold)
            half_total = rule.close_factor * total_debt[rows]
            debt_to_cover = np.where(partial & (debt_leg > half_total), half_total / prices[j_debt], debt_balance)
        else:
            debt_to_cover = debt_balance * np.where(hf <= rule.close_factor_hf_threshold, 1.0, rule.close_factor)

        category = book.category[rows]
        in_emode = (category != 0) & book.extra["emode_collateral"][category, j_coll]
        bonus = np.where(in_emode, book.extra["emode_bonus_bps"][category],
                         book.params["liquidation_bonus_bps"][j_coll]) / 1e4
        price_debt, price_coll = prices[j_debt], prices[j_coll]
        max_collateral = debt_to_cover * price_debt / price_coll * bonus
        capped = max_collateral > coll_balance
        seized_amount = np.where(capped, coll_balance, max_collateral)
        repaid_amount = np.where(capped, coll_balance * price_coll / price_debt / bonus, debt_to_cover)
        fee_amount = (seized_amount - seized_amount / bonus) * book.params["protocol_fee"][j_coll]

        refused = np.zeros(k, dtype=bool)
        writes_off = np.zeros(k, dtype=bool)
        if rule.min_leftover_usd:
            partial_step = (repaid_amount < debt_balance) & ~capped
            debt_left = (debt_balance - repaid_amount) * price_debt
            coll_left = (coll_balance - seized_amount) * price_coll
            refused = partial_step & ((debt_left < rule.min_leftover_usd) | (coll_left < rule.min_leftover_usd))
        if rule.deficit:  # hasNoCollateralLeft: the seized collateral is all the counted collateral
            writes_off = capped & (coll_leg >= total_coll[rows] * (1 - 1e-12))  # == in base units

        repaid, seized, fee = np.zeros((k, m)), np.zeros((k, m)), np.zeros((k, m))
        repaid[idx, j_debt], seized[idx, j_coll], fee[idx, j_coll] = repaid_amount, seized_amount, fee_amount
        liquidation = AaveLiquidation(rows=rows, repaid=repaid, seized=seized, fee=fee, writes_off=writes_off)
        return Step(liquidation, rows[refused])

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> AaveLiquidation:
        """:meth:`step` without the accounts the dust rule refuses (the chain reverts those calls)."""
        planned = self.step(book, prices, mask)
        return planned.liquidation.select(~np.isin(planned.liquidation.rows, planned.refused))

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        out = book.copy()
        rows = liquidation.rows
        out.collateral[rows] = np.maximum(out.collateral[rows] - liquidation.seized, 0.0)
        out.debt[rows] = np.maximum(out.debt[rows] - liquidation.repaid, 0.0)
        writes_off = getattr(liquidation, "writes_off", None)
        if writes_off is not None and writes_off.any():
            gone = rows[writes_off]
            out.extra["deficit"][gone] += out.debt[gone]
            out.debt[gone] = 0.0
        return out

    def written_off_usd(self, book: LendingBook, prices: np.ndarray) -> float:
        """The reserves' deficits as the pool records them (3.3+ ``getReserveDeficit``): debt burnt
        from accounts left without collateral, which no position shows any more."""
        deficit = book.extra.get("reserve_deficit")
        return float(deficit @ prices) if deficit is not None else 0.0

    def bad_debt_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Debt written off into reserve deficits (3.3+) plus debt that no collateral backs."""
        deficit = book.extra.get("deficit")
        written_off = deficit @ prices if deficit is not None else 0.0
        return written_off + super().bad_debt_usd(book, prices)
