"""What each Aave V3 release does in ``GenericLogic`` and ``LiquidationLogic``: one profile per
version, each fact read from that release's source.

Sources: ``@aave/core-v3`` 1.19.3 (3.0, the npm package) and aave-dao/aave-v3-origin at the tags
v3.1.0 … v3.6.0 (3.6.0 is also the npm package ``@aave-dao/aave-v3-origin``), files
``GenericLogic.sol``, ``LiquidationLogic.sol``, ``ValidationLogic.sol``:

- ``floor_average_threshold`` (3.0-3.4): HF = ``percentMul(totalCollateral, avgLT)`` wadDiv debt,
  avgLT = Σ(value·LT) / totalCollateral in integer bps (floored). 3.5+: HF =
  ``wadDiv(Σ value·LT, debt) / 100_00``, no floor of the average.
- ``collateral_needs_reserve_threshold`` (3.0-3.5): collateral counts (and can be seized) only
  where the reserve's own threshold is non-zero; 3.6 counts every reserve flagged as collateral, at
  its e-mode threshold when the user's category bitmap has it (an asset with reserve threshold 0 is
  collateral only inside an e-mode).
- ``min_full_close_usd`` (3.3+, ``MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD`` = $2,000): 100% of the
  reserve's debt unless HF > 0.95 and both the collateral and the debt leg are ≥ $2,000; then at
  most 50% of the account's *total* debt. Before 3.3: 50% of the reserve's debt, 100% at HF ≤ 0.95.
- ``min_leftover_usd`` (3.3+, ``MIN_LEFTOVER_BASE`` = $1,000): a liquidation that takes neither all
  the debt of the reserve nor all the collateral of the reserve must leave ≥ $1,000 of both
  (``MustNotLeaveDust``).
- ``deficit`` (3.3+): when the seized collateral is all the account's collateral
  (``hasNoCollateralLeft``), every remaining debt is burnt into the reserves' deficits.
- ``grace_period`` (3.1+): no liquidation touching a reserve whose ``liquidationGracePeriodUntil``
  ≥ block.timestamp.
- ``debt_rounds_up`` (3.5+): debt in base currency is ``mulDivCeil`` (floor before).
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import ContagionError


@dataclass(frozen=True)
class Profile:
    name: str
    floor_average_threshold: bool
    collateral_needs_reserve_threshold: bool
    min_full_close_usd: float = 0.0       # 0: the pre-3.3 close factor
    min_leftover_usd: float = 0.0         # 0: no dust rule
    deficit: bool = False
    grace_period: bool = False
    debt_rounds_up: bool = False
    close_factor: float = 0.5             # DEFAULT_LIQUIDATION_CLOSE_FACTOR
    close_factor_hf_threshold: float = 0.95  # CLOSE_FACTOR_HF_THRESHOLD


_V33 = dict(min_full_close_usd=2000.0, min_leftover_usd=1000.0, deficit=True, grace_period=True)
PROFILES: dict[str, Profile] = {
    "3.0": Profile("3.0", True, True),
    "3.1": Profile("3.1", True, True, grace_period=True),
    "3.2": Profile("3.2", True, True, grace_period=True),
    "3.3": Profile("3.3", True, True, **_V33),
    "3.4": Profile("3.4", True, True, **_V33),
    "3.5": Profile("3.5", False, True, debt_rounds_up=True, **_V33),
    "3.6": Profile("3.6", False, False, debt_rounds_up=True, **_V33),
}


def profile(version: str, where: str) -> Profile:
    if version not in PROFILES:
        raise ContagionError(f'{where}: no Aave V3 rule profile for version "{version}" '
                             f'(known: {", ".join(PROFILES)})')
    return PROFILES[version]
