"""Aave V3 on a devnet, configured like Aave V3 Ethereum, in the version the scenario names.

``[protocols.aave-v3] version = "3.6"`` (the default) deploys v3.6 from ``@aave-dao/aave-v3-origin``
(:mod:`.devnet_v36`); ``version = "3.0"`` deploys the real ``@aave/core-v3`` 1.19.3 bytecode below.

Deploy order follows Aave's own deploy scripts (aave-v3-deploy): PoolAddressesProvider, ACL,
the logic libraries linked into Pool, Pool and PoolConfigurator behind the provider's proxies,
AaveOracle over the devnet's PriceFeeds, AaveProtocolDataProvider, token implementations, rate
strategies, then ``PoolConfigurator.initReserves`` and the risk parameters of :mod:`.params`.
"""

from __future__ import annotations

from typing import Any

from eth_utils import keccak, to_checksum_address

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.errors import ContagionError
from protocols.aave_v3 import params as P
from protocols.aave_v3.bulk import seed_bulk
from protocols.aave_v3.devnet_v36 import deploy_v36
from protocols.aave_v3.seeding import seed_population
from protocols.base import Devnet

VERSIONS = ("3.0", "3.6")

PACKAGE = "@aave/core-v3"
ZERO = "0x0000000000000000000000000000000000000000"
POOL_LIBRARIES = ("SupplyLogic", "BorrowLogic", "LiquidationLogic", "EModeLogic", "BridgeLogic",
                  "PoolLogic")
ISOLATED_COLLATERAL_SUPPLIER_ROLE = keccak(text="ISOLATED_COLLATERAL_SUPPLIER")
def artifact(name: str) -> dict:
    return npm_artifact(PACKAGE, name)


def scenario_version(scenario) -> str:
    version = str(scenario.protocol("aave-v3").get("version", "3.6"))
    if version not in VERSIONS:
        raise ContagionError(f'{scenario.path.name}: protocols.aave-v3.version: "{version}" is not a devnet version '
                             f'(known: {", ".join(VERSIONS)})')
    return version


