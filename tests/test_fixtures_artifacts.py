"""Our compiled fixtures are not stale: sources, compiler and settings give the committed bytecode."""

from __future__ import annotations

import pytest

from analyzer.devnet import solc

GROUPS = solc.groups()


@pytest.mark.parametrize("group", GROUPS)
def test_committed_artifacts_match_their_sources(group):
    committed = solc.load_group(group)
    sources = solc.group_sources(group)
    assert committed["sources_sha256"] == solc.sources_hash(sources, solc.group_settings(group)), (
        f"fixtures/artifacts/{group}.json is stale: run `python -m analyzer.devnet.solc {group}`")
    assert committed["solc"] == solc.solc_version(solc.group_compiler(group))


@pytest.mark.parametrize("group", [g for g in GROUPS if g in ("multicall", "oracles", "chainlink", "tokens")])
def test_recompiling_gives_the_committed_bytecode(group):
    fresh = solc.compile_sources(solc.group_sources(group), solc.group_settings(group), solc.group_compiler(group))
    committed = solc.load_group(group)["contracts"]
    assert {n: c["deployedBytecode"] for n, c in fresh.items()} == {n: c["deployedBytecode"] for n, c in committed.items()}
