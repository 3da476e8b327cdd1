"""The committed Aave 3.6 artifacts are compiled from the installed ``@aave-dao/aave-v3-origin``
sources, with the pinned solc and our settings (no compile here: the hash of every source of the
import closure is compared)."""

from __future__ import annotations

from analyzer.devnet.solc import solc_version
from protocols.aave_v3 import origin


def test_committed_v36_artifacts_are_not_stale():
    committed = origin.committed()
    assert committed["sources_sha256"] == origin.sources_hash(origin.sources()), (
        "fixtures/artifacts/aave_v3_origin.json is stale: run `python -m protocols.aave_v3.origin`")
    assert committed["solc"] == solc_version()
    assert committed["package_version"] == origin.package_version() == "3.6.0"


def test_pool_links_every_external_logic_library_it_needs():
    pool = origin.artifact("PoolInstance")
    linked = {lib for libs in pool["linkReferences"].values() for lib in libs}
    assert {"SupplyLogic", "BorrowLogic", "LiquidationLogic", "PoolLogic", "FlashLoanLogic"} <= linked
    for lib in linked:  # every library is in the artifact, so the devnet can deploy and link it
        assert origin.artifact(lib)["bytecode"].startswith("0x")
    assert any(item.get("name") == "POOL_REVISION" for item in pool["abi"])