class AaveV3Devnet(Devnet):
    protocol = "aave-v3"

    MARKET = "Core"   # the devnet's one market of this protocol

    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        return {self.MARKET: self._deploy_market(ctx)}

    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        self._seed_market(ctx, markets[self.MARKET])

    def _deploy_market(self, ctx: DevnetContext) -> dict[str, Any]:
        if scenario_version(ctx.scenario) == "3.6":
            symbols = [s for s in ctx.scenario.assets if s in P.RESERVES]
            tokens = {s: to_checksum_address(ctx.book["tokens"][s]) for s in symbols}
            return deploy_v36(ctx, symbols, tokens, [to_checksum_address(ctx.book["feeds"][s]) for s in symbols])
        return self._deploy_v30(ctx)

    def _deploy_v30(self, ctx: DevnetContext) -> dict[str, Any]:
        me = ctx.deployer
        provider = ctx.deploy(artifact("PoolAddressesProvider"), "Aave V3 devnet", me)
        ctx.transact(provider.functions.setACLAdmin(me))
        acl = ctx.deploy(artifact("ACLManager"), provider.address)
        ctx.transact(provider.functions.setACLManager(acl.address))
        for grant in (acl.functions.addPoolAdmin(me), acl.functions.addRiskAdmin(me),
                      acl.functions.addAssetListingAdmin(me),
                      acl.functions.grantRole(ISOLATED_COLLATERAL_SUPPLIER_ROLE, me)):
            ctx.transact(grant)

        libraries = {name: ctx.deploy(artifact(name)).address for name in POOL_LIBRARIES}
        libraries["FlashLoanLogic"] = ctx.deploy(
            artifact("FlashLoanLogic"), libraries={"BorrowLogic": libraries["BorrowLogic"]}).address
        pool_impl = ctx.deploy(artifact("Pool"), provider.address, libraries=libraries)
        ctx.transact(pool_impl.functions.initialize(provider.address))
        ctx.transact(provider.functions.setPoolImpl(pool_impl.address))
        pool = ctx.contract(provider.functions.getPool().call(), artifact("Pool")["abi"])

        configurator_logic = ctx.deploy(artifact("ConfiguratorLogic")).address
        configurator_impl = ctx.deploy(artifact("PoolConfigurator"),
                                       libraries={"ConfiguratorLogic": configurator_logic})
        ctx.transact(configurator_impl.functions.initialize(provider.address))
        ctx.transact(provider.functions.setPoolConfiguratorImpl(configurator_impl.address))
        configurator = ctx.contract(provider.functions.getPoolConfigurator().call(),
                                    artifact("PoolConfigurator")["abi"])

        symbols = [s for s in ctx.scenario.assets if s in P.RESERVES]
        tokens = {s: to_checksum_address(ctx.book["tokens"][s]) for s in symbols}
        feeds = [to_checksum_address(ctx.book["feeds"][s]) for s in symbols]
        oracle = ctx.deploy(artifact("AaveOracle"), provider.address, [tokens[s] for s in symbols], feeds,
                            ZERO, ZERO, 10**8)
        ctx.transact(provider.functions.setPriceOracle(oracle.address))
        data_provider = ctx.deploy(artifact("AaveProtocolDataProvider"), provider.address)
        ctx.transact(provider.functions.setPoolDataProvider(data_provider.address))

        treasury = to_checksum_address(keccak(text="defi-contagion/aave-v3/treasury")[-20:])
        reserves = self._init_reserves(ctx, pool, configurator, provider.address, symbols, tokens, treasury)
        self._configure(ctx, configurator, symbols, tokens)
        return {
            "version": "3.0", "market": "Aave V3 devnet", "source": f"{PACKAGE} (npm artifacts)",
            "pool_addresses_provider": provider.address, "pool": pool.address,
            "pool_configurator": configurator.address, "oracle": oracle.address,
            "data_provider": data_provider.address, "acl_manager": acl.address,
            "acl_admin": me, "treasury": treasury, "start_block": 0, "reserves": reserves,
        }

    def _init_reserves(self, ctx, pool, configurator, provider: str, symbols, tokens, treasury) -> dict:
        impls = {name: ctx.deploy(artifact(name), pool.address).address
                 for name in ("AToken", "StableDebtToken", "VariableDebtToken")}
        strategies = {key: ctx.deploy(artifact("DefaultReserveInterestRateStrategy"),
                                      *strategy.constructor_args(provider)).address
                      for key, strategy in P.RATE_STRATEGIES.items()}
        inputs = []
        for s in symbols:
            inputs.append((impls["AToken"], impls["StableDebtToken"], impls["VariableDebtToken"],
                           ctx.scenario.assets[s].decimals, strategies[P.RESERVES[s].rate_strategy], tokens[s],
                           treasury, ZERO, f"Aave devnet {s}", f"a{s}", f"Aave devnet variable debt {s}",
                           f"variableDebt{s}", f"Aave devnet stable debt {s}", f"stableDebt{s}", b""))
        ctx.transact(configurator.functions.initReserves(inputs), what="PoolConfigurator.initReserves")
        reserves = {}
        for s in symbols:
            data = pool.functions.getReserveData(tokens[s]).call()
            reserves[s] = {"asset": tokens[s], "aToken": data[8], "stableDebtToken": data[9],
                           "variableDebtToken": data[10]}
        return reserves

    def _configure(self, ctx, configurator, symbols, tokens) -> None:
        f = configurator.functions
        for s in symbols:
            r, asset = P.RESERVES[s], tokens[s]
            # the debt ceiling must be set while nobody supplies the asset (_checkNoSuppliers)
            steps = [f.configureReserveAsCollateral(asset, r.ltv, r.liquidation_threshold, r.liquidation_bonus),
                     f.setReserveFactor(asset, r.reserve_factor),
                     f.setLiquidationProtocolFee(asset, r.liquidation_protocol_fee),
                     f.setSupplyCap(asset, r.supply_cap), f.setBorrowCap(asset, r.borrow_cap)]
            if r.borrowable:
                steps.append(f.setReserveBorrowing(asset, True))
            if r.debt_ceiling_usd:
                steps.append(f.setDebtCeiling(asset, r.debt_ceiling_usd * 100))
            if r.borrowable_in_isolation:
                steps.append(f.setBorrowableInIsolation(asset, True))
            for step in steps:
                ctx.transact(step, what=f"PoolConfigurator.{step.fn_name}({s})")
        for category, e in P.EMODE_CATEGORIES.items():
            ctx.transact(f.setEModeCategory(category, e.ltv, e.liquidation_threshold, e.liquidation_bonus, ZERO,
                                            e.label))
        for s in symbols:
            if P.RESERVES[s].emode_category:
                ctx.transact(f.setAssetEModeCategory(tokens[s], P.RESERVES[s].emode_category))

    def _seed_market(self, ctx: DevnetContext, deployment: dict[str, Any]) -> None:
        seed_population(ctx, deployment)
        seed_bulk(ctx, deployment, scenario_version(ctx.scenario))
