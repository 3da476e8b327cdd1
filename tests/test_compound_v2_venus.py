"""The same Compound V2 reader, rules and executor on a real Venus isolated pool (npm bytecode).

The pool is deployed on the session devnet (module-wide, reverted afterwards) by
protocols/compound_v2/venus.py; its address book says ``profile = "venus-isolated"``. Expected
values come from the chain: ``getAccountLiquidity`` (which Venus computes with the liquidation
threshold), balances, and the receipts of real ``liquidateBorrow`` transactions.
"""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import to_checksum_address

from analyzer.devnet.context import DevnetContext, npm_artifact
from protocols.compound_v2 import venus
from protocols.compound_v2.reader import read_snapshot
from protocols.compound_v2.rules import CompoundV2Rules
from tests.conftest import requires_anvil
from tests.test_compound_v2_devnet import check_rule_against_chain

pytestmark = requires_anvil


@pytest.fixture(scope="module")
def venus_pool(devnet):
    """(devnet, deployment) with one seeded Venus isolated pool; the chain is restored afterwards."""
    if not all(s in devnet.book.get("tokens", {}) for s in venus.MARKETS):
        pytest.skip("the devnet scenario lacks the pool's assets")
    mark = devnet.anvil.snapshot()
    try:
        ctx = DevnetContext(w3=devnet.w3, deployer=devnet.w3.eth.accounts[0], scenario=devnet.scenario,
                            book=devnet.book)
        deployment = venus.deploy_pool(ctx)
        venus.seed_pool(ctx, deployment)
        yield devnet, deployment
    finally:
        devnet.anvil.revert(mark)


def test_pool_is_the_real_bytecode(venus_pool):
    """The Comptroller and VTokens run the package's runtime code (behind their beacons)."""
    devnet, deployment = venus_pool
    w3 = devnet.w3
    beacon_abi = npm_artifact(venus.PACKAGE, "UpgradeableBeacon")["abi"]
    # ERC-1967 beacon slot of a BeaconProxy
    slot = int("a3f0ad74e5423aebfd80d3ef4346578335a9a72aeaee59ff6cb3582b35133d50", 16)
    for proxy, name, source in [(deployment["comptroller"], "Comptroller", "contracts/Comptroller.sol"),
                                *[(m["cToken"], "VToken", "contracts/VToken.sol")
                                  for m in deployment["markets"].values()]]:
        beacon = to_checksum_address(w3.eth.get_storage_at(proxy, slot)[12:])
        implementation = w3.eth.contract(address=beacon, abi=beacon_abi).functions.implementation().call()
        shipped = npm_artifact(venus.PACKAGE, name, source)["deployedBytecode"].lower()
        on_chain = "0x" + bytes(w3.eth.get_code(implementation)).hex()
        # immutables are filled in at deployment; compare the lengths and the code around them
        assert len(on_chain) == len(shipped)
        same = sum(a == b for a, b in zip(on_chain, shipped, strict=True))
        assert same / len(shipped) > 0.99, name


def test_reader_matches_venus_chain_exactly(venus_pool):
    devnet, deployment = venus_pool
    w3 = devnet.w3
    block = w3.eth.block_number
    snap = read_snapshot(w3, deployment, block)
    rules = CompoundV2Rules()
    (book,) = rules.books(snap)
    # the profile read the liquidation threshold beside the collateral factor
    markets = snap.markets.set_index("asset")
    for symbol, (cf, lt) in venus.MARKETS.items():
        row = markets.loc[deployment["markets"][symbol]["underlying"]]
        assert (row["ltv"], row["liquidation_threshold"]) == (cf, lt)
    assert book.extra["min_liquidatable_collateral_mantissa"] == venus.MIN_LIQUIDATABLE_COLLATERAL_USD * 10**18
    liquidity, shortfall = rules.liquidity_exact(book)
    comptroller = w3.eth.contract(address=deployment["comptroller"],
                                  abi=npm_artifact(venus.PACKAGE, "Comptroller", "contracts/Comptroller.sol")["abi"])
    for i, account in enumerate(book.accounts):
        err, chain_liquidity, chain_shortfall = comptroller.functions.getAccountLiquidity(account).call(
            block_identifier=block)
        assert err == 0
        assert (int(liquidity[i]), int(shortfall[i])) == (chain_liquidity, chain_shortfall), account
    assert (book.debt > 0).any(axis=1).sum() >= 30


@pytest.mark.parametrize("drop", [0.05, 0.15, 0.30])
def test_rule_predicts_venus_liquidations(venus_pool, drop):
    devnet, deployment = venus_pool
    mark = devnet.anvil.snapshot()
    try:
        counts = check_rule_against_chain(devnet, deployment, drop, ("WETH", "WBTC"))
    finally:
        devnet.anvil.revert(mark)
    if drop >= 0.15:
        assert counts["liquidated"] > 0
    if drop >= 0.30:
        # accounts in shortfall whose collateral is under minLiquidatableCollateral: the profile's
        # rule says no, and the chain refused them (MinimalCollateralViolated)
        assert counts["shortfall_not_liquidatable"] > 0
    assert np.isfinite(counts["borrowers"])
