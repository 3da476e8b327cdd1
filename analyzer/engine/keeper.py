"""What a keeper takes of one liquidation step, and the trades it makes: one definition for the
engine and for the replay (so the chain is liquidated by the rule the engine assumes).

A step is what a protocol's own rule allows now (:meth:`protocols.base.Rules.liquidate`). The
keeper sells the collateral it received (receipt tokens as their underlying, ``sell_through`` of
it) and buys the debt it repaid; when the protocol absorbs the account itself (Comet), the keeper
instead buys the absorbed collateral at the protocol's store-front price and resells it. How much
of the step pays for its slippage and gas is :func:`analyzer.engine.keeper_share.keeper_fraction`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.engine.keeper_share import keeper_fraction
from protocols.base import AbsorbingRules, LendingBook, Liquidation, Rules


@dataclass
class KeeperTake:
    """``share`` (k,) of each proposed row taken (0 = declined); ``sell_units`` / ``buy_units``
    (k, A): asset units the keeper sells on / buys from the venues for what it took."""

    share: np.ndarray
    sell_units: np.ndarray
    buy_units: np.ndarray


def keeper_take(rules: Rules, book: LendingBook, step: Liquidation, oracle: np.ndarray, *, cols: np.ndarray,
                sale_index: np.ndarray, sale_units: np.ndarray, price: np.ndarray, curves,
                committed_sell: np.ndarray, committed_buy: np.ndarray, sell_through: float,
                gas_usd: float) -> KeeperTake:
    """The keeper's decision on ``step`` (a liquidation of ``book`` at ``oracle`` prices).

    ``cols`` (m,): the asset index (of ``price``, the (A,) USD market mids) of each book column;
    ``sale_index`` (m,): the asset actually sold for each column (a receipt's underlying);
    ``sale_units`` (m,): units of it one column unit redeems for; ``curves(a)``: the
    :class:`~analyzer.engine.market.SlippageCurve` of asset a; ``committed_*`` (A,): what the
    round's earlier keepers already sold and bought (not modified here).
    """
    k, n_assets = len(step.rows), len(price)
    seized = step.seized
    if step.absorbed_by_protocol and isinstance(rules, AbsorbingRules):
        # what the protocol does not sell now (Comet at or above targetReserves) no buyer can take
        seized = seized * rules.for_sale(book, step)[:, None]
    sold = (seized if step.absorbed_by_protocol else seized - step.fee) * sale_units
    sell_units = np.zeros((k, n_assets))
    buy_units = np.zeros((k, n_assets))
    for j in np.flatnonzero(sold.any(axis=0)):      # columns (tens), not accounts; the others add nothing
        sell_units[:, sale_index[j]] += sell_through * sold[:, j]
    if not step.absorbed_by_protocol:
        for j in np.flatnonzero(step.repaid.any(axis=0)):
            buy_units[:, cols[j]] += step.repaid[:, j]
    if step.absorbed_by_protocol:
        # the protocol sells what it absorbed at its own price (Comet.buyCollateral at
        # quoteCollateral's discount); a buyer takes only what it can resell on the venues at a profit
        unit_cost = rules.store_front_price(book, oracle) if isinstance(rules, AbsorbingRules) else oracle
        held_usd = -(sell_through * seized) @ unit_cost
    else:
        held_usd = (1.0 - sell_through) * (sold @ price[sale_index])
    share = keeper_fraction(sell_units, held_usd, buy_units, price, curves, committed_sell, committed_buy, gas_usd)
    return KeeperTake(share, sell_units * share[:, None], buy_units * share[:, None])
