"""Shock scenarios: CLI shocks, TOML files, and errors that name the file and the field."""

from __future__ import annotations

import pytest

from analyzer.errors import ContagionError
from analyzer.scenarios import (
    ForcedSale,
    ShockScenario,
    load_scenario,
    parse_iv_shock,
    parse_price_shock,
    scenario_from_cli,
)


def test_price_shock_accepts_percent_and_fraction():
    assert parse_price_shock("WETH=-30%") == ("WETH", pytest.approx(-0.30))
    assert parse_price_shock("WETH=-0.3") == ("WETH", pytest.approx(-0.30))
    assert parse_price_shock(" CRV = +12.5% ") == ("CRV", pytest.approx(0.125))


@pytest.mark.parametrize("text", ["WETH", "WETH=-30%%", "=-3%", "WETH=abc", "WETH=-100%", "WETH=-150%"])
def test_bad_price_shock_names_the_argument(text):
    with pytest.raises(ContagionError, match="--shock"):
        parse_price_shock(text)


def test_iv_shock_is_in_vol_points():
    assert parse_iv_shock("ETH=+25") == ("ETH", pytest.approx(0.25))
    assert parse_iv_shock("ETH=-10%") == ("ETH", pytest.approx(-0.10))
    with pytest.raises(ContagionError, match="--iv"):
        parse_iv_shock("ETH+25")


def test_toml_scenario_round_trips(tmp_path):
    path = tmp_path / "crash.toml"
    path.write_text('''
max_rounds = 12
oracle_lag = 1
sell_through = 0.8
keeper_gas_usd = 25
price_impact = true
[price]
WETH = "-30%"
[venue_price]
CRV = -0.5
[iv]
ETH = 0.25
[oracle]
CRV = "exogenous"
[[forced_sale]]
account = "0xabc"
protocol = "aave-v3"
''')
    scenario = load_scenario(path)
    assert scenario.name == "crash"
    assert scenario.price_shocks == {"WETH": pytest.approx(-0.3)}
    assert scenario.venue_shocks == {"CRV": pytest.approx(-0.5)}
    assert scenario.iv_shocks == {"ETH": pytest.approx(0.25)}
    assert scenario.oracle_sources == {"CRV": "exogenous"}
    assert scenario.forced_sales == [ForcedSale("0xabc", "aave-v3")]
    assert (scenario.max_rounds, scenario.oracle_lag, scenario.sell_through, scenario.keeper_gas_usd) == (12, 1, 0.8, 25.0)
    assert scenario.to_dict()["forced_sales"] == [{"account": "0xabc", "protocol": "aave-v3"}]


@pytest.mark.parametrize("body, field", [
    ('max_rounds = "ten"', "max_rounds"),
    ("sell_through = 1.5", "sell_through"),
    ('[oracle]\nWETH = "chainlink"', "oracle.WETH"),
    ('[price]\nWETH = "down a lot"', "price.WETH"),
    ("colour = 3", "colour"),
    ("[price]\nWETH = -1.2", "price_shocks.WETH"),
])
def test_toml_errors_name_file_and_field(tmp_path, body, field):
    path = tmp_path / "bad.toml"
    path.write_text(body + "\n")
    with pytest.raises(ContagionError) as err:
        load_scenario(path)
    assert "bad.toml" in str(err.value) and field in str(err.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ContagionError, match="not found"):
        load_scenario(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[price\n")
    with pytest.raises(ContagionError, match="broken.toml: not valid TOML"):
        load_scenario(tmp_path / "broken.toml")


def test_cli_overlays_file(tmp_path):
    path = tmp_path / "base.toml"
    path.write_text('[price]\nWBTC = "-10%"\n')
    scenario = scenario_from_cli(["WETH=-30%"], ["ETH=+25"], path)
    assert scenario.price_shocks == {"WBTC": pytest.approx(-0.1), "WETH": pytest.approx(-0.3)}
    assert scenario.iv_shocks == {"ETH": pytest.approx(0.25)}
    assert ShockScenario().price_shocks == {}


def test_venue_models_for_assets_without_a_pool(tmp_path):
    path = tmp_path / "venues.toml"
    path.write_text('[venues.sUSD]\nmodel = "sqrt_law"\nsigma = 0.01\ndaily_volume = 5e6\n')
    assert load_scenario(path).venue_models == {"sUSD": {"model": "sqrt_law", "sigma": 0.01, "daily_volume": 5e6}}
    path.write_text('[venues.sUSD]\nsigma = 0.01\n')
    with pytest.raises(ContagionError, match="venues.toml: .venues.ASSET. tables need a model"):
        load_scenario(path)
