"""Static liquidation curves: collateral liquidatable per asset price drop, per protocol, before
any cascade.

For each root asset a (see :mod:`analyzer.graph.metrics`) and each drop d of a grid, every
protocol's oracle prices of a, and of every receipt token whose root is a, are multiplied by
(1 − d), all other prices held; the protocol's own rule (``protocols.plugins()[name].rules``:
``books(snapshot)``, ``liquidatable(book, prices)``, ``liquidate(book, prices, mask)``) says which
accounts could be liquidated. No second copy of any rule lives here. Values are USD at the shocked
prices: ``collateral_usd`` (all collateral of liquidatable accounts), ``debt_usd`` (their debt),
``seizable_usd`` (what the first keeper step may seize under the close factor), ``accounts``.
Prices are each market's ``oracle_price_usd`` when it is set, else the asset's ``price_usd``.
Protocols whose plugin has no rules are listed in ``without_rules``.

Option protocols: where a plugin's rules implement the engine's option-margin hook
(:class:`protocols.base.OptionMarginRules`, e.g. Lyra's ``OptionGreekCache.getMinCollateral``),
``option_curves`` gives, per option market and drop of its underlying's spot (the market's oracle
price × (1 − d), IV held at the snapshot's), the short positions the rule liquidates: their
count, their collateral in USD at the shocked prices and the buy-back cost (``buyback_usd``), at
the snapshot's block time. Limitation: collateral in an asset that tracks the underlying under
another address (a synth) is valued at its unshocked price.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyzer.engine.prepare import books_of
from analyzer.graph.build import option_values, position_values
from analyzer.graph.metrics import root_assets
from analyzer.model import Snapshot
from protocols.base import LendingBook, OptionMarginRules, Rules

DEFAULT_DROPS = tuple(round(0.05 * i, 2) for i in range(19))  # 0 %, 5 %, ..., 90 %


def protocol_rules(names: list[str]) -> tuple[dict[str, Rules], list[str]]:
    """The rules of each named protocol that has them (by registry name), and those without."""
    from protocols import plugins

    found = plugins()
    with_rules = {n: rules() for n in names if n in found and (rules := found[n].rules) is not None}
    return with_rules, [n for n in names if n not in with_rules]


def book_prices(snapshot: Snapshot, book: LendingBook) -> np.ndarray:
    """``(m,)`` USD prices of the book's asset columns as its protocol's oracle reports them."""
    markets = snapshot.markets
    oracle = markets[(markets["protocol"] == book.protocol) & (markets["market"] == book.market)]
    oracle = oracle[np.isfinite(oracle["oracle_price_usd"]) & (oracle["oracle_price_usd"] > 0)]
    oracle_price = dict(zip(oracle["asset"], oracle["oracle_price_usd"], strict=True))
    price = snapshot.price_of()
    return np.array([oracle_price.get(a, price.get(a, np.nan)) for a in book.assets], dtype="float64")


def rule_health(snapshot: Snapshot, rules: dict[str, Rules]) -> dict[tuple[str, str], float]:
    """(protocol, account) → the protocol rule's health factor, lowest over its markets."""
    frames = [pd.DataFrame({"protocol": name, "account": book.accounts.astype(str),
                            "health": rule.health_factor(book, book_prices(snapshot, book))})
              for name, rule in rules.items() for book in books_of(name, rule, snapshot)]
    if not frames:
        return {}
    return pd.concat(frames).groupby(["protocol", "account"])["health"].min().to_dict()


