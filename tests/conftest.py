"""Shared fixtures: anvil processes and the cached mainnet-like devnet.

The devnet with every registered protocol is built once per cache key (see
analyzer/devnet/build.py) and loaded from its state file afterwards. Tests that change chain
state run inside ``chain_checkpoint`` (evm_snapshot / evm_revert) so they leave it as found.
``CONTAGION_TEST_PROTOCOLS=aave-v3,uniswap-v3`` restricts the devnet while a plugin is developed.
"""

from __future__ import annotations

import os

import pytest

from analyzer.chain import Anvil, find_anvil
from analyzer.errors import ContagionError


def anvil_available() -> bool:
    try:
        find_anvil()
        return True
    except ContagionError:
        return False


requires_anvil = pytest.mark.skipif(not anvil_available(), reason="anvil not installed: run `make setup`")


@pytest.fixture
def anvil():
    """A fresh empty anvil devnet, stopped after the test."""
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def devnet():
    """The mainnet-like devnet with every registered protocol deployed and seeded (session-wide)."""
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from protocols import parse_protocols

    spec = scenario_mod.load("mainnet-like")
    plugins = parse_protocols(os.environ.get("CONTAGION_TEST_PROTOCOLS"))
    running = start_devnet(spec, plugins)
    try:
        yield running
    finally:
        running.anvil.stop()


@pytest.fixture
def chain_checkpoint(devnet):
    """Run a state-changing test on the session devnet and revert the chain afterwards."""
    snapshot_id = devnet.anvil.snapshot()
    try:
        yield devnet
    finally:
        devnet.anvil.revert(snapshot_id)


@pytest.fixture
def frozen_block_time(chain_checkpoint):
    """Blocks mined during the test keep the last block's time instead of following the wall clock
    (anvil's timestamp interval 0), so a loaded machine's pauses accrue no interest and move no
    option's expiry between a test's reads and transactions."""
    w3 = chain_checkpoint.w3
    w3.provider.make_request("anvil_setBlockTimestampInterval", [0])
    try:
        yield chain_checkpoint
    finally:
        w3.provider.make_request("anvil_removeBlockTimestampInterval", [])


def pytest_collection_modifyitems(config, items):
    """Files holding a test marked slow run first (the order within a file is kept). ``make test``
    hands whole files to its workers in collection order (``--dist loadfile
    --no-loadscope-reorder``), so the long files start at once instead of last, where one of them
    would keep a worker busy long after the other ran out of work."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
