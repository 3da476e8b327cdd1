"""``recommend --prove`` on the devnet: threshold and collateral-factor cuts on WETH made through
Aave's PoolConfigurator and Compound's Comptroller on a fork, the accounts they make liquidatable
checked against the protocols' own views (``Pool.getUserAccountData`` health factor,
``Comptroller.getAccountLiquidity`` shortfall), and the stress scenarios replayed settled then
shocked against the engine's prediction."""

from __future__ import annotations

import pytest

from analyzer.cheats import read
from analyzer.demo import default_scenarios
from analyzer.fidelity import BAD_DEBT_FLOOR_USD, BAD_DEBT_TOLERANCE
from analyzer.recommend.evaluate import liquidatable, liquidatable_now, outcome, tunings
from analyzer.recommend.prove import chain_copy, configure, prove
from protocols.base import ParameterChange
from tests.conftest import requires_anvil

pytestmark = [requires_anvil, pytest.mark.slow]
CUT = 0.05          # five points off WETH's threshold (Aave) and collateral factor (Compound)


@pytest.fixture(scope="module")
def case(devnet):
    from analyzer.scan import scan
    from protocols import plugins

    chosen = list(plugins().values())
    snapshot = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    symbols = snapshot.symbol_of()
    changes = [ParameterChange(protocol, p.market, p.asset, p.parameter, round(p.value - CUT, 4))
               for protocol, tuning in tunings(snapshot).items() for p in tuning.parameters(snapshot)
               if symbols[p.asset] in ("WETH", "ETH") and p.parameter in ("liquidation_threshold", "collateral_factor")]
    assert {c.protocol for c in changes} == {"aave-v3", "compound-v2"}
    scenarios = [s for s in default_scenarios(snapshot) if s.name == "weth-20"]
    predicted = outcome(snapshot, scenarios, changes)
    # a budget the engine says is met with the fidelity criteria's bad-debt tolerance to spare
    budget = max(predicted.bad_debt_usd.values()) * (1 + BAD_DEBT_TOLERANCE) + BAD_DEBT_FLOOR_USD
    doc = {"changes": [vars(c) for c in changes], "budget_usd": budget,
           "bad_debt_after_usd": predicted.bad_debt_usd, "liquidatable_now": liquidatable_now(snapshot, changes)}
    return snapshot, chosen, changes, scenarios, doc


def test_the_accounts_made_liquidatable_are_those_the_protocols_report_after_the_change(devnet, case):
    snapshot, chosen, changes, _, doc = case
    accounts = doc["liquidatable_now"]["accounts"]
    assert accounts, "a five-point cut makes someone liquidatable on the devnet"
    with chain_copy(devnet.url) as fork:
        def unhealthy(protocol: str, market: str, account: str) -> bool:
            if protocol == "aave-v3":
                return read(fork.w3, market, "getUserAccountData(address)(uint256,uint256,uint256,uint256,uint256,uint256)",
                            account)[5] < 10**18
            return read(fork.w3, market, "getAccountLiquidity(address)(uint256,uint256,uint256)", account)[2] > 0

        assert not any(unhealthy(*a) for a in accounts)
        configure(fork.w3, devnet.book, chosen, changes)
        assert all(unhealthy(*a) for a in accounts)
        # and no other borrower is, but those already liquidatable today
        borrowers = snapshot.positions[(snapshot.positions["side"] == "debt")
                                       & snapshot.positions["protocol"].isin(["aave-v3", "compound-v2"])]
        others = {(p, m, a) for p, m, a in zip(borrowers["protocol"], borrowers["market"], borrowers["account"],
                                               strict=True)} - {tuple(a) for a in accounts}
        assert {o for o in others if unhealthy(*o)} <= set(liquidatable(snapshot))


def test_prove_replays_the_scenarios_settled_then_shocked_within_the_prediction(devnet, case):
    _, chosen, _, scenarios, doc = case
    proof = prove(devnet.url, devnet.book, doc, scenarios, chosen)
    assert proof["liquidatable_now_ok"]
    assert proof["liquidatable_now_fork"]["debt_usd"] == pytest.approx(doc["liquidatable_now"]["debt_usd"], rel=1e-6)
    for row in proof["scenarios"]:
        assert row["replayed"] and row["settle_liquidations"] >= len(doc["liquidatable_now"]["accounts"])
        assert row["prediction_ok"], row
        assert row["within_budget"], row
