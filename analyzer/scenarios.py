"""Shock scenarios for the cascade engine: what moves first, and how the market then behaves.

A scenario is built in Python (:class:`ShockScenario`), read from TOML (:func:`load_scenario`), or
assembled from CLI arguments (:func:`parse_price_shock`, :func:`parse_iv_shock`,
:func:`scenario_from_cli`). TOML form, every key optional::

    name = "weth-crash"
    seed = 0                          # recorded in cascade.json; the engine itself is deterministic
    max_rounds = 50
    tolerance = 1e-6                  # relative price change below which a round is "quiet"
    oracle_lag = 0                    # rounds: 1 means oracles see last round's prices
    sell_through = 1.0                # fraction of seized collateral liquidators sell on venues
    keeper_gas_usd = 0.0              # gas cost of one liquidation step, USD
    swap_gas_usd = 0.0                # gas cost of one swap, USD: a routed sale uses a venue only if it pays
    price_impact = true               # false: flows do not move prices (static liquidation pass)
    cex_arbitrage = false             # true: every asset with pools also trades on a centralised exchange
                                      # (centralised_depth.toml) and arbitrageurs pull its pools back to
                                      # the CEX price each round (analyzer/engine/arbitrage.py)
    spot_vol_beta = 1.0               # vol spiral: dIV = -beta * dS/S (vol points per unit return)
    iv_per_contract = 0.0             # vol points added per option contract bought back
    round_seconds = 12.0              # interest accrued each round, seconds (default: none, or
    round_blocks = 1.0                # beside a replay its measured time); blocks for per-block protocols

    [price]                           # exogenous (CEX) shock: venues are arbitraged to it too
    WETH = "-30%"                     # or -0.30
    [venue_price]                     # DEX-only shock: venues move, exogenous paths do not
    CRV = "-50%"
    [iv]                              # implied-vol shock per underlying, vol points (+0.25 = +25)
    ETH = 0.25
    [oracle]                          # per asset: "venue" (default) or "exogenous"
    CRV = "exogenous"
    [[forced_sale]]                   # close a named account's positions at round 0 (collateral sold)
    account = "0xabc..."
    protocol = "aave-v3"              # optional: only its positions in that protocol
    [venues.sUSD]                     # a price-impact model for an asset the snapshot has no venue for
    model = "sqrt_law"                # (analyzer.engine.impact.build_venues: snapshot venues win)
    sigma = 0.01
    daily_volume = 5e6

Assets are named by symbol or address; the engine resolves them against the snapshot and names
the scenario field in its error when one is unknown.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from analyzer.errors import ContagionError
from analyzer.inputs import read_toml

ORACLE_SOURCES = ("venue", "exogenous")
MAX_ROUNDS = 10_000        # a cascade that has not settled by then is a model error, not a result
MAX_IV_SHOCK = 100.0       # vol points as a fraction: +10000 vol
_SHOCK = re.compile(r"^\s*([^=\s]+)\s*=\s*([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class ForcedSale:
    """Sell all collateral of ``account`` (in ``protocol`` only when given) at round 0."""

    account: str
    protocol: str = ""


@dataclass
class ShockScenario:
    """An initial shock and the behaviour of the market after it (see the module docstring).

    ``price_shocks`` / ``venue_shocks``: relative moves (-0.3 = -30%) by asset symbol or address;
    ``iv_shocks``: absolute vol points (0.25 = +25 vol) by underlying symbol or address.
    """

    name: str = "scenario"
    price_shocks: dict[str, float] = field(default_factory=dict)
    venue_shocks: dict[str, float] = field(default_factory=dict)
    iv_shocks: dict[str, float] = field(default_factory=dict)
    oracle_sources: dict[str, str] = field(default_factory=dict)
    forced_sales: list[ForcedSale] = field(default_factory=list)
    venue_models: dict[str, dict] = field(default_factory=dict)
    oracle_lag: int = 0
    sell_through: float = 1.0
    keeper_gas_usd: float = 0.0
    swap_gas_usd: float = 0.0
    price_impact: bool = True
    cex_arbitrage: bool = False
    spot_vol_beta: float = 1.0
    iv_per_contract: float = 0.0
    max_rounds: int = 50
    tolerance: float = 1e-6
    max_keeper_steps: int = 32
    seed: int = 0
    # interest accrued per round, seconds and blocks (for per-block protocols: Compound V2); None:
    # beside a replay, the replay's measured time per round (analyzer.fidelity.engine_scenario), else none
    round_seconds: float | None = None
    round_blocks: float | None = None
    # per protocol, each round's (seconds, blocks) of interest before its liquidations, as a replay
    # measured them (ReplayResult.interest_clock); rounds past the list accrue the uniform values
    round_clock: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate("scenario")

    def validate(self, where: str) -> ShockScenario:
        for table in ("price_shocks", "venue_shocks"):
            for asset, move in getattr(self, table).items():
                if not (-1.0 < float(move) < 100.0):
                    raise ContagionError(f"{where}: {table}.{asset} = {move}: a relative move must be within (-100%, +10000%)")
        for asset, points in self.iv_shocks.items():
            if not abs(float(points)) <= MAX_IV_SHOCK:
                raise ContagionError(f"{where}: iv.{asset} = {points}: an IV shock must be finite and within "
                                     f"±{MAX_IV_SHOCK:g} (in vol as a fraction: 0.25 = +25 vol points)")
        for name in ("sell_through", "keeper_gas_usd", "spot_vol_beta", "iv_per_contract", "tolerance"):
            if not math.isfinite(float(getattr(self, name))):
                raise ContagionError(f"{where}: {name} = {getattr(self, name)} must be a finite number")
        for asset, source in self.oracle_sources.items():
            if source not in ORACLE_SOURCES:
                raise ContagionError(f'{where}: oracle.{asset} = "{source}": expected one of {", ".join(ORACLE_SOURCES)}')
        checks = (("oracle_lag", self.oracle_lag >= 0), ("sell_through", 0.0 <= self.sell_through <= 1.0),
                  ("keeper_gas_usd", self.keeper_gas_usd >= 0), ("swap_gas_usd", self.swap_gas_usd >= 0),
                  ("max_rounds", 1 <= self.max_rounds <= MAX_ROUNDS),
                  ("tolerance", self.tolerance >= 0), ("spot_vol_beta", self.spot_vol_beta >= 0),
                  ("iv_per_contract", self.iv_per_contract >= 0), ("max_keeper_steps", 1 <= self.max_keeper_steps <= MAX_ROUNDS),
                  ("seed", self.seed >= 0), ("round_seconds", (self.round_seconds or 0.0) >= 0),
                  ("round_blocks", (self.round_blocks or 0.0) >= 0),
                  ("round_clock", all(math.isfinite(x) and x >= 0 for clock in self.round_clock.values()
                                      for entry in clock for x in entry)))
        for name, ok in checks:
            if not ok:
                raise ContagionError(f"{where}: {name} = {getattr(self, name)} is out of range")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (recorded in cascade.json)."""
        out = asdict(self)
        out["forced_sales"] = [asdict(sale) for sale in self.forced_sales]
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any], where: str = "scenario") -> ShockScenario:
        """The scenario :meth:`to_dict` recorded (a document's ``scenarios``), validated again."""
        known = {f.name for f in fields(cls)}
        if not isinstance(record, dict) or set(record) - known:
            extra = sorted(set(record) - known) if isinstance(record, dict) else [type(record).__name__]
            raise ContagionError(f"{where}: not a recorded scenario (unexpected {extra[0]!r})")
        raw = dict(record)
        try:
            raw["forced_sales"] = [ForcedSale(**sale) for sale in raw.get("forced_sales", [])]
            raw["round_clock"] = {k: [(float(s), float(b)) for s, b in clock]
                                  for k, clock in raw.get("round_clock", {}).items()}
            scenario = cls(**raw)
        except (TypeError, ValueError) as exc:
            raise ContagionError(f"{where}: not a recorded scenario ({exc})") from None
        return scenario.validate(where)


