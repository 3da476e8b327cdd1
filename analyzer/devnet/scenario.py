"""Devnet scenario files: which assets exist, at what price, and which positions to seed.

A scenario is TOML under ``fixtures/scenarios/``::

    name = "mainnet-like"
    seed = 7                         # every random population derives from it
    description = "..."

    [assets.WETH]                    # every asset the devnet deploys (a DevnetERC20 with a feed)
    decimals = 18
    price_usd = 3000.0               # the asset's price feed starts here (8 decimals)
    iv = 0.65                        # optional: implied volatility of an option underlying
    # ratio_to = "WETH"              # optional: priced as a ratio × that asset's feed (an LST)

    oracles = "chainlink"            # optional top-level key: "chainlink" (mainnet's shape,
                                     # the default) or "plain" (settable PriceFeeds)

    [protocols.aave-v3]              # one table per protocol; each plugin validates its own
    ...

Accounts are named by labels (``"whale-1"``, ``"pop-17"``); a label's address is derived from
it (:func:`account_address`), so the same label is the same account in every protocol, which is
how a scenario builds cross-protocol positions. The devnet acts for them by impersonation.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak, to_checksum_address

from analyzer.errors import ContagionError
from analyzer.paths import data_path

SCENARIOS_DIR = data_path("fixtures", "scenarios")


def account_address(label: str) -> str:
    """The devnet address of the account called ``label`` (keccak of a namespaced label)."""
    return to_checksum_address(keccak(text=f"defi-contagion/account/{label}")[-20:])


@dataclass(frozen=True)
class AssetSpec:
    symbol: str
    decimals: int
    price_usd: float
    iv: float | None = None
    ratio_to: str | None = None      # an LST: priced as a fixed ratio × this asset's feed


ORACLE_STACKS = ("chainlink", "plain")


@dataclass
class DevnetScenario:
    name: str
    seed: int
    path: Path
    text: str
    assets: dict[str, AssetSpec]
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    oracle_stack: str = "chainlink"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def protocol(self, name: str) -> dict[str, Any]:
        return self.protocols.get(name, {})

    def asset(self, symbol: str, where: str) -> AssetSpec:
        """The asset ``symbol`` or an error naming ``where`` it was referenced."""
        if symbol not in self.assets:
            raise ContagionError(f'{self.path.name}: {where}: asset "{symbol}" is not in [assets] '
                                 f'(known: {", ".join(self.assets)})')
        return self.assets[symbol]


def resolve(name_or_path: str | Path) -> Path:
    """A scenario by name (``mainnet-like``) or by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        path = SCENARIOS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml")))
        raise ContagionError(f"scenario {name_or_path} not found (known: {known or 'none'})")
    return path


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ContagionError(f"{where}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ContagionError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def load(name_or_path: str | Path) -> DevnetScenario:
    """Load and validate a scenario file; errors name the file and the field."""
    path = resolve(name_or_path)
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"{path.name}: not valid TOML ({exc})") from None
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ContagionError(f"{path.name}: name: expected a non-empty string")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ContagionError(f"{path.name}: seed: expected an integer, got {seed!r}")
    raw_assets = data.get("assets")
    if not isinstance(raw_assets, dict) or not raw_assets:
        raise ContagionError(f"{path.name}: [assets]: expected at least one asset table")
    assets = {}
    for symbol, spec in raw_assets.items():
        where = f"{path.name}: assets.{symbol}"
        if not isinstance(spec, dict):
            raise ContagionError(f"{where}: expected a table")
        decimals = spec.get("decimals")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 36:
            raise ContagionError(f"{where}.decimals: expected an integer 0..36, got {decimals!r}")
        price = _number(spec.get("price_usd"), f"{where}.price_usd", positive=True)
        iv = spec.get("iv")
        ratio_to = spec.get("ratio_to")
        if ratio_to is not None and (not isinstance(ratio_to, str) or ratio_to not in raw_assets
                                     or ratio_to == symbol or not isinstance(raw_assets[ratio_to], dict)
                                     or raw_assets[ratio_to].get("ratio_to") is not None):
            raise ContagionError(f"{where}.ratio_to: expected another asset with its own feed, got {ratio_to!r}")
        assets[symbol] = AssetSpec(symbol, decimals, price,
                                   None if iv is None else _number(iv, f"{where}.iv", positive=True), ratio_to)
    protocols = data.get("protocols", {})
    if not isinstance(protocols, dict) or not all(isinstance(v, dict) for v in protocols.values()):
        raise ContagionError(f"{path.name}: [protocols]: expected one table per protocol")
    oracle_stack = data.get("oracles", "chainlink")
    if oracle_stack not in ORACLE_STACKS:
        raise ContagionError(f"{path.name}: oracles: expected one of {', '.join(ORACLE_STACKS)}, got {oracle_stack!r}")
    unknown = set(data) - {"name", "seed", "description", "assets", "protocols", "oracles"}
    if unknown:
        raise ContagionError(f"{path.name}: unknown top-level keys {sorted(unknown)}")
    return DevnetScenario(name=name, seed=seed, path=path, text=text, assets=assets,
                          protocols=protocols, description=str(data.get("description", "")),
                          oracle_stack=oracle_stack)
