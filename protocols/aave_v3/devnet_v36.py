"""Aave V3.6 on a devnet: ``@aave-dao/aave-v3-origin`` 3.6.0 compiled by us (:mod:`.origin`).

The order follows the package's own deploy procedures (``src/deployments/contracts/procedures``):
PoolAddressesProvider and ACLManager; one DefaultReserveInterestRateStrategyV2 for the whole pool
(3.2+: the Pool takes it in its constructor, reserves keep only their rate data); PoolInstance and
PoolConfiguratorInstance (logic libraries linked) behind the provider's proxies; AaveOracle over the
devnet's price feeds; AaveProtocolDataProvider; UiPoolDataProviderV3; the ATokenInstance and
VariableDebtTokenInstance implementations (in 3.6 the treasury is an aToken constructor
argument); ``PoolConfigurator.initReserves``; risk parameters; the e-mode categories of
:data:`.params.EMODE_CATEGORIES_V36` as bitmaps.

``getReserveData``'s legacy stable-debt field reads ``PoolAddressesProvider.getAddress
("MOCK_STABLE_DEBT")``; as on Ethereum it is set to a non-zero address here (one without code),
so a reader that still calls the stable-debt token fails on the devnet as it would on mainnet.
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from analyzer.devnet.context import DevnetContext
from protocols.aave_v3 import params as P
from protocols.aave_v3.origin import artifact, package_version

ZERO = "0x0000000000000000000000000000000000000000"
MOCK_STABLE_DEBT_ID = b"MOCK_STABLE_DEBT".ljust(32, b"\0")
MOCK_STABLE_DEBT = to_checksum_address(keccak(text="defi-contagion/aave-v3/mock-stable-debt")[-20:])
VERSION = "3.6"
INIT_RESERVES_PER_TX = 8


def deploy_linked(ctx: DevnetContext, name: str, *args: Any, deployed: dict[str, str]):
    """Deploy ``name`` after the libraries its bytecode links (recursively; each library once)."""
    art = artifact(name)
    for libs in art["linkReferences"].values():
        for lib in libs:
            if lib not in deployed:
                deployed[lib] = deploy_linked(ctx, lib, deployed=deployed).address
    return ctx.deploy(art, *args, libraries=deployed)


def deploy_v36(ctx: DevnetContext, symbols: list[str], tokens: dict[str, str], feeds: list[str]) -> dict[str, Any]:
    me, libraries = ctx.deployer, dict[str, str]()
    provider = ctx.deploy(artifact("PoolAddressesProvider"), "Aave V3 devnet", me)
    ctx.transact(provider.functions.setACLAdmin(me))
    acl = ctx.deploy(artifact("ACLManager"), provider.address)
    ctx.transact(provider.functions.setACLManager(acl.address))
    for grant in (acl.functions.addPoolAdmin(me), acl.functions.addRiskAdmin(me),
                  acl.functions.addAssetListingAdmin(me), acl.functions.addEmergencyAdmin(me)):
        ctx.transact(grant)
    ctx.transact(provider.functions.setAddress(MOCK_STABLE_DEBT_ID, MOCK_STABLE_DEBT))

    strategy = ctx.deploy(artifact("DefaultReserveInterestRateStrategyV2"), provider.address)
    pool_impl = deploy_linked(ctx, "PoolInstance", provider.address, strategy.address, deployed=libraries)
    # 3.6 implementations are initialised by their constructor (VersionedInitializable): proxies only
    ctx.transact(provider.functions.setPoolImpl(pool_impl.address))
    pool = ctx.contract(provider.functions.getPool().call(), artifact("PoolInstance")["abi"])
    configurator_impl = deploy_linked(ctx, "PoolConfiguratorInstance", deployed=libraries)
    ctx.transact(provider.functions.setPoolConfiguratorImpl(configurator_impl.address))
    configurator = ctx.contract(provider.functions.getPoolConfigurator().call(),
                                artifact("PoolConfiguratorInstance")["abi"])

    oracle = ctx.deploy(artifact("AaveOracle"), provider.address, [tokens[s] for s in symbols], feeds,
                        ZERO, ZERO, 10**8)
    ctx.transact(provider.functions.setPriceOracle(oracle.address))
    data_provider = ctx.deploy(artifact("AaveProtocolDataProvider"), provider.address)
    ctx.transact(provider.functions.setPoolDataProvider(data_provider.address))
    by_symbol = dict(zip(symbols, feeds, strict=True))
    ui = ctx.deploy(artifact("UiPoolDataProviderV3"), by_symbol.get("WETH", feeds[0]), by_symbol.get("USDC", feeds[0]))

    treasury = to_checksum_address(keccak(text="defi-contagion/aave-v3/treasury")[-20:])
    reserves = _init_reserves(ctx, pool, configurator, symbols, tokens, treasury)
    listings = P.reserves(VERSION)
    _configure(ctx, configurator, symbols, tokens, listings)
    _configure_emodes(ctx, configurator, symbols, tokens)
    return {
        "version": VERSION, "market": "Aave V3 devnet",
        "source": f"@aave-dao/aave-v3-origin {package_version()} (compiled: fixtures/artifacts/aave_v3_origin.json)",
        "pool_addresses_provider": provider.address, "pool": pool.address,
        "pool_configurator": configurator.address, "oracle": oracle.address,
        "data_provider": data_provider.address, "ui_pool_data_provider": ui.address, "acl_manager": acl.address,
        "acl_admin": me, "treasury": treasury, "start_block": 0, "reserves": reserves,
        "interest_rate_strategy": strategy.address,
    }


def _init_reserves(ctx, pool, configurator, symbols, tokens, treasury) -> dict:
    a_token = ctx.deploy(artifact("ATokenInstance"), pool.address, ZERO, treasury).address
    debt_token = ctx.deploy(artifact("VariableDebtTokenInstance"), pool.address, ZERO).address
    listings = P.reserves(VERSION)
    inputs = []
    for s in symbols:
        rate = P.RATE_STRATEGIES[listings[s].rate_strategy].interest_rate_data()
        inputs.append((a_token, debt_token, tokens[s], f"Aave devnet {s}", f"a{s}",
                       f"Aave devnet variable debt {s}", f"variableDebt{s}", b"",
                       abi_encode(["(uint16,uint32,uint32,uint32)"], [rate])))
    for start in range(0, len(inputs), INIT_RESERVES_PER_TX):   # a mainnet-sized listing passes a block's gas
        ctx.transact(configurator.functions.initReserves(inputs[start:start + INIT_RESERVES_PER_TX]),
                     what="PoolConfigurator.initReserves")
    reserves = {}
    for s in symbols:
        data = pool.functions.getReserveData(tokens[s]).call()
        reserves[s] = {"asset": tokens[s], "aToken": data[8], "variableDebtToken": data[10]}
    return reserves


def _configure(ctx, configurator, symbols, tokens, listings) -> None:
    f = configurator.functions
    for s in symbols:
        r, asset = listings[s], tokens[s]
        steps = []
        if r.liquidation_threshold:  # a threshold of 0 is the listing's default: nothing to set
            steps.append(f.configureReserveAsCollateral(asset, r.ltv, r.liquidation_threshold, r.liquidation_bonus))
        steps += [f.setReserveFactor(asset, r.reserve_factor), f.setLiquidationProtocolFee(asset, r.liquidation_protocol_fee),
                  f.setSupplyCap(asset, r.supply_cap), f.setBorrowCap(asset, r.borrow_cap)]
        if r.borrowable:
            steps.append(f.setReserveBorrowing(asset, True))
        if r.debt_ceiling_usd:  # while nobody supplies the asset (_checkNoSuppliers)
            steps.append(f.setDebtCeiling(asset, r.debt_ceiling_usd * 100))
        if r.borrowable_in_isolation:
            steps.append(f.setBorrowableInIsolation(asset, True))
        for step in steps:
            ctx.transact(step, what=f"PoolConfigurator.{step.fn_name}({s})")


def _configure_emodes(ctx, configurator, symbols, tokens) -> None:
    """Categories and their collateral / borrowable bitmaps; ltvzero bits are set after seeding
    (:func:`set_emode_ltvzero`): an ltvzero collateral is not enabled automatically on supply."""
    f = configurator.functions
    for category, e in P.EMODE_CATEGORIES_V36.items():
        ctx.transact(f.setEModeCategory(category, e.ltv, e.liquidation_threshold, e.liquidation_bonus, e.label))
        for s in e.collateral:
            if s in symbols:
                ctx.transact(f.setAssetCollateralInEMode(tokens[s], category, True))
        for s in e.borrowable:
            if s in symbols:
                ctx.transact(f.setAssetBorrowableInEMode(tokens[s], category, True))


def set_emode_ltvzero(ctx, configurator: str, tokens: dict[str, str]) -> None:
    contract = ctx.contract(configurator, artifact("PoolConfiguratorInstance")["abi"])
    for category, e in P.EMODE_CATEGORIES_V36.items():
        for s in e.ltvzero:
            if s in tokens:
                ctx.transact(contract.functions.setAssetLtvzeroInEMode(tokens[s], category, True))
