"""Monte Carlo price shocks: joint log-normal moves from a covariance, given or estimated, seeded.

Model: the log returns ``r`` of the assets over one horizon are multivariate normal with mean 0
and covariance ``Σ``; the relative price move is ``exp(r) − 1`` (so a price never goes negative),
floored at −99% because the engine refuses a fall of 100%. ``Σ`` is

* given: ``assets = ["WETH", "WBTC"]`` and ``covariance = [[…], […]]`` (log returns², per horizon), or
* estimated from a price-history CSV (``history = "prices.csv"``): a first column of dates or
  timestamps and one column of prices per asset (header = symbol), rows in time order. The sample
  covariance of consecutive log returns is scaled by ``horizon`` (rows per horizon, default 1:
  square-root-of-time, i.e. returns assumed i.i.d.). ``assets`` may select columns.

``scale`` (default 1) multiplies the standard deviations (stress: ``scale = 3`` for a 3-sigma world).
Draws use ``numpy.random.default_rng(seed)`` and a Cholesky factor of ``Σ`` (an eigen-decomposition
when ``Σ`` is only semi-definite), so the same seed gives the same paths on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer.errors import ContagionError

MAX_FALL = -0.99
MAX_PATHS = 200_000     # the sweep's scenario limit (analyzer/sweep/grid.py) bounds them too
MAX_ASSETS = 1_000
KEYS = {"paths", "seed", "history", "horizon", "assets", "covariance", "scale"}


def _positive_number(config: dict, key: str, where: str) -> float:
    value = config.get(key, 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e300:
        raise ContagionError(f"{where}: {key} must be a positive finite number, got {value!r}")
    return float(value)


def check_config(config: dict[str, Any], where: str) -> None:
    """Refuse a [montecarlo] table of the wrong shape or size before any path is drawn."""
    unknown = set(config) - KEYS
    if unknown:
        raise ContagionError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(KEYS))})")
    paths = config.get("paths", 1000)
    if isinstance(paths, bool) or not isinstance(paths, int) or paths < 1:
        raise ContagionError(f"{where}: paths must be a positive integer, got {paths!r}")
    if paths > MAX_PATHS:
        raise ContagionError(f"{where}: {paths:,} paths; the limit is {MAX_PATHS:,}")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise ContagionError(f"{where}: seed must be an integer within 0..2**63-1, got {seed!r}")
    for key in ("horizon", "scale"):
        _positive_number(config, key, where)
    assets = config.get("assets")
    if assets is not None and (not isinstance(assets, list) or not all(isinstance(a, str) for a in assets)
                               or not 0 < len(assets) <= MAX_ASSETS):
        raise ContagionError(f"{where}: assets must be a list of 1..{MAX_ASSETS} symbols")
    if "history" in config and not isinstance(config["history"], str):
        raise ContagionError(f"{where}: history must be a file name")
    covariance = config.get("covariance")
    if covariance is not None:
        rows = covariance if isinstance(covariance, list) else []
        size = len(assets or [])
        if (len(rows) != size or not all(isinstance(r, list) and len(r) == size for r in rows)
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < 1e300
                           for r in rows for v in r)):
            raise ContagionError(f"{where}: covariance must be a {size}×{size} table of finite numbers "
                                 "(one row per asset)")


def estimate_covariance(history: str | Path, assets: list[str] | None = None,
                        horizon: float = 1.0) -> tuple[list[str], np.ndarray]:
    """(symbols, Σ) of log returns per ``horizon`` rows from a price-history CSV (see module docstring)."""
    path = Path(history)
    if not path.is_file():
        raise ContagionError(f"{path}: price history not found")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ContagionError(f"{path}: not a readable CSV ({exc})") from None
    columns = list(frame.columns[1:])
    if assets:
        missing = [a for a in assets if a not in columns]
        if missing:
            raise ContagionError(f'{path}: no price column "{missing[0]}" (columns: {", ".join(map(str, columns))})')
        columns = list(assets)
    if not columns:
        raise ContagionError(f"{path}: expected a date column then one price column per asset")
    prices = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if len(prices) < 3 or not np.all(np.isfinite(prices)) or np.any(prices <= 0):
        raise ContagionError(f"{path}: need at least 3 rows of positive prices in every column {columns}")
    returns = np.diff(np.log(prices), axis=0)
    return [str(c) for c in columns], np.atleast_2d(np.cov(returns, rowvar=False, ddof=1)) * float(horizon)


def _factor(cov: np.ndarray, where: str) -> np.ndarray:
    """L with L Lᵀ = Σ: Cholesky, or the symmetric square root for a semi-definite Σ."""
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
        raise ContagionError(f"{where}: covariance is not symmetric")
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(cov)
        if values.min() < -1e-12 * max(1.0, abs(values).max()):
            raise ContagionError(f"{where}: covariance is not positive semi-definite "
                                 f"(smallest eigenvalue {values.min():.3g})") from None
        return vectors * np.sqrt(np.clip(values, 0.0, None))


def covariance_from_config(config: dict[str, Any], where: str) -> tuple[list[str], np.ndarray]:
    assets = config.get("assets")
    if config.get("history"):
        symbols, cov = estimate_covariance(config["history"], assets, _positive_number(config, "horizon", where))
    elif assets is not None and config.get("covariance") is not None:
        cov = np.asarray(config["covariance"], dtype=float)
        symbols = [str(a) for a in assets]
        if cov.shape != (len(symbols), len(symbols)):
            raise ContagionError(f"{where}: covariance must be {len(symbols)}×{len(symbols)} (one row per asset), "
                                 f"got shape {cov.shape}")
    else:
        raise ContagionError(f'{where}: give history = "prices.csv", or assets = [...] and covariance = [[...]]')
    return symbols, cov * _positive_number(config, "scale", where) ** 2


def draw_shocks(config: dict[str, Any], where: str = "montecarlo") -> list[dict[str, float]]:
    """``paths`` seeded joint shocks ``{symbol: relative move}`` (see the module docstring)."""
    check_config(config, where)
    paths = config.get("paths", 1000)
    symbols, cov = covariance_from_config(config, where)
    rng = np.random.default_rng(int(config.get("seed", 0)))
    log_returns = rng.standard_normal((paths, len(symbols))) @ _factor(cov, where).T
    with np.errstate(over="ignore"):
        moves = np.expm1(log_returns)
    if not np.isfinite(moves).all():
        raise ContagionError(f"{where}: a drawn move overflows (a log return of {np.abs(log_returns).max():.3g}): "
                             "the covariance (of log returns per horizon) is beyond any market's")
    moves = np.maximum(moves, MAX_FALL)
    # rounded so the spec fingerprint (JSON) and the engine see exactly the same floats
    return [dict(zip(symbols, np.round(row, 12).tolist(), strict=True)) for row in moves]
