"""The ``[protocols.morpho-blue]`` table of a devnet scenario, validated (errors name the field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.errors import ContagionError
from protocols.morpho_blue.contracts import PROTOCOL


@dataclass(frozen=True)
class MarketSpec:
    name: str
    collateral: str             # asset symbol, or "" when the collateral is a vault share
    collateral_vault: str       # vault name when the collateral is its share
    loan: str
    lltv_wad: int


@dataclass(frozen=True)
class VaultSpec:
    name: str
    asset: str
    caps: dict[str, float]      # market -> cap (whole tokens), in supply-queue order
    deposits: dict[str, float]  # label -> whole tokens


@dataclass(frozen=True)
class VaultBorrower:
    label: str
    market: str
    deposit: float
    health: float


@dataclass
class MorphoConfig:
    markets: dict[str, MarketSpec]
    vaults: dict[str, VaultSpec]
    suppliers: dict[str, dict[str, float]] = field(default_factory=dict)
    vault_borrowers: list[VaultBorrower] = field(default_factory=list)
    utilization: tuple[float, float] = (0.5, 0.85)
    health: tuple[float, float] = (1.01, 2.0)
    hf_power: float = 2.0
    borrowers_per_market: int = 4


def _fail(scenario, where: str, message: str) -> ContagionError:
    return ContagionError(f"{scenario.path.name}: protocols.{PROTOCOL}.{where}: {message}")


def _pair(scenario, table: dict, key: str, default: tuple[float, float]) -> tuple[float, float]:
    value = table.get(key, list(default))
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value) or value[0] > value[1]):
        raise _fail(scenario, key, f"expected [low, high], got {value!r}")
    return float(value[0]), float(value[1])


def _amounts(scenario, where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                                              for v in value.values()):
        raise _fail(scenario, where, f"expected a table of positive amounts, got {value!r}")
    return {str(k): float(v) for k, v in value.items()}


def parse_config(scenario) -> MorphoConfig:
    table = scenario.protocol(PROTOCOL)
    if not table:
        raise ContagionError(f"{scenario.path.name}: no [protocols.{PROTOCOL}] table")
    vault_tables = table.get("vaults", {})
    if not isinstance(vault_tables, dict):
        raise _fail(scenario, "vaults", "expected one table per vault")
    markets = {}
    for name, spec in (table.get("markets") or {}).items():
        collateral, _, loan = str(name).partition("/")
        lltv = spec.get("lltv") if isinstance(spec, dict) else None
        if isinstance(lltv, bool) or not isinstance(lltv, int | float) or not 0 < lltv < 1:
            raise _fail(scenario, f"markets.{name}.lltv", f"expected a fraction in (0, 1), got {lltv!r}")
        scenario.asset(loan, f"protocols.{PROTOCOL}.markets.{name}")
        vault = collateral.removeprefix("vault:") if collateral.startswith("vault:") else ""
        if vault and vault not in vault_tables:
            raise _fail(scenario, f"markets.{name}", f"vault {vault!r} is not in [vaults] (known: {', '.join(vault_tables)})")
        if not vault:
            scenario.asset(collateral, f"protocols.{PROTOCOL}.markets.{name}")
        markets[name] = MarketSpec(name, "" if vault else collateral, vault, loan, round(lltv * 10**18))
    if not markets:
        raise _fail(scenario, "markets", "expected at least one market")
    vaults = {}
    for name, spec in vault_tables.items():
        asset = scenario.asset(str(spec.get("asset")), f"protocols.{PROTOCOL}.vaults.{name}.asset").symbol
        caps = _amounts(scenario, f"vaults.{name}.caps", spec.get("caps"))
        for market in caps:
            if market not in markets or markets[market].loan != asset:
                raise _fail(scenario, f"vaults.{name}.caps", f"{market!r} is not a market lending {asset}")
        vaults[name] = VaultSpec(name, asset, caps, _amounts(scenario, f"vaults.{name}.deposits", spec.get("deposits", {})))
    suppliers = {}
    for market, lenders in (table.get("suppliers") or {}).items():
        if market not in markets:
            raise _fail(scenario, f"suppliers.{market}", "not a market")
        suppliers[market] = _amounts(scenario, f"suppliers.{market}", lenders)
    borrowers = []
    for n, spec in enumerate(table.get("vault_borrowers") or []):
        market = spec.get("market")
        if market not in markets or not markets[market].collateral_vault:
            raise _fail(scenario, f"vault_borrowers[{n}].market", f"{market!r} is not a vault-share collateral market")
        health = spec.get("health")
        if isinstance(health, bool) or not isinstance(health, int | float) or health <= 1:
            raise _fail(scenario, f"vault_borrowers[{n}].health", f"expected a number above 1, got {health!r}")
        borrowers.append(VaultBorrower(str(spec.get("label")), market, float(spec.get("deposit", 0)), float(health)))
    count = table.get("borrowers_per_market", 4)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _fail(scenario, "borrowers_per_market", f"expected a count, got {count!r}")
    health = _pair(scenario, table, "health", (1.01, 2.0))
    if health[0] <= 1:
        raise _fail(scenario, "health", "the lowest health must be above 1 (Morpho refuses the borrow otherwise)")
    return MorphoConfig(markets, vaults, suppliers, borrowers, _pair(scenario, table, "utilization", (0.5, 0.85)),
                        health, float(table.get("hf_power", 2.0)), count)