def liquidation_curves(snapshot: Snapshot, drops: tuple[float, ...] = DEFAULT_DROPS,
                       rules: dict[str, Rules] | None = None) -> dict:
    """Static liquidation curves (see the module docstring) as JSON-ready records.

    Returns ``{"drops": [...], "curves": [{"protocol", "asset", "symbol", "collateral_usd": [...],
    "debt_usd": [...], "seizable_usd": [...], "accounts": [...]}], "without_rules": [...]}``, one
    curve per protocol and root asset that the protocol holds as collateral.
    """
    protocols = sorted(set(snapshot.positions["protocol"]) | set(snapshot.options["protocol"]))
    if rules is None:
        rules, without = protocol_rules(protocols)
    else:
        without = [p for p in protocols if p not in rules]
    roots = root_assets(snapshot)
    symbols = snapshot.symbol_of()
    pos = position_values(snapshot)
    held = pos[pos["side"] == "collateral"].assign(root=lambda f: f["asset"].map(roots))
    factors = 1.0 - np.asarray(drops, dtype="float64")
    curves = []
    for name, rule in rules.items():
        books = [(book, book_prices(snapshot, book)) for book in books_of(name, rule, snapshot)]
        for root in sorted(set(held.loc[held["protocol"] == name, "root"])):
            totals = np.zeros((4, len(drops)))
            for book, prices in books:
                hit = np.array([roots.get(a, a) == root for a in book.assets])
                for k, factor in enumerate(factors):
                    shocked = np.where(hit, prices * factor, prices)
                    totals[:, k] += _liquidatable_totals(rule, book, shocked)
            curves.append({"protocol": name, "asset": root, "symbol": symbols.get(root, ""),
                           "collateral_usd": totals[0].tolist(), "debt_usd": totals[1].tolist(),
                           "seizable_usd": totals[2].tolist(), "accounts": totals[3].astype(int).tolist()})
    return {"drops": [float(d) for d in drops], "curves": curves,
            "option_curves": option_curves(snapshot, drops, rules), "without_rules": without}


def option_curves(snapshot: Snapshot, drops: tuple[float, ...], rules: dict[str, Rules]) -> list[dict]:
    """Short options liquidated per drop of the underlying (see the module docstring)."""
    opts = option_values(snapshot)
    roots = root_assets(snapshot)
    symbols, price = snapshot.symbol_of(), snapshot.price_of()
    iv = dict(zip(snapshot.assets["address"], snapshot.assets["iv"], strict=True))
    now = int(snapshot.meta.get("block_timestamp", 0) or 0)
    markets = snapshot.markets.set_index(["protocol", "market", "asset"])["oracle_price_usd"]
    out = []
    for name, rule in rules.items():
        if not isinstance(rule, OptionMarginRules):
            continue
        books_of(name, rule, snapshot)  # an option plugin loads its markets here (it has no lending books)
        shorts = opts[(opts["protocol"] == name) & (opts["side"] == "short")]
        for (market, underlying), rows in shorts.groupby(["market", "underlying"], sort=True):
            spot = float(markets.get((name, market, underlying), np.nan))
            spot = spot if np.isfinite(spot) and spot > 0 else price.get(underlying, np.nan)
            frame = snapshot.options.loc[rows.index].reset_index(drop=True)
            n = len(frame)
            moves = np.array([roots.get(a, a) == roots.get(underlying, underlying) for a in frame["collateral_asset"]])
            collateral_usd = frame["collateral"].to_numpy(float) * np.array(
                [price.get(a, 0.0) for a in frame["collateral_asset"]])
            sigma = np.full(n, iv.get(underlying, np.nan))
            totals = np.zeros((3, len(drops)))
            for k, drop in enumerate(drops):
                answer = rule.option_liquidations(frame, np.full(n, spot * (1.0 - drop)), sigma, now)
                hit = np.asarray(answer.liquidated, dtype=bool)
                shocked = np.where(moves, collateral_usd * (1.0 - drop), collateral_usd)
                totals[:, k] = (hit.sum(), shocked[hit].sum(), np.asarray(answer.value_usd, dtype=float)[hit].sum())
            out.append({"protocol": name, "market": str(market), "asset": str(underlying),
                        "symbol": symbols.get(underlying, ""), "positions": totals[0].astype(int).tolist(),
                        "collateral_usd": totals[1].tolist(), "buyback_usd": totals[2].tolist()})
    return out


def _liquidatable_totals(rule: Rules, book: LendingBook, prices: np.ndarray) -> np.ndarray:
    """[collateral USD, debt USD, seizable USD, account count] of the liquidatable accounts."""
    mask = np.asarray(rule.liquidatable(book, prices), dtype=bool)
    if not mask.any():
        return np.zeros(4)
    liquidation = rule.liquidate(book, prices, mask)
    return np.array([float((book.collateral[mask] @ prices).sum()), float((book.debt[mask] @ prices).sum()),
                     float((liquidation.seized @ prices).sum()), float(mask.sum())])
