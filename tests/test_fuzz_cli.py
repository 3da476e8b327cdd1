"""Property: whatever the input, every command accepts it or refuses it with one ``error:`` line and
exit status 2, writing nothing; never a traceback (tests/fuzzcases.py generates the inputs).

Hypothesis draws the kind of input (URL, flags, scenario or sweep TOML, corrupted snapshot, book,
account list, output path) and the seed of its generator. About a minute here; at scale (≥ 5,000
cases, with hang and memory limits) ``python -m benchmarks.fuzz``.
"""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.cli import main
from tests.fuzzcases import KINDS, check, make_case
from tests.rpcserver import FakeNode

NODE = {"eth_chainId": "0x7a69", "eth_blockNumber": "0x10", "web3_clientVersion": "Geth/v1.13",
        "eth_getBlockByNumber": {"number": "0x10", "timestamp": "0x5f5e100", "stateRoot": "0x" + "0" * 64}}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    from benchmarks.synthetic import synthetic_snapshot

    return synthetic_snapshot(n_positions=300, n_markets=2, n_assets=5, seed=3).write(
        tmp_path_factory.mktemp("fuzz") / "snapshot")


@pytest.fixture(scope="module")
def node():
    with FakeNode(NODE) as running:
        yield running


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), seed=st.integers(min_value=0, max_value=2 ** 32 - 1))
def test_every_generated_input_is_accepted_or_refused_cleanly(tmp_path_factory, snapshot, node, kind, seed):
    folder = tmp_path_factory.mktemp("case")
    case = make_case(random.Random(seed), folder, snapshot, node.url, kind)
    before = set(folder.rglob("*"))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(case.args)
    problem = check(case, status, stderr.getvalue(), folder, before)
    assert problem is None, (case.args, problem)
