"""Per-fork profiles: where Compound V2 forks differ in what the reader calls and the rule applies.

A profile names the signatures of the reads and events that differ and the switches of the rule.
The reader, the rules and the executor are the same code for every fork; a deployment's
``profile`` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import ContagionError


@dataclass(frozen=True)
class EventSpec:
    """An event that names an account: its signature and where the account is (a 32-byte word of
    the data, or an indexed topic)."""

    signature: str
    on: str                     # "ctoken" or "comptroller"
    data_word: int | None = None
    topic_index: int | None = None


@dataclass(frozen=True)
class ForkProfile:
    name: str
    # Comptroller.markets(cToken): the output layout and which fields hold what
    markets_signature: str
    collateral_factor_index: int
    liquidation_threshold_index: int | None   # None: liquidity uses the collateral factor (Compound)
    account_events: tuple[EventSpec, ...]
    # LiquidateBorrow: its signature and the data words of repayAmount and seizeTokens
    liquidate_event: str
    liquidate_repay_word: int
    liquidate_seize_word: int
    # Comptroller.minLiquidatableCollateral() (Venus isolated pools): liquidateBorrow is refused
    # unless the account's total (unweighted) collateral in USD mantissa exceeds it
    min_liquidatable_collateral_signature: str | None = None
    # liquidity term: "factor_first" = mul_(mul_(factor, exchangeRate), price) (Compound),
    # "price_first" = mul_(factor, mul_(exchangeRate, price)) (Venus isolated pools)
    weight_order: str = "factor_first"
    # protocol's seized cTokens: seize × share (Compound) or seize × share / incentive (Venus IL)
    seize_share_over_incentive: bool = False
    # seize only from markets the borrower entered (Venus IL preSeizeHook: MarketNotCollateral);
    # Compound's seizeAllowed does not check membership
    seize_requires_membership: bool = False
    # who may replace the Comptroller's oracle, and with which setter (replay on a fork)
    oracle_admin: tuple[str, str] = ("admin", "_setPriceOracle")
    # a Comptroller view(address market) -> bool: True lets anyone repay up to all of a borrow in
    # that market, with no shortfall (Compound's isDeprecated: collateral factor 0, borrowing
    # paused, reserve factor 1e18; Venus core's isForcedLiquidationEnabled); None: no such markets
    forced_liquidation_signature: str | None = None
    # markets(address)'s field holding the market's own liquidation incentive (Venus core, per
    # collateral market); None: the Comptroller's liquidationIncentiveMantissa() for every market
    liquidation_incentive_index: int | None = None
    # every event that changes what the reader reads of an account (cToken balance, borrow principal,
    # entered markets), besides the cTokens' ERC20 Transfer: incremental rescans read only the
    # accounts these name; () where the fork's are not declared (every account is read again)
    change_events: tuple[EventSpec, ...] = ()
    # who sets risk parameters (impersonated on a fork): the Comptroller's view naming its governance
    # account (Compound: admin(); Venus isolated pools: owner(), the timelock its AccessControlManager allows)
    governor_signature: str = "admin()(address)"
    # caps, in the underlying's smallest units: the supply-cap view (None: the fork has no supply caps)
    # and each setter (cTokens[], caps[]); the raw value meaning "no cap" per side (None: none does;
    # any other value bounds, 0 included: no new supply or borrowing at all)
    supply_cap_signature: str | None = None
    supply_cap_setter: str | None = None
    borrow_cap_setter: str = "_setMarketBorrowCaps(address[],uint256[])"
    supply_uncapped_raw: int | None = 0
    borrow_uncapped_raw: int = 0


# compound-finance/compound-protocol contracts/CTokenInterfaces.sol and ComptrollerInterface events
# (no indexed fields): Mint / Redeem name the minter / redeemer, Borrow the borrower, RepayBorrow
# (also emitted inside a liquidation) and LiquidateBorrow the borrower in word 1, MarketEntered /
# MarketExited the account in word 1. Seized cTokens move by Transfer.
COMPOUND_CHANGES = (EventSpec("Mint(address,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("Redeem(address,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("Borrow(address,uint256,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("RepayBorrow(address,address,uint256,uint256,uint256)", "ctoken", data_word=1),
                    EventSpec("LiquidateBorrow(address,address,uint256,address,uint256)", "ctoken", data_word=1),
                    EventSpec("MarketEntered(address,address)", "comptroller", data_word=1),
                    EventSpec("MarketExited(address,address)", "comptroller", data_word=1))

COMPOUND = ForkProfile(
    # compound-finance/compound-protocol contracts/Comptroller.sol: struct Market {bool isListed;
    # uint collateralFactorMantissa; mapping accountMembership; bool isComped}; events without indexed fields
    name="compound", markets_signature="markets(address)(bool,uint256,bool)", collateral_factor_index=1,
    liquidation_threshold_index=None,
    account_events=(EventSpec("Mint(address,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("Borrow(address,uint256,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("MarketEntered(address,address)", "comptroller", data_word=1)),
    liquidate_event="LiquidateBorrow(address,address,uint256,address,uint256)",
    liquidate_repay_word=2, liquidate_seize_word=4, forced_liquidation_signature="isDeprecated(address)(bool)",
    change_events=COMPOUND_CHANGES,
)

VENUS_ISOLATED = ForkProfile(
    # @venusprotocol/isolated-pools 4.4.0: ComptrollerStorage.sol struct Market {bool isListed;
    # uint256 collateralFactorMantissa; uint256 liquidationThresholdMantissa; mapping ...};
    # VTokenInterfaces.sol events with indexed accounts; Comptroller.sol getAccountLiquidity uses the
    # liquidation threshold, _getHypotheticalLiquiditySnapshot weights mul_(weight, mul_(er, price));
    # VToken._seize: protocolSeizeTokens = div_(mul_(seizeTokens, share), incentive)
    name="venus-isolated", markets_signature="markets(address)(bool,uint256,uint256)", collateral_factor_index=1,
    liquidation_threshold_index=2,
    account_events=(EventSpec("Mint(address,uint256,uint256,uint256)", "ctoken", topic_index=1),
                    EventSpec("Borrow(address,uint256,uint256,uint256)", "ctoken", topic_index=1),
                    EventSpec("MarketEntered(address,address)", "comptroller", topic_index=2)),
    liquidate_event="LiquidateBorrow(address,address,uint256,address,uint256)",
    liquidate_repay_word=0, liquidate_seize_word=1,
    min_liquidatable_collateral_signature="minLiquidatableCollateral()(uint256)",
    weight_order="price_first", seize_share_over_incentive=True, oracle_admin=("owner", "setPriceOracle"),
    seize_requires_membership=True,
    # Comptroller.sol setMarketSupplyCaps / setMarketBorrowCaps (_checkAccessAllowed: the
    # AccessControlManager's permission for the signature), preMintHook / preBorrowHook skip the
    # check at type(uint256).max ("unlimited"); a cap of 0 admits nothing
    governor_signature="owner()(address)", supply_cap_signature="supplyCaps(address)(uint256)",
    supply_cap_setter="setMarketSupplyCaps(address[],uint256[])",
    borrow_cap_setter="setMarketBorrowCaps(address[],uint256[])",
    supply_uncapped_raw=2**256 - 1, borrow_uncapped_raw=2**256 - 1,
)

# Events of forks that kept Compound's (no indexed fields; MarketEntered's account in data word 1)
COMPOUND_EVENTS = COMPOUND.account_events

VENUS_CORE = ForkProfile(
    # VenusProtocol/venus-protocol (commit ce5c8beb, 2025-09): the BNB chain core pool, a Diamond.
    # MarketFacet.markets(vToken) -> (isListed, collateralFactorMantissa, isVenus,
    # liquidationThresholdMantissa, liquidationIncentiveMantissa, poolId, isBorrowAllowed);
    # VTokenInterfaces: Mint/MintBehalf/Borrow with the account in data, FacetBase
    # MarketEntered(VToken indexed, address indexed); ComptrollerLens weights
    # mul_(mul_(factor, exchangeRate), price) with the liquidation threshold for liquidations;
    # PolicyFacet.liquidateBorrowAllowed: isForcedLiquidationEnabled lets anyone repay up to all of a
    # borrow. Not modelled here: VAI debt in the liquidity sum, and liquidations through the
    # Liquidator contract (liquidatorContract) with its treasury share.
    name="venus-core", markets_signature="markets(address)(bool,uint256,bool,uint256,uint256,uint96,bool)",
    collateral_factor_index=1, liquidation_threshold_index=3, liquidation_incentive_index=4,
    account_events=(EventSpec("Mint(address,uint256,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("MintBehalf(address,address,uint256,uint256,uint256)", "ctoken", data_word=1),
                    EventSpec("Borrow(address,uint256,uint256,uint256)", "ctoken", data_word=0),
                    EventSpec("MarketEntered(address,address)", "comptroller", topic_index=2)),
    liquidate_event="LiquidateBorrow(address,address,uint256,address,uint256)",
    liquidate_repay_word=2, liquidate_seize_word=4,
    forced_liquidation_signature="isForcedLiquidationEnabled(address)(bool)",
    # SetterFacet._setMarketSupplyCaps / _setMarketBorrowCaps (ensureAllowed through the
    # AccessControlManager; the Unitroller's admin() is the timelock); a supply cap of 0 is "minting
    # not allowed", a borrow cap of 0 "unlimited borrowing" (PolicyFacet.mintAllowed / borrowAllowed)
    supply_cap_signature="supplyCaps(address)(uint256)", supply_cap_setter="_setMarketSupplyCaps(address[],uint256[])",
    supply_uncapped_raw=None,
)

BENQI = ForkProfile(
    # Benqi-fi/BENQI-Smart-Contracts (commit e0cfd244) lending/: ComptrollerStorage struct Market
    # {isListed; collateralFactorMantissa; accountMembership; isQied} (Compound's layout),
    # QiTokenInterfaces events as Compound's, Comptroller liquidity mul_(mul_(cf, er), price),
    # QiToken seize share seize × protocolSeizeShare; no isDeprecated
    name="benqi", markets_signature="markets(address)(bool,uint256,bool)", collateral_factor_index=1,
    liquidation_threshold_index=None, account_events=COMPOUND_EVENTS,
    liquidate_event="LiquidateBorrow(address,address,uint256,address,uint256)",
    liquidate_repay_word=2, liquidate_seize_word=4,
)

MOONWELL = ForkProfile(
    # moonwell-fi/moonwell-contracts-v2 (commit 45866f4c) src/: ComptrollerStorage struct Market
    # {isListed; collateralFactorMantissa; accountMembership}: markets() returns two fields;
    # MTokenInterfaces events as Compound's; liquidity mul_(mul_(cf, er), price); MToken seize share
    # seize × protocolSeizeShare; liquidateBorrowAllowed without isDeprecated
    name="moonwell", markets_signature="markets(address)(bool,uint256)", collateral_factor_index=1,
    liquidation_threshold_index=None, account_events=COMPOUND_EVENTS,
    liquidate_event="LiquidateBorrow(address,address,uint256,address,uint256)",
    liquidate_repay_word=2, liquidate_seize_word=4,
)

PROFILES: dict[str, ForkProfile] = {p.name: p for p in (COMPOUND, VENUS_ISOLATED, VENUS_CORE, BENQI, MOONWELL)}


def profile(name: str | None) -> ForkProfile:
    key = name or "compound"
    if key not in PROFILES:
        raise ContagionError(f'compound-v2 deployment: unknown fork profile "{key}" (known: {", ".join(PROFILES)})')
    return PROFILES[key]
