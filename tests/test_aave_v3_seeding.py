"""The seeding plan drawn from the scenario (no chain): shape of the population, clear errors."""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.devnet import scenario as scenario_mod
from analyzer.errors import ContagionError
from protocols.aave_v3 import params as P
from protocols.aave_v3.seeding import explicit_accounts, population


def planned_health_factor(pos, scenario) -> float:
    """Independent of the plan's own arithmetic: value the plan's tokens at scenario prices."""
    price = {s: a.price_usd for s, a in scenario.assets.items()}
    lt = {s: (P.EMODE_CATEGORIES[1].liquidation_threshold if pos.e_mode and P.RESERVES[s].emode_category == 1
              else P.RESERVES[s].liquidation_threshold) / 1e4 for s in pos.supply}
    collateral = sum(amount * price[s] * lt[s] for s, amount in pos.supply.items())
    return collateral / sum(amount * price[s] for s, amount in pos.borrow.items())


def test_population_spans_the_scenario_and_is_reproducible():
    spec = scenario_mod.load("mainnet-like")
    plan = population(spec)
    assert len(plan) == 300 and plan == population(spec)
    hfs = [planned_health_factor(p, spec) for p in plan]
    assert 1.01 <= min(hfs) < 1.05 and 4.0 < max(hfs) <= 5.0
    assert sum(h < 1.5 for h in hfs) > sum(h > 3.5 for h in hfs)  # denser near 1, as on mainnet
    emode = [p for p in plan if p.e_mode == 1]
    assert len(emode) >= 20 and all(set(p.borrow) == {"WETH"} for p in emode)
    assert sum("CRV" in p.supply for p in plan) >= 5
    stable = {"USDC", "USDT", "DAI"}
    assert sum(set(p.borrow) <= stable for p in plan if not p.e_mode) == len(plan) - len(emode)
    assert {p.label for p in explicit_accounts(spec)} == {"whale-1", "whale-2", "dust-1"}


def test_unknown_asset_in_the_population_is_named():
    spec = scenario_mod.load("mainnet-like")
    tables = dict(spec.protocols)
    tables["aave-v3"] = {**tables["aave-v3"], "population": {**tables["aave-v3"]["population"],
                                                             "collateral": {"WETHH": 1.0}}}
    broken = dataclasses.replace(spec, protocols=tables)
    with pytest.raises(ContagionError, match='WETHH'):
        population(broken)


def test_devnet_cache_key_follows_params_and_seeding(tmp_path, monkeypatch):
    """Changing params.py or seeding.py (not only devnet.py) must rebuild the cached devnet."""
    import protocols.aave_v3 as aave
    from analyzer import paths
    from analyzer.devnet import build
    from analyzer.devnet.scenario import load

    spec = load("mainnet-like")
    before = build.cache_key(spec, [aave.PLUGIN])
    source = paths.inspect.getsource
    for changed in ("protocols.aave_v3.params", "protocols.aave_v3.seeding"):
        monkeypatch.setattr(paths.inspect, "getsource", lambda module, changed=changed: source(module) + (
            "\n# changed\n" if module.__name__ == changed else ""))
        assert build.cache_key(spec, [aave.PLUGIN]) != before
    monkeypatch.setattr(paths.inspect, "getsource", source)
    assert build.cache_key(spec, [aave.PLUGIN]) == before
