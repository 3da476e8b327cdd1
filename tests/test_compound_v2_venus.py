"""The same Compound V2 reader, rules and executor on a real Venus isolated pool (npm bytecode).

The pool is deployed on the session devnet (module-wide, reverted afterwards) by
protocols/compound_v2/venus.py; its address book says ``profile = "venus-isolated"``. Expected
values come from the chain: ``getAccountLiquidity`` (which Venus computes with the liquidation
threshold), balances, and the receipts of real ``liquidateBorrow`` transactions.
"""

from __future__ import annotations

import math

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


UINT_MAX = 2**256 - 1


def _mint_reverts(w3, vtoken: str, underlying: str, minter: str, amount_raw: int) -> bool:
    """Whether ``VToken.mint(amount_raw)`` by ``minter`` (funded and approved by cheats) reverts."""
    from analyzer.cheats import deal, send_as
    from analyzer.errors import ContagionError

    deal(w3, underlying, minter, amount_raw)
    send_as(w3, minter, underlying, "approve(address,uint256)", vtoken, amount_raw)
    try:
        send_as(w3, minter, vtoken, "mint(uint256)", amount_raw)
    except ContagionError:
        return True
    return False


def test_venus_caps_are_read_searched_and_set_through_the_pools_own_setters(venus_pool):
    """Venus isolated pools' supply and borrow caps: type(uint256).max (unlimited) reads as no cap;
    a cap set by governance reads as whole tokens; with the cap analysis on the search lists both
    kinds; the tuning sets a lower one through ``setMarketSupplyCaps`` / ``setMarketBorrowCaps`` as
    the pool's owner, and the chain then holds it and refuses a mint past it."""
    from analyzer.cheats import read, send_as
    from analyzer.recommend.caps import at_caps
    from protocols.base import ParameterChange
    from protocols.compound_v2.constants import PROTOCOL
    from protocols.compound_v2.tuning import CompoundV2Tuning

    devnet, deployment = venus_pool
    w3 = devnet.w3
    comptroller = deployment["comptroller"]
    weth, usdc = deployment["markets"]["WETH"], deployment["markets"]["USDC"]
    mark = devnet.anvil.snapshot()
    try:
        for m in deployment["markets"].values():
            assert read(w3, comptroller, "supplyCaps(address)(uint256)", m["cToken"]) == UINT_MAX
            assert read(w3, comptroller, "borrowCaps(address)(uint256)", m["cToken"]) == UINT_MAX
        markets = read_snapshot(w3, deployment).markets
        assert (markets["supply_cap"] == 0).all() and (markets["borrow_cap"] == 0).all()

        # today's totals from the chain, in whole tokens: WETH supplied (cTokens × exchange rate), USDC borrowed
        supplied = read(w3, weth["cToken"], "totalSupply()(uint256)") * \
            read(w3, weth["cToken"], "exchangeRateStored()(uint256)") // 10**18 / 10**weth["decimals"]
        borrowed = read(w3, usdc["cToken"], "totalBorrows()(uint256)") / 10**usdc["decimals"]
        assert supplied > 0 and borrowed > 0
        supply_cap, borrow_cap = 2 * math.ceil(supplied), 2 * math.ceil(borrowed)
        owner = read(w3, comptroller, "owner()(address)")
        send_as(w3, owner, comptroller, "setMarketSupplyCaps(address[],uint256[])", [weth["cToken"]],
                [supply_cap * 10**weth["decimals"]])
        send_as(w3, owner, comptroller, "setMarketBorrowCaps(address[],uint256[])", [usdc["cToken"]],
                [borrow_cap * 10**usdc["decimals"]])
        snapshot = read_snapshot(w3, deployment)
        rows = snapshot.markets.set_index("asset")
        assert rows.at[weth["underlying"], "supply_cap"] == supply_cap
        assert rows.at[usdc["underlying"], "borrow_cap"] == borrow_cap

        tuning = CompoundV2Tuning()
        listed = {(p.asset, p.parameter): p for p in tuning.parameters(at_caps(snapshot))}
        assert {(weth["underlying"], "supply_cap"), (usdc["underlying"], "borrow_cap")} <= set(listed)
        assert all(p.parameter not in ("supply_cap", "borrow_cap") for p in tuning.parameters(snapshot))
        new_supply = listed[(weth["underlying"], "supply_cap")]
        new_borrow = listed[(usdc["underlying"], "borrow_cap")]
        changes = [ParameterChange(PROTOCOL, comptroller, weth["underlying"], "supply_cap", new_supply.value - new_supply.step),
                   ParameterChange(PROTOCOL, comptroller, usdc["underlying"], "borrow_cap", new_borrow.value - new_borrow.step)]
        assert changes[0].value < supply_cap and changes[1].value < borrow_cap
        tuning.configure(w3, deployment, changes)
        assert read(w3, comptroller, "supplyCaps(address)(uint256)", weth["cToken"]) == \
            int(changes[0].value) * 10**weth["decimals"]
        assert read(w3, comptroller, "borrowCaps(address)(uint256)", usdc["cToken"]) == \
            int(changes[1].value) * 10**usdc["decimals"]
        rows = read_snapshot(w3, deployment).markets.set_index("asset")
        assert rows.at[weth["underlying"], "supply_cap"] == changes[0].value
        assert rows.at[usdc["underlying"], "borrow_cap"] == changes[1].value

        # the pool enforces the cap the tuning set: a mint 1% past the room left reverts, 1% short of it does not
        room = (changes[0].value - supplied) * 10**weth["decimals"]
        minter = w3.eth.accounts[5]
        assert _mint_reverts(w3, weth["cToken"], weth["underlying"], minter, int(room * 1.01))
        assert not _mint_reverts(w3, weth["cToken"], weth["underlying"], minter, int(room * 0.99))
    finally:
        devnet.anvil.revert(mark)


