"""A real Compound-V2-family pool on the devnet: Venus isolated pools, from the npm artifacts.

Deploys the audited bytecode shipped in ``@venusprotocol/isolated-pools`` (pinned in
package.json): AccessControlManager, Comptroller and VToken implementations behind OpenZeppelin
UpgradeableBeacon + BeaconProxy (as Venus deploys them), Venus's WhitePaperInterestRateModel.
Two small parts are ours (fixtures/contracts/compound_v2/Periphery.sol): the price oracle, our
FeedPriceOracle, which implements ResilientOracleInterface's getUnderlyingPrice/updatePrice over
the devnet PriceFeeds; and VenusReserveSink, the holder of the protocol's seize share where Venus
has its ProtocolShareReserve. The Comptroller's pool registry is the deployer's account (the role
``supportMarket`` checks), so markets are listed directly instead of through PoolRegistry.

The pool's address-book entry has ``profile = "venus-isolated"``, so the Compound V2 reader,
rules and executor read and liquidate it unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.solc import fixture_artifact
from protocols.compound_v2.devnet import CompoundV2Devnet, Position, _mantissa

PACKAGE = "@venusprotocol/isolated-pools"
ZERO = "0x0000000000000000000000000000000000000000"
BLOCKS_PER_YEAR = 2_102_400
MAX_BORROW_RATE_MANTISSA = 5 * 10**12     # per block, as Compound's borrowRateMaxMantissa
UINT_MAX = 2**256 - 1
# Illustrative parameters in the ranges of Venus's isolated pools (not a live pool's values):
# (collateral factor, liquidation threshold) per market; a minimum liquidatable collateral high
# enough that the small accounts below exercise the MinimalCollateralViolated rule.
MARKETS = {"WETH": (0.75, 0.80), "WBTC": (0.70, 0.75), "USDC": (0.80, 0.82), "USDT": (0.80, 0.82),
           "DAI": (0.75, 0.78)}
CLOSE_FACTOR = 0.5
LIQUIDATION_INCENTIVE = 1.1
MIN_LIQUIDATABLE_COLLATERAL_USD = 1000
RESERVE_FACTOR = 0.1
LIQUIDITY = {"USDC": 50_000_000, "USDT": 30_000_000, "DAI": 30_000_000}
ACM_CALLS = ("setCloseFactor(uint256)", "setLiquidationIncentive(uint256)",
             "setCollateralFactor(address,uint256,uint256)", "setMinLiquidatableCollateral(uint256)",
             "setMarketSupplyCaps(address[],uint256[])", "setMarketBorrowCaps(address[],uint256[])")


def deploy_pool(ctx: DevnetContext) -> dict[str, Any]:
    """Deploy one Venus isolated pool over the devnet's tokens and feeds; its address-book entry."""
    me = ctx.deployer
    acm = ctx.deploy(npm_artifact(PACKAGE, "AccessControlManager"))
    for signature in ACM_CALLS:
        ctx.transact(acm.functions.giveCallPermission(ZERO, signature, me))
    oracle = ctx.deploy(fixture_artifact("compound_v2", "FeedPriceOracle"))
    sink = ctx.deploy(fixture_artifact("compound_v2", "VenusReserveSink"))

    comptroller_artifact = npm_artifact(PACKAGE, "Comptroller", "contracts/Comptroller.sol")
    comptroller_impl = ctx.deploy(comptroller_artifact, me)          # pool registry = deployer
    beacon = ctx.deploy(npm_artifact(PACKAGE, "UpgradeableBeacon"), comptroller_impl.address)
    init = comptroller_impl.encode_abi("initialize", args=[100, acm.address])
    proxy = ctx.deploy(npm_artifact(PACKAGE, "BeaconProxy"), beacon.address, init)
    comptroller = ctx.contract(proxy.address, comptroller_artifact["abi"])
    ctx.transact(comptroller.functions.setPriceOracle(oracle.address))
    ctx.transact(comptroller.functions.setCloseFactor(_mantissa(CLOSE_FACTOR)))
    ctx.transact(comptroller.functions.setLiquidationIncentive(_mantissa(LIQUIDATION_INCENTIVE)))
    ctx.transact(comptroller.functions.setMinLiquidatableCollateral(MIN_LIQUIDATABLE_COLLATERAL_USD * 10**18))

    rate_model = ctx.deploy(npm_artifact(PACKAGE, "WhitePaperInterestRateModel"), _mantissa(0.02), _mantissa(0.2),
                            False, BLOCKS_PER_YEAR)
    vtoken_artifact = npm_artifact(PACKAGE, "VToken", "contracts/VToken.sol")
    vtoken_impl = ctx.deploy(vtoken_artifact, False, BLOCKS_PER_YEAR, MAX_BORROW_RATE_MANTISSA)
    vtoken_beacon = ctx.deploy(npm_artifact(PACKAGE, "UpgradeableBeacon"), vtoken_impl.address)
    markets = {}
    for symbol, (cf, lt) in MARKETS.items():
        decimals = ctx.book["decimals"][symbol]
        init = vtoken_impl.encode_abi("initialize", args=[
            ctx.book["tokens"][symbol], comptroller.address, rate_model.address, 2 * 10 ** (decimals + 8),
            f"Venus {symbol} (devnet pool)", f"v{symbol}", 8, me, acm.address, (sink.address, sink.address),
            _mantissa(RESERVE_FACTOR)])
        vtoken = ctx.deploy(npm_artifact(PACKAGE, "BeaconProxy"), vtoken_beacon.address, init)
        feed = ctx.book["feeds"][symbol]
        ctx.transact(oracle.functions.setFeed(vtoken.address, feed, decimals))
        ctx.transact(comptroller.functions.supportMarket(vtoken.address))
        ctx.transact(comptroller.functions.setCollateralFactor(vtoken.address, _mantissa(cf), _mantissa(lt)))
        ctx.transact(comptroller.functions.setMarketSupplyCaps([vtoken.address], [UINT_MAX]))
        ctx.transact(comptroller.functions.setMarketBorrowCaps([vtoken.address], [UINT_MAX]))
        markets[symbol] = {"cToken": vtoken.address, "underlying": ctx.book["tokens"][symbol], "decimals": decimals,
                           "feed": feed}
    return {"comptroller": comptroller.address, "oracle": oracle.address, "rate_model": rate_model.address,
            "access_control_manager": acm.address, "protocol_share_reserve": sink.address, "admin": me,
            "profile": "venus-isolated", "start_block": 0, "markets": markets, "package": f"{PACKAGE} (npm)"}


