"""The engine on a real scan of the mainnet-like devnet (every registered plugin's real rule).

Expectations are monotonicity and accounting identities that hold whatever the book holds. With
oracles that follow the exogenous (CEX) path, as Chainlink feeds do, a deeper WETH shock puts no
less debt in distress, the protocols' rules alone (keepers trading at the oracle price) liquidate no
less, and the keepers' sales push the pool price beyond the shock.

The value keepers actually liquidate is not monotone, and need not be: the devnet's WETH/USDC
pool holds ~6.5k WETH within its range against ~110k WETH of collateral, and the deeper the shock
the thinner the pool at the shocked price (WETH that moves it 5% down: ~17k at -5%, ~2.3k at -30%,
~0.9k at -40%, ~0.35k at -45%). The first keepers' sales push the pool below the oracle (CEX)
price, nothing arbitrages it back between rounds, and beyond about -30% the liquidation bonus no
longer pays for selling the seized WETH there: keepers decline liquidations the rules allow and
leave that debt liquidatable (or as bad debt). So wherever a deeper shock liquidates less, it
leaves debt that keepers declined. With oracles that read the devnet's pools, sales feed back into
oracles and liquidations cross protocols; that run is checked for its accounting, not for
monotonicity.
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
    # assets without a pool on the devnet trade on the scan's centralised-depth default
    return snapshot, prepare(snapshot)


@pytest.fixture(scope="module")
def sweep(prepared):
    _, prep = prepared
    cex = {str(symbol): "exogenous" for symbol in prep.symbols}
    return [simulate(prep, ShockScenario(price_shocks={"WETH": shock}, oracle_sources=cex, max_rounds=60))
            for shock in SHOCKS]


@pytest.fixture(scope="module")
def rules_only_sweep(prepared):
    """The same shocks without price impact: keepers sell at the oracle price, so every liquidation
    a protocol's rule allows pays, and what is liquidated is the rules' own answer."""
    _, prep = prepared
    cex = {str(symbol): "exogenous" for symbol in prep.symbols}
    return [simulate(prep, ShockScenario(price_shocks={"WETH": shock}, oracle_sources=cex, max_rounds=60,
                                         price_impact=False)) for shock in SHOCKS]


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


def test_the_rules_alone_liquidate_no_less_of_a_deeper_shock(rules_only_sweep):
    # collateral taken, at the prices before the shock: the debt repaid in USD may fall at the
    # deepest shocks once a WETH-base market's debt (cWETHv3) is worth less and collateral runs out
    seized = [float(sum((r.seized_tokens @ run.price_before).sum() for r in run.rounds)) for run in rules_only_sweep]
    print("collateral seized without price impact by shock:", [round(v) for v in seized])
    assert seized[0] > 0
    assert all(b >= a * (1 - 1e-9) for a, b in zip(seized, seized[1:], strict=False)), seized


def test_a_deeper_shock_liquidates_less_only_where_keepers_decline(sweep):
    # the fall of the liquidated value beyond about -30% is the keepers' economics on a thin pool
    # (module docstring): the deeper shock leaves debt the rules allow to liquidate and no keeper took
    for shallow, deep in zip(sweep, sweep[1:], strict=False):
        if deep.total_liquidated_usd < shallow.total_liquidated_usd * (1 - 1e-9):
            assert deep.unliquidated_usd.sum() > 0, (shallow.total_liquidated_usd, deep.total_liquidated_usd)


def test_liquidations_amplify_the_weth_move(sweep):
    assert all(result.total_liquidated_usd > 0 for result in sweep)
    for result in sweep:
        assert result.amplification()["WETH"] > 1.0, (result.scenario["price_shocks"], result.amplification())


def test_contagion_matrix_adds_up_and_crosses_protocols(feedback, prepared):
    _, prep = prepared
    matrix = feedback.contagion_matrix
    for protocol, value in feedback.liquidated_usd.items():
        assert matrix[protocol].sum() == pytest.approx(value, rel=1e-9, abs=1e-6)
    liquidated = [p for p, v in feedback.liquidated_usd.items() if v > 0]
    lending = {s.protocol for s in prep.slots}
    if len(lending) >= 2:       # the whole devnet (CONTAGION_TEST_PROTOCOLS may restrict it to one)
        assert len(lending & set(liquidated)) >= 2, feedback.liquidated_usd
        cross = [matrix.loc[f"liquidation:{a}", b] for a in liquidated for b in liquidated
                 if a != b and f"liquidation:{a}" in matrix.index]
        assert max(cross) > 0, matrix
    if "lyra-v1" in liquidated:
        assert matrix["lyra-v1"].drop("initial").sum() > 0     # spot moves liquidated Lyra shorts
    if len(prep.options.hedger_asset):
        hedging = [s for s in matrix.index if s.startswith("hedging:")]   # one source per hedging protocol
        assert matrix.loc[hedging].to_numpy().sum() > 0         # hedging flows moved prices that mattered
    assert np.isfinite(feedback.price_final).all()


@pytest.fixture(scope="module")
def feedback_sweep(prepared):
    """WETH -5% … -50% with every oracle reading the devnet's pools (the default)."""
    _, prep = prepared
    return [simulate(prep, ShockScenario(price_shocks={"WETH": shock}, max_rounds=60)) for shock in SHOCKS]


