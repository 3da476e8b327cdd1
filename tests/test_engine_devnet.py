"""The engine on a real scan of the mainnet-like devnet (every registered plugin's real rule).

Expectations are monotonicity and accounting identities that hold whatever the book holds. With
oracles that follow the exogenous (CEX) path, as Chainlink feeds do, a deeper WETH shock never
liquidates less and the keepers' sales push the pool price beyond the shock. With oracles that read
the devnet's pools, sales feed back into oracles and liquidations cross protocols; the devnet's
WETH/USDC pool holds ~6.5k WETH within its range against ~110k WETH of collateral, so that
feedback run collapses the pool and is checked for its accounting, not for monotonicity.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from analyzer.engine import simulate
from analyzer.engine.prepare import prepare
from analyzer.scenarios import ShockScenario
from tests.conftest import requires_anvil

pytestmark = requires_anvil

SHOCKS = [-0.05 * k for k in range(1, 11)]


@pytest.fixture(scope="module")
def prepared(devnet):
    from analyzer.scan import scan
    from protocols import plugins

    present = [p for name, p in plugins().items() if name in devnet.book.get("protocols", {})]
    snapshot = scan(devnet.url, present, book=devnet.book, cache_dir=None)
    if os.environ.get("CONTAGION_ENGINE_SNAPSHOT_OUT"):     # keep the scan for ad-hoc runs
        snapshot.write(os.environ["CONTAGION_ENGINE_SNAPSHOT_OUT"])
    # assets without a pool on the devnet trade on a square-root-law venue (Tóth et al. 2011)
    # (not the numeraires the pools quote in, nor receipt tokens, which are redeemed, not sold)
    skip = set(snapshot.venues["quote_asset"]) | set(snapshot.assets["address"][snapshot.assets["receipt_of"] != ""])
    fallback = {a: {"model": "sqrt_law", "sigma": 0.05, "daily_volume": 2e6 / max(price, 1e-9)}
                for a, price in zip(snapshot.assets["address"], snapshot.assets["price_usd"], strict=True)
                if a not in skip}
    return snapshot, prepare(snapshot, venue_models=fallback)


@pytest.fixture(scope="module")
def sweep(prepared):
    _, prep = prepared
    cex = {str(symbol): "exogenous" for symbol in prep.symbols}
    return [simulate(prep, ShockScenario(price_shocks={"WETH": shock}, oracle_sources=cex, max_rounds=60))
            for shock in SHOCKS]


@pytest.fixture(scope="module")
def feedback(prepared):
    _, prep = prepared
    return simulate(prep, ShockScenario(price_shocks={"WETH": -0.20}, max_rounds=60))


def test_deeper_weth_shocks_put_no_less_debt_in_distress(sweep):
    # keepers on a thin pool liquidate less of a deeper crash and leave the rest liquidatable or as
    # bad debt, so the debt liquidated plus the debt left in distress is what grows with the shock
    distressed = [r.total_liquidated_usd + r.unliquidated_usd.sum() + sum(r.bad_debt_usd.values()) for r in sweep]
    print("left liquidatable USD by shock:", [round(r.unliquidated_usd.sum()) for r in sweep])
    print("liquidated USD by shock:", [round(r.total_liquidated_usd) for r in sweep])
    print("bad debt USD by shock:", [round(sum(r.bad_debt_usd.values())) for r in sweep])
    assert distressed[-1] > 0
    assert all(b >= a * (1 - 1e-9) for a, b in zip(distressed, distressed[1:], strict=False)), distressed


def test_liquidations_amplify_the_weth_move(sweep):
    for result in sweep:
        weth_sold = sum(r.flows[list(result.symbols).index("WETH")].sum() for r in result.rounds)
        if weth_sold > 0:
            assert result.amplification()["WETH"] > 1.0


def test_contagion_matrix_adds_up_and_crosses_protocols(feedback, prepared):
    _, prep = prepared
    matrix = feedback.contagion_matrix
    for protocol, value in feedback.liquidated_usd.items():
        assert matrix[protocol].sum() == pytest.approx(value, rel=1e-9, abs=1e-6)
    liquidated = [p for p, v in feedback.liquidated_usd.items() if v > 0]
    lending = {s.protocol for s in prep.slots}
    if len(lending & set(liquidated)) >= 2:
        cross = [matrix.loc[f"liquidation:{a}", b] for a in liquidated for b in liquidated
                 if a != b and f"liquidation:{a}" in matrix.index]
        assert max(cross) > 0, matrix
    if "lyra-v1" in liquidated:
        assert matrix["lyra-v1"].drop("initial").sum() > 0     # spot moves liquidated Lyra shorts
    if len(prep.options.hedger_asset):
        assert matrix.loc["hedging"].sum() > 0                 # hedging flows moved prices that mattered
    assert np.isfinite(feedback.price_final).all()
