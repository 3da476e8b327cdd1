"""The Aave V3 devnets the tests check both releases on: v3.6 is the session devnet of conftest
(the scenario's default); v3.0 is an Aave-only devnet of the same scenario with
``version = "3.0"``, cached like every devnet (built once per cache key)."""

from __future__ import annotations

import pytest

VERSIONS = ("3.6", "3.0")


def v30_scenario(tmp_dir):
    from analyzer.devnet import scenario as scenario_mod

    text = scenario_mod.resolve("mainnet-like").read_text()
    assert '\nversion = "3.6"\n' in text
    path = tmp_dir / "mainnet-like.toml"  # same name: the cache key depends on the text only
    path.write_text(text.replace('\nversion = "3.6"\n', '\nversion = "3.0"\n'))
    return scenario_mod.load(path)


@pytest.fixture(scope="session")
def devnet_v30(tmp_path_factory):
    from analyzer.devnet.build import start_devnet
    from protocols import parse_protocols

    running = start_devnet(v30_scenario(tmp_path_factory.mktemp("aave-v30")), parse_protocols("aave-v3"))
    try:
        yield running
    finally:
        running.anvil.stop()


@pytest.fixture(params=VERSIONS)
def aave_devnet(request):
    """The session devnet of each version (state-changing tests revert with ``checkpoint``)."""
    return request.getfixturevalue("devnet" if request.param == "3.6" else "devnet_v30")


@pytest.fixture
def aave_checkpoint(aave_devnet):
    snapshot_id = aave_devnet.anvil.snapshot()
    try:
        yield aave_devnet
    finally:
        aave_devnet.anvil.revert(snapshot_id)