def test_with_oracles_on_the_pools_deeper_shocks_liquidate_no_less_collateral(feedback_sweep, prepared):
    """The collateral taken from borrowers, counted at the prices before the shock, grows with the
    shock. The debt repaid for it (the liquidated value, USD at the oracle price of its round) grows
    too until the cascade spirals through the pools' depth; beyond that a deeper first move has the
    same collateral seized at lower prices, so each liquidation repays less and more debt is left
    bad: wherever the liquidated value falls, bad debt is higher.

    The final WETH price need not be lower there: it follows the WETH keepers sell into the pools,
    and Comet's absorbed collateral is sold only while buying it at the store-front price
    (``quoteCollateral``: the oracle less storeFrontPriceFactor × (1 - liquidationFactor), 3% for
    WETH in the USDC Comet) and selling into the pool pays. At -25% the largest Comet borrower is
    absorbed in a round of its own, with the pool at the oracle price, and its 6,000 WETH are bought
    and sold (the pool falls 2,138 → 1,999); at -30% it is absorbed in the first round, after Aave's
    keepers have taken the pool below the store-front price, and its WETH stays in Comet's reserves:
    ~4,650 WETH sold instead of ~13,450, a final price 1,974 against 1,972. So where the deeper shock
    ends at a price no lower, keepers sold less WETH into the pools."""
    _, prep = prepared
    seized_at_pre_shock = [sum(float(record.seized_tokens.sum(0) @ prep.price_pre) for record in result.rounds)
                           for result in feedback_sweep]
    print("collateral seized at pre-shock prices by shock:", [round(v) for v in seized_at_pre_shock])
    print("liquidated USD by shock:", [round(r.total_liquidated_usd) for r in feedback_sweep])
    assert seized_at_pre_shock[0] > 0
    assert all(b >= a * (1 - 1e-9) for a, b in zip(seized_at_pre_shock, seized_at_pre_shock[1:], strict=False))
    weth = prep.asset("WETH", "test")
    weth_sold = [sum(float(record.flows[weth].sum()) for record in result.rounds) for result in feedback_sweep]
    print("WETH sold into the pools by shock:", [round(v) for v in weth_sold])
    pairs = list(zip(feedback_sweep, weth_sold, strict=True))
    for (shallow, shallow_sold), (deep, deep_sold) in zip(pairs, pairs[1:], strict=False):
        if deep.total_liquidated_usd < shallow.total_liquidated_usd * (1 - 1e-9):
            assert sum(deep.bad_debt_usd.values()) > sum(shallow.bad_debt_usd.values())
            assert deep.price_final[weth] < shallow.price_final[weth] or deep_sold < shallow_sold
