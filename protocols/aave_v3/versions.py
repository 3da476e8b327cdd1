"""Which Aave V3 a pool runs, from ``POOL_REVISION`` on chain, and what changed between versions.

Revisions, read from each release's ``PoolInstance.POOL_REVISION`` (aave-dao/aave-v3-origin tags
v3.1.0 … v3.6.0; ``@aave/core-v3`` 1.19.3's ``Pool.POOL_REVISION`` is 0x1, and the 3.0.x pools
deployed before 3.1 count 1 to 3). The repository's 3.7 (revision 11) changes the rounding of the
protocol fee (``percentMulCeil``): it is read, and refused by the rules as a version without a
profile, rather than given the 3.6 rule.
"""

from __future__ import annotations

from analyzer.errors import ContagionError

REVISION_VERSIONS = {1: "3.0", 2: "3.0", 3: "3.0", 4: "3.1", 5: "3.2", 6: "3.2", 7: "3.3", 8: "3.4",
                     9: "3.5", 10: "3.6", 11: "3.7"}
KNOWN = ("3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7")


def version_of_revision(revision: int, pool: str) -> str:
    if revision not in REVISION_VERSIONS:
        raise ContagionError(f"aave-v3 pool {pool}: POOL_REVISION {revision} is not a known Aave V3 release "
                             f"(known revisions: {', '.join(f'{r} = v{v}' for r, v in REVISION_VERSIONS.items())})")
    return REVISION_VERSIONS[revision]


def at_least(version: str, other: str) -> bool:
    """``version`` >= ``other`` ("3.10" sorts after "3.9")."""
    return tuple(int(x) for x in version.split(".")) >= tuple(int(x) for x in other.split("."))


def has_emode_bitmaps(version: str) -> bool:
    """3.2+: categories own collateral / borrowable bitmaps; reserve bits 168-175 are deprecated."""
    return at_least(version, "3.2")


def has_stable_debt(version: str) -> bool:
    """Up to 3.1; from 3.2 the legacy field of ``getReserveData`` is a mock (``MOCK_STABLE_DEBT``)."""
    return not at_least(version, "3.2")


def has_grace_period(version: str) -> bool:
    """3.1+: ``Pool.getLiquidationGracePeriod(asset)``."""
    return at_least(version, "3.1")


def has_deficit(version: str) -> bool:
    """3.3+: ``Pool.getReserveDeficit(asset)``."""
    return at_least(version, "3.3")


def has_ltvzero_bitmap(version: str) -> bool:
    """3.6+: ``Pool.getEModeCategoryLtvzeroBitmap(id)``."""
    return at_least(version, "3.6")


def checked(version: str, where: str) -> str:
    if version not in KNOWN:
        raise ContagionError(f'{where}: Aave V3 version "{version}" is not known (known: {", ".join(KNOWN)})')
    return version