def pool_population(scenario, accounts: int = 30) -> list[Position]:
    """Borrowers of the Venus pool, from the scenario seed: WETH/WBTC collateral, stablecoin debt,
    borrow-side ratio Σ collateral × CF / borrows in [1.02, 2.5]; collateral $300–$500k so that
    some accounts sit under the minimum liquidatable collateral."""
    rng = np.random.default_rng(scenario.seed + 3)
    collateral = rng.choice(["WETH", "WBTC"], accounts, p=[0.6, 0.4])
    debt = rng.choice(["USDC", "USDT", "DAI"], accounts, p=[0.5, 0.3, 0.2])
    ratio = 1.02 + 1.48 * rng.random(accounts) ** 2
    value = np.exp(rng.uniform(math.log(300), math.log(500_000), accounts))
    price = {s: a.price_usd for s, a in scenario.assets.items()}
    out = []
    for i in range(accounts):
        c, d = str(collateral[i]), str(debt[i])
        borrow_usd = value[i] * MARKETS[c][0] / ratio[i]
        out.append(Position(f"pop-{i}", {c: value[i] / price[c]}, {d: borrow_usd / price[d]}))
    return out


def seed_pool(ctx: DevnetContext, deployment: dict[str, Any], accounts: int = 30) -> None:
    opener = CompoundV2Devnet()
    opener._open(ctx, deployment, Position("venus-lender", {s: float(v) for s, v in LIQUIDITY.items()}))
    for position in pool_population(ctx.scenario, accounts):
        opener._open(ctx, deployment, position)
