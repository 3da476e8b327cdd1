"""The options channel of the cascade: dealer re-hedging, the vol spiral, and option-margin liquidations.

Hedging (DESIGN.md engine step 4): an option market maker (an AMM pool such as Lyra's) keeps its
net delta hedged on the underlying's venues. Its delta is the negative of the users' net option
delta; when spot moves, a short-gamma pool's delta rises into a fall and it *sells* the
underlying to re-hedge. Where the ``options`` table lists the market's positions the pool's delta
is revalued with Black-Scholes (Black & Scholes 1973) at each round's spot and IV; otherwise the
``hedgers`` table's ``net_gamma`` (pool delta per USD of spot, base units / USD) is used
linearly: ``sold = net_gamma × ΔS``.

Vol spiral: ``iv_{t+1} = max(iv_t − β · (S_{t+1}/S_t − 1) + κ · contracts_bought_back, 0.01)``, with β
(``spot_vol_beta``, vol points per unit of return: β = 1 makes a −10% move add 10 vol points) and κ
(``iv_per_contract``, vol points per contract, the way Lyra's ``OptionMarketPricer`` moves the
board's base IV by ``amount / standardSize``).

Option-margin liquidations: a plugin's rules may derive from
:class:`protocols.base.OptionMarginRules` (Lyra's ``OptionGreekCache.getMinCollateral``); the engine
calls it each round and closes the shorts it returns. Without such a plugin, this part is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from protocols.base import OptionLiquidation, OptionMarginRules

SECONDS_PER_YEAR = 365.0 * 86400.0
MIN_IV = 0.01
MIN_YEARS = 1.0 / 365.0


def bs_delta(is_call: np.ndarray, spot: np.ndarray, strike: np.ndarray, years: np.ndarray,
             iv: np.ndarray, rate: float = 0.0) -> np.ndarray:
    """Black-Scholes delta per contract (calls N(d1), puts N(d1) − 1), vectorised; no dividend."""
    spot = np.maximum(spot, 1e-12)
    years = np.maximum(years, MIN_YEARS)
    vol = np.maximum(iv, MIN_IV)
    d1 = (np.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / (vol * np.sqrt(years))
    nd1 = ndtr(d1)
    return np.where(is_call, nd1, nd1 - 1.0)


@dataclass
class OptionBook:
    """Options and hedgers as arrays over the snapshot's asset index ``A``.

    ``row_hedger``: per option row, the hedger (pool) that is its counterparty, −1 when none.
    """

    frame: pd.DataFrame             # the snapshot's options table (row order of the arrays)
    protocol: np.ndarray
    underlying: np.ndarray          # (r,) asset index
    is_call: np.ndarray
    strike: np.ndarray
    years: np.ndarray
    user_sign_size: np.ndarray      # (r,) +size for user longs, −size for user shorts
    collateral_asset: np.ndarray    # (r,) asset index, −1 when none
    row_hedger: np.ndarray          # (r,)
    hedger_protocol: np.ndarray     # (h,)
    hedger_asset: np.ndarray        # (h,) asset index
    hedger_gamma: np.ndarray        # (h,) pool gamma, base units per USD
    hedger_revalued: np.ndarray     # (h,) bool: delta from the options rows, not from net_gamma
    now: int
    iv_offset: np.ndarray | None = None   # (r,) the row's IV minus its underlying's (a venue's smile)

    @classmethod
    def from_snapshot(cls, snapshot, asset_index: dict[str, int]) -> OptionBook:
        """Rows from the on-chain ``options`` table (counterparty: the market's pool in ``hedgers``)
        and from off-chain ``option_instruments`` (counterparty: the venue's dealers, one hedger
        per venue and underlying, each instrument at its own mark IV: ``iv_offset``)."""
        meta = snapshot.meta
        now = int(meta.get("block_timestamp", meta.get("timestamp", 0)) or 0)
        venue_opts, venue_hedgers, venue_offset, venue_as_of = _venue_rows(snapshot)
        hedgers = pd.concat([snapshot.hedgers, venue_hedgers], ignore_index=True)
        keys = list(zip(hedgers["protocol"], hedgers["market"], strict=True))
        hedger_of = {key: i for i, key in enumerate(keys)}
        opts = pd.concat([snapshot.options, venue_opts], ignore_index=True)
        iv_offset = np.concatenate([np.zeros(len(snapshot.options)), venue_offset])
        as_of = np.concatenate([np.full(len(snapshot.options), now, dtype=np.int64), venue_as_of])
        market_asset = {(p, m): a for p, m, a in zip(snapshot.markets["protocol"], snapshot.markets["market"],
                                                     snapshot.markets["asset"], strict=True)}
        market_asset.update({k: a for k, a in zip(keys, hedgers["asset"], strict=True)})
        opt_keys = list(zip(opts["protocol"], opts["market"], strict=True))
        underlying = np.array([asset_index.get(market_asset.get(k, ""), -1) for k in opt_keys], dtype=np.int64)
        live = underlying >= 0
        opts, underlying = opts.loc[live].reset_index(drop=True), underlying[live]
        iv_offset, as_of = iv_offset[live], as_of[live]
        opt_keys = [k for k, ok in zip(opt_keys, live, strict=True) if ok]
        row_hedger = np.array([hedger_of.get(k, -1) for k in opt_keys], dtype=np.int64)
        revalued = np.zeros(len(hedgers), dtype=bool)
        revalued[row_hedger[row_hedger >= 0]] = True
        size = opts["size"].to_numpy(float)
        expiry = opts["expiry"].to_numpy(np.int64)
        return cls(
            frame=opts, protocol=opts["protocol"].to_numpy(object), underlying=underlying,
            is_call=(opts["kind"] == "call").to_numpy(bool), strike=opts["strike"].to_numpy(float),
            years=np.maximum((expiry - as_of) / SECONDS_PER_YEAR, MIN_YEARS),
            user_sign_size=np.where(opts["side"].to_numpy(object) == "long", size, -size),
            collateral_asset=np.array([asset_index.get(a, -1) for a in opts["collateral_asset"]], dtype=np.int64),
            row_hedger=row_hedger, hedger_protocol=hedgers["protocol"].to_numpy(object),
            hedger_asset=np.array([asset_index.get(a, -1) for a in hedgers["asset"]], dtype=np.int64),
            hedger_gamma=hedgers["net_gamma"].to_numpy(float), hedger_revalued=revalued, now=now,
            iv_offset=iv_offset)

    @property
    def empty(self) -> bool:
        return len(self.frame) == 0 and len(self.hedger_asset) == 0

    def pool_delta(self, spot: np.ndarray, iv: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """``(h,)`` pool delta from the open option rows it is counterparty to (base units)."""
        out = np.zeros(len(self.hedger_asset))
        rows = alive & (self.row_hedger >= 0)
        if rows.any():
            u = self.underlying[rows]
            vol = iv[u] if self.iv_offset is None else iv[u] + self.iv_offset[rows]
            delta = bs_delta(self.is_call[rows], spot[u], self.strike[rows], self.years[rows], vol)
            np.add.at(out, self.row_hedger[rows], -self.user_sign_size[rows] * delta)
        return out

    def hedge_sales(self, spot_before: np.ndarray, spot_after: np.ndarray, iv_before: np.ndarray,
                    iv_after: np.ndarray, alive_before: np.ndarray, alive_after: np.ndarray,
                    n_assets: int) -> dict[str, np.ndarray]:
        """``{hedger protocol: (A,)}`` underlying sold (> 0) or bought by each protocol's pools (or a
        venue's dealers) to stay delta-neutral after a move of spot and IV (the IV part is vanna)."""
        out: dict[str, np.ndarray] = {p: np.zeros(n_assets) for p in self.hedging_protocols}
        if len(self.hedger_asset) == 0:
            return out
        change = self.pool_delta(spot_after, iv_after, alive_after) - self.pool_delta(spot_before, iv_before,
                                                                                     alive_before)
        linear = self.hedger_gamma * (spot_after[self.hedger_asset] - spot_before[self.hedger_asset])
        sold = np.where(self.hedger_revalued, change, linear)
        for h in np.flatnonzero(self.hedger_asset >= 0):       # hedgers: one per option market
            out[str(self.hedger_protocol[h])][self.hedger_asset[h]] += sold[h]
        return out

    @property
    def hedging_protocols(self) -> list[str]:
        """Protocols (and off-chain venues) whose pools or dealers hedge, sorted."""
        return sorted({str(p) for p in self.hedger_protocol})

    def hedger_gammas(self, spot: np.ndarray, iv: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """``(h,)`` each pool's (or venue's dealers') gamma, base units per USD, signed (< 0: short):
        ``net_gamma`` for a linear hedger, a central difference of :meth:`pool_delta` for a revalued one."""
        gamma = self.hedger_gamma.copy()
        if self.hedger_revalued.any():
            bump = np.maximum(spot * 1e-4, 1e-12)
            up = self.pool_delta(spot + bump, iv, alive)
            down = self.pool_delta(spot - bump, iv, alive)
            numeric = (up - down) / (2 * bump[np.maximum(self.hedger_asset, 0)])
            gamma = np.where(self.hedger_revalued, numeric, gamma)
        return gamma

    def short_gamma(self, spot: np.ndarray, iv: np.ndarray, alive: np.ndarray, n_assets: int) -> np.ndarray:
        """``(A,)`` the pools' short gamma (≥ 0, base units per USD): the hedging flow per USD of move."""
        gamma = self.hedger_gammas(spot, iv, alive)
        out = np.zeros(n_assets)
        ok = self.hedger_asset >= 0
        np.add.at(out, self.hedger_asset[ok], np.maximum(-gamma[ok], 0.0))
        return out

    def net_gamma(self, spot: np.ndarray, iv: np.ndarray, alive: np.ndarray, n_assets: int) -> np.ndarray:
        """``(A,)`` the hedgers' gamma summed per asset, signed (> 0: the dealers are net long gamma)."""
        gamma = self.hedger_gammas(spot, iv, alive)
        out = np.zeros(n_assets)
        ok = self.hedger_asset >= 0
        np.add.at(out, self.hedger_asset[ok], gamma[ok])
        return out


def long_gamma_damping(net_gamma: np.ndarray, price: np.ndarray, depth_1pct: np.ndarray) -> np.ndarray:
    """``(A,)`` the factor ``1 / (1 + g)`` that turns a round's hedge into continuous hedging where the
    dealers are net long gamma (1 elsewhere); ``g = 0.01 · p · Γ / depth_1pct`` is their one-round loop
    gain (Γ base units per USD, ``depth_1pct`` the units that move the asset's venues by 1%).

    A dealer hedging as the price moves targets the delta at the price its own trade leaves: with a
    linear venue (impact ``k`` USD per unit, ``g = kΓ``) its hedge ``q`` solves ``q = Γ (Δp − k q)``, so
    ``q = Γ Δp / (1 + g)`` and the price settles at ``Δp / (1 + g)`` from where the dealers last hedged,
    the continuous-time limit. Hedging in rounds instead (``q = Γ Δp``) makes the series
    ``Δp · Σ (−g)^k``, which converges to the same level only while ``g < 1`` and oscillates with a
    growing amplitude beyond (a long-gamma dealer's buy-back overshooting the fall it answers). Short
    gamma is left to the rounds: its series ``Δp · Σ g^k`` is the continuous limit ``Δp / (1 − g)``
    already, and diverges where continuous hedging does (``g ≥ 1``, the divergence flag)."""
    gain = np.divide(0.01 * price * net_gamma, depth_1pct, out=np.zeros_like(net_gamma, dtype=float),
                     where=depth_1pct > 0)
    return np.where(gain > 0, 1.0 / (1.0 + gain), 1.0)


def _venue_rows(snapshot) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """``option_instruments`` as options rows (customers' side: the opposite of the dealers'), one
    hedger per (venue, currency), each row's IV offset from its underlying's, and its data time."""
    inst = snapshot.table("option_instruments") if hasattr(snapshot, "option_instruments") else None
    if inst is None or len(inst) == 0:
        return (snapshot.options.iloc[0:0], snapshot.hedgers.iloc[0:0], np.zeros(0), np.zeros(0, dtype=np.int64))
    inst = inst[inst["dealer_position"] != 0].reset_index(drop=True)
    market = (inst["venue"] + ":" + inst["currency"]).to_numpy(object)
    customers = -inst["dealer_position"].to_numpy(float)
    opts = pd.DataFrame({
        "protocol": inst["venue"], "market": market, "account": "customers", "position_id": np.arange(len(inst)),
        "kind": inst["kind"], "strike": inst["strike"], "expiry": inst["expiry"], "size": np.abs(customers),
        "side": np.where(customers > 0, "long", "short"), "collateral_asset": "", "collateral": 0.0,
        "raw_size": "0", "raw_collateral": "0"})
    firsts = inst.drop_duplicates(["venue", "currency"])
    hedgers = pd.DataFrame({"protocol": firsts["venue"].to_numpy(object),
                            "market": (firsts["venue"] + ":" + firsts["currency"]).to_numpy(object),
                            "asset": firsts["asset"].to_numpy(object), "net_delta": 0.0, "net_gamma": 0.0,
                            "net_vega": 0.0, "hedge_position": 0.0})
    asset_iv = dict(zip(snapshot.assets["address"], snapshot.assets["iv"], strict=True))
    base = np.array([asset_iv.get(a, np.nan) for a in inst["asset"]], dtype=float)
    offset = np.where(np.isfinite(base), inst["mark_iv"].to_numpy(float) - base, 0.0)
    return opts, hedgers, offset, inst["as_of"].to_numpy(np.int64)


def vol_spiral(iv: np.ndarray, spot_before: np.ndarray, spot_after: np.ndarray, beta: float,
               contracts_bought: np.ndarray, iv_per_contract: float) -> np.ndarray:
    """Next IV per asset (NaN where the asset has no IV): see the module docstring."""
    ret = np.divide(spot_after, spot_before, out=np.ones_like(spot_after), where=spot_before > 0) - 1.0
    moved = iv - beta * ret + iv_per_contract * contracts_bought
    return np.where(np.isnan(iv), iv, np.maximum(moved, MIN_IV))


def option_margin_liquidations(rules_by_protocol: dict, book: OptionBook, alive: np.ndarray, spot: np.ndarray,
                               iv: np.ndarray, n_assets: int, carry: dict | None = None
                               ) -> tuple[np.ndarray, dict[str, OptionLiquidation]]:
    """Ask every option plugin's margin rule which of its open shorts it liquidates now.

    ``carry`` (updated in place): each (protocol, market)'s :attr:`OptionLiquidation.carry` from the
    previous round, handed back to its rule. Returns the rows liquidated (bool, over all option rows)
    and each protocol's answer."""
    carry = {} if carry is None else carry
    closed = np.zeros(len(book.frame), dtype=bool)
    answers: dict[str, OptionLiquidation] = {}
    for protocol, rules in rules_by_protocol.items():
        if not isinstance(rules, OptionMarginRules):
            continue
        full = OptionLiquidation(np.zeros(len(book.frame), dtype=bool), np.zeros(len(book.frame)),
                                 np.zeros(len(book.frame)))
        mine = alive & (book.protocol == protocol)
        for market in sorted(set(book.frame["market"][mine])):      # option markets: a handful
            rows = np.flatnonzero(mine & (book.frame["market"] == market).to_numpy())
            u = book.underlying[rows]
            answer = rules.option_liquidations(book.frame.iloc[rows].reset_index(drop=True), spot[u], iv[u], book.now,
                                               carry=carry.get((protocol, market)))
            carry[(protocol, market)] = answer.carry
            full.liquidated[rows] = np.asarray(answer.liquidated, dtype=bool)
            full.collateral_sold[rows] = np.asarray(answer.collateral_sold, dtype=float)
            full.value_usd[rows] = np.asarray(answer.value_usd, dtype=float)
        answers[protocol] = full
        closed |= full.liquidated
    return closed, answers
