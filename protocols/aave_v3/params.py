"""Aave V3 Ethereum risk parameters used to configure the devnet, and the mainnet address book.

Risk parameters are those of the Aave V3 Ethereum market as listed by Aave governance (the
``AaveV3Ethereum`` payloads of the BGD config engine; values as of 2024). They were typed from
that record, not read from a chain here: the devnet applies them through ``PoolConfigurator``
and the reader reads them back from the chain, so every check runs against what is deployed.

Units: ``ltv``, ``liquidation_threshold``, ``liquidation_bonus`` (10500 = +5%), ``reserve_factor``,
``liquidation_protocol_fee`` (share of the bonus) in basis points; caps in whole tokens (0 = none);
``debt_ceiling_usd`` in whole USD (the configurator takes it with 2 decimals).
"""

from __future__ import annotations

from dataclasses import dataclass

RAY = 10**27


@dataclass(frozen=True)
class ReserveParams:
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    reserve_factor: int
    liquidation_protocol_fee: int
    supply_cap: int
    borrow_cap: int
    borrowable: bool = True
    emode_category: int = 0
    debt_ceiling_usd: int = 0          # > 0: an isolated asset
    borrowable_in_isolation: bool = False
    rate_strategy: str = "volatile"


# Aave V3 Ethereum (main market) listings.
RESERVES: dict[str, ReserveParams] = {
    "WETH": ReserveParams(8050, 8300, 10500, 1500, 1000, 1_800_000, 1_400_000, emode_category=1,
                          rate_strategy="weth"),
    "wstETH": ReserveParams(7850, 8100, 10600, 500, 1000, 1_100_000, 12_000, emode_category=1,
                            rate_strategy="lst"),
    "WBTC": ReserveParams(7300, 7800, 10500, 2000, 1000, 43_000, 28_000),
    "USDC": ReserveParams(7500, 7800, 10450, 1000, 1000, 2_000_000_000, 1_400_000_000,
                          borrowable_in_isolation=True, rate_strategy="stable"),
    "USDT": ReserveParams(7400, 7600, 10450, 1000, 1000, 1_000_000_000, 900_000_000,
                          borrowable_in_isolation=True, rate_strategy="stable"),
    "DAI": ReserveParams(6300, 7700, 10500, 2500, 1000, 338_000_000, 271_000_000,
                         borrowable_in_isolation=True, rate_strategy="stable"),
    "LINK": ReserveParams(5300, 6800, 10700, 2000, 1000, 15_000_000, 13_000_000),
    "CRV": ReserveParams(3500, 4100, 10830, 3500, 1000, 62_500_000, 7_700_000, borrowable=False,
                         debt_ceiling_usd=5_000_000),
    # The rest of the market's listings, for a mainnet-sized devnet (scenario mainnet-scale): risk
    # parameters rounded from the same record, caps left open (0) so that a bulk population fits.
    "rETH": ReserveParams(7450, 7700, 10750, 1500, 1000, 0, 0, rate_strategy="lst"),
    "cbETH": ReserveParams(7450, 7700, 10750, 1500, 1000, 0, 0, rate_strategy="lst"),
    "weETH": ReserveParams(7250, 7500, 10750, 4500, 1000, 0, 0, rate_strategy="lst"),
    "osETH": ReserveParams(7250, 7500, 10750, 500, 1000, 0, 0, rate_strategy="lst"),
    "ETHx": ReserveParams(7450, 7700, 10750, 1500, 1000, 0, 0, rate_strategy="lst"),
    "cbBTC": ReserveParams(7300, 7800, 10750, 2000, 1000, 0, 0),
    "tBTC": ReserveParams(7300, 7800, 10750, 2000, 1000, 0, 0),
    "LBTC": ReserveParams(7000, 7500, 10850, 5000, 1000, 0, 0, borrowable=False),
    "AAVE": ReserveParams(6600, 7300, 10750, 0, 1000, 0, 0, borrowable=False),
    "UNI": ReserveParams(6500, 7700, 11000, 2000, 1000, 0, 0),
    "MKR": ReserveParams(6500, 7000, 10850, 2000, 1000, 0, 0),
    "LDO": ReserveParams(4000, 5000, 10900, 2000, 1000, 0, 0),
    "SNX": ReserveParams(4900, 6500, 10850, 3500, 1000, 0, 0),
    "BAL": ReserveParams(5700, 5900, 10830, 2000, 1000, 0, 0),
    "ENS": ReserveParams(3900, 4900, 10800, 2000, 1000, 0, 0),
    "ONEINCH": ReserveParams(5700, 6700, 10750, 2000, 1000, 0, 0),
    "RPL": ReserveParams(0, 0, 0, 2000, 1000, 0, 0),
    "FXS": ReserveParams(0, 0, 0, 2000, 1000, 0, 0),
    "KNC": ReserveParams(0, 0, 0, 2000, 1000, 0, 0),
    "STG": ReserveParams(0, 0, 0, 2000, 1000, 0, 0),
    "FRAX": ReserveParams(0, 0, 0, 2000, 1000, 0, 0, rate_strategy="stable"),
    "LUSD": ReserveParams(0, 0, 0, 1000, 1000, 0, 0, rate_strategy="stable"),
    "crvUSD": ReserveParams(0, 0, 0, 1000, 1000, 0, 0, rate_strategy="stable"),
    "PYUSD": ReserveParams(0, 0, 0, 2000, 1000, 0, 0, rate_strategy="stable"),
    "GHO": ReserveParams(0, 0, 0, 1000, 1000, 0, 0, rate_strategy="stable"),
    "sDAI": ReserveParams(7500, 7800, 10450, 1000, 1000, 0, 0, borrowable=False, rate_strategy="stable"),
    "USDe": ReserveParams(7200, 7500, 10850, 1000, 1000, 0, 0, rate_strategy="stable"),
    "sUSDe": ReserveParams(7200, 7500, 10850, 2000, 1000, 0, 0, borrowable=False, rate_strategy="stable"),
    "EURC": ReserveParams(7500, 7800, 10500, 1000, 1000, 0, 0, rate_strategy="stable"),
}