def parse_relative(value: Any, where: str) -> float:
    """``"-30%"`` or ``-0.3`` -> -0.3."""
    if isinstance(value, bool):
        raise ContagionError(f"{where}: expected a number or a percentage like \"-30%\", got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ContagionError(f"{where}: {value!r} is not a finite number")
        return float(value)
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ContagionError(f"{where}: expected a number or a percentage like \"-30%\", got {value!r}") from None
    if not math.isfinite(number):
        raise ContagionError(f"{where}: {value!r} is not a finite number")
    return number


def parse_price_shock(text: str) -> tuple[str, float]:
    """``"WETH=-30%"`` -> ``("WETH", -0.3)``; a bare number is a fraction (``WETH=-0.3``)."""
    match = _SHOCK.match(text)
    if not match:
        raise ContagionError(f'--shock "{text}": expected ASSET=MOVE, e.g. WETH=-30% or WETH=-0.3')
    asset, number, percent = match.groups()
    move = float(number) / 100.0 if percent else float(number)
    if not math.isfinite(move):
        raise ContagionError(f'--shock "{text}": not a finite number')
    if move <= -1.0:
        raise ContagionError(f'--shock "{text}": a price cannot fall by 100% or more')
    if move >= 100.0:
        raise ContagionError(f'--shock "{text}": a rise must stay below +10000% (x101)')
    return asset, move


def parse_iv_shock(text: str) -> tuple[str, float]:
    """``"ETH=+25"`` -> ``("ETH", 0.25)``: vol points, as traders quote them (``ETH=+25%`` too)."""
    match = _SHOCK.match(text)
    if not match:
        raise ContagionError(f'--iv "{text}": expected UNDERLYING=VOLPOINTS, e.g. ETH=+25')
    asset, number, _ = match.groups()
    points = float(number) / 100.0
    if not abs(points) <= MAX_IV_SHOCK:
        raise ContagionError(f'--iv "{text}": an IV shock must be finite and within ±{MAX_IV_SHOCK * 100:g} vol points')
    return asset, points


def _table(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ContagionError(f"{where}: [{key}] must be a table of ASSET = value")
    return value


_SCALARS: dict[str, type] = {"name": str, "oracle_lag": int, "sell_through": float, "keeper_gas_usd": float,
                             "swap_gas_usd": float,
                             "price_impact": bool, "cex_arbitrage": bool, "spot_vol_beta": float, "iv_per_contract": float,
                             "max_rounds": int, "tolerance": float, "max_keeper_steps": int, "seed": int,
                             "round_seconds": float, "round_blocks": float}
_TABLES = {"price", "venue_price", "iv", "oracle", "forced_sale", "venues", "description"}


def scenario_from_dict(raw: dict[str, Any], where: str = "scenario") -> ShockScenario:
    """A scenario from its TOML-shaped dict; errors name ``where`` and the field."""
    unknown = set(raw) - set(_SCALARS) - _TABLES
    if unknown:
        raise ContagionError(f"{where}: unknown field {sorted(unknown)[0]!r} (known: {', '.join(sorted(set(_SCALARS) | _TABLES))})")
    kwargs: dict[str, Any] = {}
    for key, kind in _SCALARS.items():
        if key in raw:
            value = raw[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ContagionError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
            kwargs[key] = value
    kwargs["price_shocks"] = {k: parse_relative(v, f"{where}: price.{k}") for k, v in _table(raw, "price", where).items()}
    kwargs["venue_shocks"] = {k: parse_relative(v, f"{where}: venue_price.{k}")
                              for k, v in _table(raw, "venue_price", where).items()}
    kwargs["iv_shocks"] = {k: parse_relative(v, f"{where}: iv.{k}") for k, v in _table(raw, "iv", where).items()}
    kwargs["oracle_sources"] = {k: str(v) for k, v in _table(raw, "oracle", where).items()}
    models = _table(raw, "venues", where)
    if not all(isinstance(m, dict) and "model" in m for m in models.values()):
        raise ContagionError(f"{where}: [venues.ASSET] tables need a model (sqrt_law, linear, constant_product)")
    kwargs["venue_models"] = {k: dict(v) for k, v in models.items()}
    sales = raw.get("forced_sale", [])
    if not isinstance(sales, list) or not all(isinstance(s, dict) and "account" in s for s in sales):
        raise ContagionError(f"{where}: [[forced_sale]] entries need an account")
    kwargs["forced_sales"] = [ForcedSale(str(s["account"]), str(s.get("protocol", ""))) for s in sales]
    try:
        scenario = ShockScenario(**kwargs)
    except ContagionError as exc:
        raise ContagionError(str(exc).replace("scenario:", f"{where}:", 1)) from None
    return scenario


def load_scenario(path: str | Path) -> ShockScenario:
    """Read a shock scenario TOML file (see the module docstring)."""
    path = Path(path)
    raw = read_toml(path, "scenario file")
    raw.setdefault("name", path.stem)
    return scenario_from_dict(raw, where=path.name)


def scenario_from_cli(shocks: list[str] | None = None, ivs: list[str] | None = None,
                      scenario_file: str | Path | None = None) -> ShockScenario:
    """``--scenario FILE`` (optional) overlaid by ``--shock`` and ``--iv`` arguments."""
    scenario = load_scenario(scenario_file) if scenario_file else ShockScenario()
    for text in shocks or []:
        asset, move = parse_price_shock(text)
        scenario.price_shocks[asset] = move
    for text in ivs or []:
        asset, points = parse_iv_shock(text)
        scenario.iv_shocks[asset] = points
    if shocks and scenario.name == "scenario":
        scenario.name = ",".join(shocks)
    return scenario.validate("command line")
