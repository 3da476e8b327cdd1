"""Morpho Blue's per-market choice of LLTV, as a governance-like change.

A Morpho Blue market is immutable: its LLTV is part of its id (``MarketParamsLib.id``, the keccak256
of loan, collateral, oracle, irm, lltv). What a risk curator can change is *which* market the
positions sit in: a sibling market with the same loan token, collateral, oracle and IRM at another
LLTV among those governance has enabled (``Morpho.enableLltv`` / ``isLltvEnabled``; anyone may
``createMarket`` at an enabled LLTV). The reader lists the enabled set (``EnableLltv`` events) in
each market's params (``enabled_lltvs``).

**Parameter** (:meth:`MorphoBlueTuning.parameters`): ``lltv`` of a market with borrowers, lower is
safer, moved in steps of 0.005 (every LLTV Morpho's governance has enabled on Ethereum and Base is a
multiple of 0.5%), down to the lowest enabled LLTV above zero. A value between two enabled LLTVs
means the enabled one at or above it (:func:`enabled_at_or_above`: the market does not move until
the value reaches the next enabled LLTV), so the search's pruning, which undoes every step it can,
ends each change on an enabled LLTV itself, the value :meth:`configure` creates the sibling at.

**Offline** (:meth:`MorphoBlueTuning.apply`): the market's rows, positions and accounts re-keyed
to the sibling's id with the new LLTV (and its liquidation incentive factor,
``min(1.15, 1 / (1 − 0.3 × (1 − LLTV)))``); when the sibling is already in the snapshot, the two
books are merged (an account's balances in both add up, as the move on chain adds them).

**On a fork** (:meth:`MorphoBlueTuning.configure`): ``createMarket`` at the new LLTV when absent,
then every position moved with Morpho's own functions, each account impersonated, the loan tokens
it needs for the move lent to it by a balance write (``deal``) and taken back after:

1. each supplier (a MetaMorpho vault too, its owner first adding the sibling with ``submitCap``
   as a curator's reallocation would) ``supply`` s what its shares are worth into the sibling;
2. each borrower ``repay`` s all its borrow shares, ``withdrawCollateral`` s all of it,
   ``supplyCollateral`` s it into the sibling and ``borrow`` s there what it repaid;
3. each supplier ``withdraw`` s all its shares from the old market.

Morpho's ``borrow`` refuses a position unhealthy at the new LLTV: a change that makes a borrower
liquidatable at today's prices cannot be made this way, and :meth:`configure` says so (the
offline model liquidates such a borrower in the sibling in its settle phase).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from protocols.base import ParameterChange, ParameterTuning, TunableParameter
from protocols.morpho_blue.contracts import PROTOCOL, WAD, market_id
from protocols.morpho_blue.rules import incentive_factor

STEP = 0.005


def enabled_at_or_above(value: float, enabled: Sequence[int]) -> int:
    """The smallest enabled LLTV (1e18-scaled) at or above ``value``; ContagionError when none."""
    found = [v for v in enabled if v >= round(value * 1e4) * 10**14]
    if not found:
        raise ContagionError(f"morpho-blue: no enabled LLTV at or above {value:g}")
    return min(found)


def _market_info(snapshot: Snapshot, market: str) -> dict:
    mk = snapshot.markets
    rows = mk[(mk["protocol"] == PROTOCOL) & (mk["market"] == market)]
    params = [json.loads(p) for p in rows["params"]]
    loan = [p for p in params if p.get("role") == "loan"]
    if not loan:
        raise ContagionError(f"morpho-blue: no market {market} in the snapshot")
    return loan[0]


class MorphoBlueTuning(ParameterTuning):
    protocol = PROTOCOL

    def parameters(self, snapshot: Snapshot) -> list[TunableParameter]:
        pos = snapshot.positions
        borrowed = set(pos.loc[(pos["protocol"] == PROTOCOL) & (pos["side"] == "debt"), "market"])
        out = []
        for market in sorted(borrowed):
            info = _market_info(snapshot, market)
            enabled = sorted(int(v) for v in info.get("enabled_lltvs", []))
            lltv = int(info["lltv"])
            lower = [v for v in enabled if 0 < v < lltv]
            if lower:
                out.append(TunableParameter(market, info["collateral_token"], "lltv", lltv / WAD, STEP,
                                            lower[0] / WAD, lltv / WAD, margin=True))
        return out

    def apply(self, snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
        mine = [c for c in changes if c.protocol == PROTOCOL]
        for change in mine:
            if change.parameter != "lltv":
                raise ContagionError(f"morpho-blue: {change.parameter} is not a parameter this tuning sets")
            snapshot = self._moved(snapshot, change)
        return snapshot

    def _moved(self, snapshot: Snapshot, change: ParameterChange) -> Snapshot:
        info = _market_info(snapshot, change.market)
        lltv = enabled_at_or_above(change.value, [int(v) for v in info.get("enabled_lltvs", [])])
        if lltv == int(info["lltv"]):
            return snapshot
        old = change.market
        new = market_id(info["loan_token"], info["collateral_token"], info["oracle"], info["irm"], lltv)
        mk = snapshot.markets.copy()
        sibling = ((mk["protocol"] == PROTOCOL) & (mk["market"] == new)).any()
        mine = (mk["protocol"] == PROTOCOL) & (mk["market"] == old)
        if sibling:      # the sibling's rows stay; the old market's totals add to them, its rows go
            moved = {json.loads(p)["role"]: json.loads(p) for p in mk.loc[mine, "params"]}
            for i in mk.index[(mk["protocol"] == PROTOCOL) & (mk["market"] == new)]:
                p = json.loads(mk.at[i, "params"])
                for key in ("total_supply_assets", "total_supply_shares", "total_borrow_assets", "total_borrow_shares"):
                    p[key] = str(int(p[key]) + int(moved[p["role"]][key]))
                mk.at[i, "params"] = json.dumps(p)
            mk = mk[~mine]
        else:
            for i in mk.index[mine]:
                p = json.loads(mk.at[i, "params"])
                p.update(id=new, lltv=str(lltv), name=p["name"].rsplit(" ", 1)[0] + f" {lltv / WAD:g}")
                mk.at[i, "params"] = json.dumps(p)
            mk.loc[mine, ["market", "ltv", "liquidation_threshold", "liquidation_bonus"]] = \
                [new, lltv / WAD, lltv / WAD, incentive_factor(lltv / WAD) - 1.0]
        for i in mk.index[(mk["protocol"] == PROTOCOL)]:      # vaults: their supply follows to the sibling
            p = json.loads(mk.at[i, "params"])
            if p.get("role") == "vault" and old in p.get("supply_shares", {}):
                shares = p["supply_shares"]
                shares[new] = str(int(shares.pop(old)) + int(shares.get(new, 0)))
                mk.at[i, "params"] = json.dumps(p)
        out = copy.copy(snapshot)
        out.meta, out.markets = dict(snapshot.meta), mk.reset_index(drop=True)
        out.positions = _rekeyed(snapshot.positions, old, new, ["account", "asset", "reserve", "side"])
        out.accounts = _rekeyed(snapshot.accounts, old, new, ["account"])
        return out

    def configure(self, w3, deployment: dict[str, Any], changes: Sequence[ParameterChange]) -> None:
        from protocols.morpho_blue.moving import move_market

        mine = [c for c in changes if c.protocol == PROTOCOL]
        for change in mine:
            if change.parameter != "lltv":
                raise ContagionError(f"morpho-blue: {change.parameter} is not a parameter this tuning sets")
            move_market(w3, deployment, change.market, round(change.value * 1e4) * 10**14)


def _rekeyed(table: pd.DataFrame, old: str, new: str, keys: list[str]) -> pd.DataFrame:
    """``table`` with the morpho-blue rows of market ``old`` moved to ``new``; an account's rows in both
    add up (positions: amount and raw; accounts: the sibling's row is kept)."""
    rows = (table["protocol"] == PROTOCOL) & (table["market"] == old)
    if not rows.any():
        return table
    out = table.copy()
    out.loc[rows, "market"] = new
    target = (out["protocol"] == PROTOCOL) & (out["market"] == new)
    key = [out.loc[target, k].fillna("").astype(str) for k in keys]
    dup = pd.Series(list(zip(*key, strict=True)), index=out.index[target]).duplicated(keep=False)
    if not dup.any():
        return out
    if "amount" not in out:          # accounts: keep the first row of an account
        return out.drop(dup[dup].index[pd.Series(list(zip(*[k[dup] for k in key], strict=True)),
                                                  index=dup[dup].index).duplicated()])
    merged = []
    groups = out.loc[dup[dup].index].groupby([out.loc[dup[dup].index, k].fillna("") for k in keys], sort=False)
    for _, g in groups:
        first = g.iloc[0].copy()
        first["amount"] = float(g["amount"].sum())
        first["raw"] = str(sum(int(r or 0) for r in g["raw"]))
        merged.append(first)
    return pd.concat([out.drop(dup[dup].index), pd.DataFrame(merged)], ignore_index=True)