@dataclass(frozen=True)
class EModeParams:
    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str


# E-mode category 1 on Aave V3 Ethereum: "ETH correlated" (WETH, wstETH), no category oracle.
EMODE_CATEGORIES: dict[int, EModeParams] = {1: EModeParams(9300, 9500, 10100, "ETH correlated")}

# ---- v3.6 (aave-v3-origin): the same listings, reshaped as Ethereum core runs them today ----
# Since 3.6 an asset may be collateral only inside an e-mode: reserve threshold 0, a category's
# threshold > 0 (Ethereum core lists USDe/PT tokens this way). Here USDT and LINK are such assets.
RESERVE_OVERRIDES_V36: dict[str, dict] = {
    "USDT": {"ltv": 0, "liquidation_threshold": 0, "liquidation_bonus": 0},
    "LINK": {"ltv": 0, "liquidation_threshold": 0, "liquidation_bonus": 0},
}


def reserves(version: str) -> dict[str, ReserveParams]:
    """The reserve listings of the devnet market of ``version`` ("3.0" or "3.6")."""
    if version == "3.0":
        return RESERVES
    from dataclasses import replace
    return {s: replace(r, emode_category=0, **RESERVE_OVERRIDES_V36.get(s, {})) for s, r in RESERVES.items()}


@dataclass(frozen=True)
class EModeCategory:
    """A 3.2+ e-mode category: parameters plus the assets of its bitmaps (``PoolConfigurator``
    ``setEModeCategory``, ``setAssetCollateralInEMode``, ``setAssetBorrowableInEMode``,
    ``setAssetLtvzeroInEMode``)."""

    ltv: int
    liquidation_threshold: int
    liquidation_bonus: int
    label: str
    collateral: tuple[str, ...]
    borrowable: tuple[str, ...]
    ltvzero: tuple[str, ...] = ()   # collateral that counts for the health factor, not for borrowing


# Shaped like Ethereum core's: LST families, stablecoin families, categories sharing an asset,
# collateral only inside an e-mode (USDT, LINK), an ltvzero asset (wstETH in 8).
EMODE_CATEGORIES_V36: dict[int, EModeCategory] = {
    1: EModeCategory(9300, 9500, 10100, "ETH correlated", ("WETH", "wstETH"), ("WETH",)),
    2: EModeCategory(9400, 9600, 10100, "wstETH/WETH", ("wstETH",), ("WETH", "wstETH")),
    3: EModeCategory(9000, 9300, 10200, "Stablecoins", ("USDC", "DAI", "USDT"), ("USDC", "USDT", "DAI")),
    4: EModeCategory(9200, 9400, 10150, "USDT/USDC", ("USDT",), ("USDC",)),
    5: EModeCategory(6500, 7200, 10700, "LINK/WETH", ("LINK",), ("WETH",)),
    6: EModeCategory(6000, 7000, 10750, "LINK/Stablecoins", ("LINK",), ("USDC", "USDT")),
    7: EModeCategory(7800, 8200, 10500, "BTC/Stablecoins", ("WBTC",), ("USDC", "USDT", "DAI")),
    8: EModeCategory(8200, 8500, 10500, "ETH/Stablecoins", ("WETH", "wstETH"), ("USDC", "USDT", "DAI"),
                     ltvzero=("wstETH",)),
    9: EModeCategory(8000, 8400, 10500, "ETH+BTC/Stablecoins", ("WETH", "WBTC"), ("USDC", "DAI")),
}


@dataclass(frozen=True)
class RateStrategy:
    """``DefaultReserveInterestRateStrategy`` constructor arguments, as fractions (scaled to ray)."""

    optimal_usage_ratio: float
    base_variable_borrow_rate: float
    variable_rate_slope1: float
    variable_rate_slope2: float

    def constructor_args(self, provider: str) -> tuple:
        ray = lambda fraction: round(fraction * 10**6) * 10**21  # noqa: E731 -- fractions to 6 places
        # stable borrowing is disabled on every reserve: its slopes and offsets are zero
        return (provider, ray(self.optimal_usage_ratio), ray(self.base_variable_borrow_rate),
                ray(self.variable_rate_slope1), ray(self.variable_rate_slope2), 0, 0, 0, 0,
                ray(0.2))

    def interest_rate_data(self) -> tuple[int, int, int, int]:
        """``IDefaultInterestRateStrategyV2.InterestRateData`` (3.2+): bps, uint16 / uint32s."""
        bps = lambda fraction: round(fraction * 10**4)  # noqa: E731
        return (bps(self.optimal_usage_ratio), bps(self.base_variable_borrow_rate),
                bps(self.variable_rate_slope1), bps(self.variable_rate_slope2))


RATE_STRATEGIES: dict[str, RateStrategy] = {
    "weth": RateStrategy(0.90, 0.0, 0.027, 0.80),
    "lst": RateStrategy(0.45, 0.0, 0.07, 3.00),
    "stable": RateStrategy(0.90, 0.0, 0.055, 0.60),
    "volatile": RateStrategy(0.45, 0.0, 0.07, 3.00),
}
