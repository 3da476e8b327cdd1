"""``recommend --prove`` on the devnet: threshold and collateral-factor cuts on WETH made through
Aave's PoolConfigurator and Compound's Comptroller on a fork, the accounts they make liquidatable
checked against the protocols' own views (``Pool.getUserAccountData`` health factor,
``Comptroller.getAccountLiquidity`` shortfall); then ``recommend``'s own output (a narrowed search:
WETH's markets, the -20% scenario) checked step by step by re-simulation, and proven on a fork:
configured, scanned afresh, replayed settled then shocked against the budget and the prediction."""

from __future__ import annotations

import pytest

from analyzer.cheats import read
from analyzer.demo import default_scenarios
from analyzer.fidelity import BAD_DEBT_FLOOR_USD, BAD_DEBT_TOLERANCE
from analyzer.recommend.evaluate import liquidatable, liquidatable_now, outcome, tunings
from analyzer.recommend.prove import chain_copy, configure
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
    return snapshot, chosen, changes, scenarios, {"liquidatable_now": liquidatable_now(snapshot, changes)}


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


@pytest.fixture(scope="module")
def searched(devnet, case):
    """``recommend``'s own output on the devnet, narrowed so the search is quick: WETH's markets,
    the -20% WETH scenario, a budget of half its bad debt today."""
    from analyzer.recommend import recommend

    snapshot, chosen, _, scenarios, _ = case
    today = outcome(snapshot, scenarios, [])
    budget = 0.5 * max(today.bad_debt_usd.values())
    doc = recommend(snapshot, scenarios, budget, markets=["WETH"], with_distance=False)
    assert doc["feasible"] and doc["changes"], doc["bad_debt_after_usd"]
    return doc


def test_every_step_the_search_recommends_is_needed(case, searched):
    """Re-simulated here (each protocol's tuning, the engine settled then shocked), not through the
    search's evaluator: with every change each scenario is within the budget; with any one
    parameter moved one step back towards today's value, some scenario is over it."""
    from analyzer.engine.settle import settle_then_shock
    from analyzer.recommend.evaluate import tuned

    snapshot, _, _, scenarios, _ = case
    changes = [ParameterChange(**c) for c in searched["changes"]]

    def worst(with_changes: list[ParameterChange]) -> float:
        book = tuned(snapshot, with_changes)
        return max(settle_then_shock(book, s).total_bad_debt_usd for s in scenarios)

    assert worst(changes) <= searched["budget_usd"]
    for rec in searched["recommendations"]:
        back = rec["new_value"] + (rec["step"] if rec["old_value"] > rec["new_value"] else -rec["step"])
        undone = [ParameterChange(c.protocol, c.market, c.asset, c.parameter, round(back, 6))
                  if (c.protocol, c.market, c.asset, c.parameter) ==
                  (rec["protocol"], rec["market"], rec["asset"], rec["parameter"]) else c for c in changes]
        assert worst(undone) > searched["budget_usd"], rec


def test_prove_on_the_search_output_keeps_every_replayed_scenario_within_the_budget(devnet, case, searched,
                                                                                   tmp_path, capsys):
    """The recommendations, as the search wrote them (``recommend --prove --from``), made through the
    protocols' own configuration calls on a fork: a fresh scan of the fork finds the accounts (and
    debt) the trade-off figures report, per recommendation alone and all together; each scenario
    replayed there, settled then shocked, ends within the budget to the engine's fidelity criteria,
    and within those criteria of the prediction."""
    import json

    from analyzer.cli import main
    from analyzer.devnet.build import write_address_book

    snapshot, _, _, scenarios, _ = case
    snapshot.write(tmp_path / "snapshot")
    (tmp_path / "recommendations.json").write_text(json.dumps(searched))
    write_address_book(devnet.book, tmp_path / "book.json")
    code = main(["recommend", str(tmp_path / "snapshot"), "--from", str(tmp_path / "recommendations.json"), "--prove",
                 "--rpc", devnet.url, "--book", str(tmp_path / "book.json"), "--out", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    proof = json.loads((tmp_path / "out" / "proof.json").read_text())
    assert [row["scenario"] for row in proof["scenarios"]] == [s.name for s in scenarios]
    assert searched["liquidatable_now"]["accounts"] and proof["liquidatable_now_ok"], proof["liquidatable_now_fork"]
    assert proof["liquidatable_now_fork"]["debt_usd"] == pytest.approx(searched["liquidatable_now"]["debt_usd"], rel=1e-6)
    assert proof["parameters_on_fork_ok"] and len(proof["parameters_on_fork"]) >= len(searched["changes"])
    alone = proof["recommendations_alone"]
    assert len(alone) == len(searched["recommendations"]) and all(a["ok"] for a in alone), alone
    for row in proof["scenarios"]:
        assert row["replayed"] and row["settle_liquidations"] >= len(searched["liquidatable_now"]["accounts"]), row
        assert row["prediction_ok"], row
        assert row["replayed_bad_debt_usd"] <= searched["budget_usd"] * (1 + BAD_DEBT_TOLERANCE) + BAD_DEBT_FLOOR_USD, row
        assert row["within_budget_to_model_error"], row
