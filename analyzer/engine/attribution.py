"""Attribution: which flow moved each price, and which price moves pushed each account under.

Sources are the channels a flow can come from: ``initial`` (accounts already liquidatable before
the shock), ``shock`` (the scenario's exogenous move), ``forced_sale``, ``hedging:<protocol>`` (an
option market's pool, or an off-chain venue's dealers, re-hedging), ``liquidation:<protocol>`` (keepers selling seized collateral and buying the debt
asset in that protocol), ``writedown:<protocol>`` (that protocol's bad debt writing its receipt
tokens down) and ``option_liquidation:<protocol>``.

Rules (DebtRank-style linear attribution, Battiston et al. 2012, "DebtRank: Too Central to Fail?",
Sci. Rep. 2, 541, restricted to one step per round):

1. A round's price change of an asset is split over the sources whose flow *pushed in the direction
   of the net flow*, pro rata to their flow (a source trading against the move gets no share). The
   shares of one price change add to one.
2. A receipt token's price ``k · p_underlying · (1 − writedown)`` changes by an underlying part
   (split like the underlying's change) and a write-down part (``writedown:<protocol>``).
3. An account liquidated in a round inherits the sources of the cumulative oracle-price changes it
   saw since the shock, weighted by its exposure ``collateral × liquidation_threshold − debt`` per
   asset: each source's contribution to the fall of its risk-adjusted margin, harmful parts only,
   normalised to one. An account liquidatable before the shock is caused by ``initial``.
4. The contagion matrix sums, per liquidated protocol, each liquidation's USD times its shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SOURCE_INITIAL = "initial"
SOURCE_SHOCK = "shock"
SOURCE_FORCED = "forced_sale"


def hedging_source(protocol: str) -> str:
    return f"hedging:{protocol}"


def liquidation_source(protocol: str) -> str:
    return f"liquidation:{protocol}"


def writedown_source(protocol: str) -> str:
    return f"writedown:{protocol}"


def option_source(protocol: str) -> str:
    return f"option_liquidation:{protocol}"


def source_names(lending_protocols: list[str], option_protocols: list[str],
                 hedging_protocols: Sequence[str] = ()) -> list[str]:
    """The fixed, ordered list of sources of one cascade (columns of every ``(…, S)`` array)."""
    names = [SOURCE_INITIAL, SOURCE_SHOCK, SOURCE_FORCED]
    names += [hedging_source(p) for p in hedging_protocols]
    names += [liquidation_source(p) for p in lending_protocols]
    names += [writedown_source(p) for p in lending_protocols + option_protocols]
    names += [option_source(p) for p in option_protocols]
    return names


def split_price_change(price_change: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """``(A, S)``: each asset's price change split over the sources of its flows (rule 1).

    ``price_change`` (A,) USD; ``flows`` (A, S) asset units sold (> 0) or bought (< 0) per source.
    An asset whose price moved with no attributable flow keeps its change unassigned (zero row).
    """
    net = flows.sum(axis=1)
    pushing = np.where(np.sign(flows) == np.sign(net)[:, None], np.abs(flows), 0.0)
    total = pushing.sum(axis=1)
    shares = np.divide(pushing, total[:, None], out=np.zeros_like(pushing), where=total[:, None] > 0)
    return shares * price_change[:, None]


def account_causes(exposure: np.ndarray, oracle_change_by_source: np.ndarray, initially_liquidatable: np.ndarray,
                   initial_index: int = 0) -> np.ndarray:
    """``(k, S)`` cause shares of ``k`` liquidated accounts (rule 3); every row adds to one.

    ``exposure`` (k, m): collateral × liquidation threshold − debt, token units; ``oracle_change_by_source``
    (m, S): cumulative oracle price change of each column since before the shock, USD, split by source;
    ``initially_liquidatable`` (k,) bool.
    """
    return causes_from_contribution(exposure @ oracle_change_by_source, initially_liquidatable, initial_index)


def causes_from_contribution(contribution: np.ndarray, initially_liquidatable: np.ndarray,
                             initial_index: int = 0) -> np.ndarray:
    """``(k, S)`` shares from each source's contribution to the margin change (USD, < 0 harms)."""
    harmful = np.maximum(-contribution, 0.0)
    total = harmful.sum(axis=1)
    shares = np.divide(harmful, total[:, None], out=np.zeros_like(harmful), where=total[:, None] > 0)
    no_cause = (total <= 0) | initially_liquidatable
    shares[no_cause] = 0.0
    shares[no_cause, initial_index] = 1.0
    return shares
