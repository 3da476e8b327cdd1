"""``recommend --prove --from recommendations.json``: a previous search's changes proven without
searching again. Its scenarios come back from the document exactly as they were searched (each
field of the dataclass); a document that is not a search's, met no budget, or was searched on
another snapshot is one line of error, as are settings the document already fixes."""

from __future__ import annotations

import json

import pytest

from analyzer.errors import ContagionError
from analyzer.recommend.prove import read_recommendations
from analyzer.scenarios import ForcedSale, ShockScenario
from tests.test_recommend import SCENARIOS, book


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search's output on the closed-form book, written as the command writes it."""
    from analyzer.recommend.run import recommend_to_dir

    folder = tmp_path_factory.mktemp("from")
    snapshot = book()
    snapshot.meta.update(chain_id=31337, block_number=1234)
    snapshot.write(folder / "snapshot")
    (folder / "stress.toml").write_text("".join(
        f'[[scenario]]\nname = "{s.name}"\nprice = {{ WETH = {s.price_shocks["WETH"]} }}\n' for s in SCENARIOS))
    path = recommend_to_dir(folder / "snapshot", str(folder / "stress.toml"), 5_000.0, folder / "out")
    return folder, json.loads(path.read_text())


def test_a_recorded_scenario_reads_back_as_the_scenario_recorded():
    scenario = ShockScenario(name="odd", price_shocks={"WETH": -0.25}, iv_shocks={"ETH": 0.3},
                             forced_sales=[ForcedSale("0xabc", "aave-v3")], oracle_lag=2, round_seconds=12.0,
                             round_clock={"compound-v2": [(12.0, 1.0), (24.0, 2.0)]}, seed=7)
    again = ShockScenario.from_dict(json.loads(json.dumps(scenario.to_dict())))
    assert again == scenario and again is not scenario
    with pytest.raises(ContagionError, match="unexpected 'price'"):
        ShockScenario.from_dict({"name": "x", "price": {"WETH": -0.2}})
    with pytest.raises(ContagionError, match="price_shocks"):
        ShockScenario.from_dict({"name": "x", "price_shocks": {"WETH": -2.0}})


def test_the_document_gives_back_its_scenarios_and_must_be_this_snapshots(searched):
    folder, doc = searched
    assert doc["feasible"] and doc["changes"]
    snapshot = book()
    snapshot.meta.update(chain_id=31337, block_number=1234)
    again, scenarios = read_recommendations(folder / "out" / "recommendations.json", snapshot)
    assert again == doc and scenarios == SCENARIOS
    snapshot.meta["block_number"] = 1235
    with pytest.raises(ContagionError, match="block_number 1234"):
        read_recommendations(folder / "out" / "recommendations.json", snapshot)
    (folder / "junk.json").write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(ContagionError, match="not a recommendations document"):
        read_recommendations(folder / "junk.json", snapshot)
    (folder / "none.json").write_text(json.dumps({**doc, "feasible": False, "changes": []}))
    snapshot.meta["block_number"] = 1234
    with pytest.raises(ContagionError, match="no changes to prove"):
        read_recommendations(folder / "none.json", snapshot)


@pytest.mark.parametrize(("extra", "message"), [
    ((), "error: --from proves a previous search's changes: give --prove too"),
    (("--prove", "--rpc", "http://127.0.0.1:1", "--book", "b.json", "--budget", "1"), "error: --from takes the "
     "previous search's settings; drop --budget"),
])
def test_the_command_refuses_from_with_settings_it_fixes(searched, capsys, extra, message):
    from analyzer.cli import main

    folder, _ = searched
    code = main(["recommend", str(folder / "snapshot"), "--from", str(folder / "out" / "recommendations.json"),
                 "--out", str(folder / "again"), *extra])
    assert code == 2
    assert capsys.readouterr().err.strip() == message
    assert main(["recommend", str(folder / "snapshot"), "--out", str(folder / "again")]) == 2
    assert "needs --scenarios SPEC and --budget USD" in capsys.readouterr().err