def test_a_venus_threshold_cut_is_set_by_the_pool_and_liquidates_whom_the_tuning_predicts(venus_pool):
    """WETH's liquidation threshold cut ten points (below its collateral factor, which follows it)
    through ``setCollateralFactor`` as the pool's owner: the Comptroller's ``markets()`` holds both
    values, and the accounts the tuned snapshot makes liquidatable are those the Comptroller puts in
    shortfall (``getAccountLiquidity``), but those under its minimum liquidatable collateral."""
    from analyzer.cheats import read
    from analyzer.recommend.evaluate import liquidatable, tuned
    from protocols.base import ParameterChange
    from protocols.compound_v2.constants import PROTOCOL
    from protocols.compound_v2.tuning import CompoundV2Tuning

    devnet, deployment = venus_pool
    w3 = devnet.w3
    comptroller, weth = deployment["comptroller"], deployment["markets"]["WETH"]
    cf, lt = venus.MARKETS["WETH"]
    mark = devnet.anvil.snapshot()
    try:
        snapshot = read_snapshot(w3, deployment)
        tuning = CompoundV2Tuning()
        listed = {(p.asset, p.parameter): p for p in tuning.parameters(snapshot)}
        assert listed[(weth["underlying"], "liquidation_threshold")].value == lt
        change = ParameterChange(PROTOCOL, comptroller, weth["underlying"], "liquidation_threshold", round(lt - 0.10, 4))
        predicted = {a for p, _, a in liquidatable(tuned(snapshot, [change]))} - {a for p, _, a in liquidatable(snapshot)}

        def in_shortfall() -> set[str]:
            borrowers = set(snapshot.positions.loc[snapshot.positions["side"] == "debt", "account"])
            return {a for a in borrowers
                    if read(w3, comptroller, "getAccountLiquidity(address)(uint256,uint256,uint256)", a)[2] > 0}

        before = in_shortfall()
        tuning.configure(w3, deployment, [change])
        listing = read(w3, comptroller, "markets(address)(bool,uint256,uint256)", weth["cToken"])
        assert (listing[1], listing[2]) == (round((lt - 0.10) * 1e4) * 10**14,) * 2 and lt - 0.10 < cf
        newly = in_shortfall() - before
        assert predicted and predicted <= newly
        # the rest are refused by the pool's minimum liquidatable collateral (independently: their
        # collateral's value at the oracle price, from the positions read)
        pos = snapshot.positions.merge(snapshot.assets[["address", "price_usd"]], left_on="asset", right_on="address")
        held = pos[pos["side"] == "collateral"].assign(usd=lambda p: p["amount"] * p["price_usd"])
        small = set(held.groupby("account")["usd"].sum().loc[lambda usd: usd < venus.MIN_LIQUIDATABLE_COLLATERAL_USD].index)
        assert newly - predicted <= small
    finally:
        devnet.anvil.revert(mark)
