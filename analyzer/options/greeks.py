"""Black-Scholes greeks of option books, vectorised, in the units a dealer desk reports.

Model: Black (1976) on the underlying's forward ``F`` (the venues quote each option's
``underlying_price`` as the forward used for its mark IV), zero rate, no dividend, so spot and
forward greeks coincide: ``d1 = (ln(F/K) + σ²τ/2) / (σ√τ)``, ``d2 = d1 − σ√τ``.

Per contract of one unit of underlying (Hull, *Options, Futures and Other Derivatives*, ch. 19;
Haug, *The Complete Guide to Option Pricing Formulas*, 2nd ed., §2.3 for vanna and charm):

- delta: ``N(d1)`` (call), ``N(d1) − 1`` (put)
- gamma: ``φ(d1) / (F σ √τ)`` (both)
- vanna ``∂Δ/∂σ``: ``−φ(d1) d2 / σ`` (both)
- charm ``∂Δ/∂t`` (calendar time, τ falling): ``φ(d1) d2 / (2τ)`` (both, zero rate)

Dollar measures for a position of ``q`` units (``q > 0`` long), the convention of gamma-exposure
("GEX") dashboards:

- ``gex_usd_per_pct = q Γ F² / 100``: USD of underlying the position's delta hedge must trade per
  1% move of the underlying (positive: long gamma, the hedge sells rallies and buys dips);
- ``vanna_usd_per_vol_pt = q · vanna · F / 100``: USD change of delta per +1 vol point;
- ``charm_usd_per_day = q · charm · F / 365``: USD change of delta per calendar day.

Example
-------
>>> import numpy as np
>>> g = bs_greeks(np.array([True]), np.array([3000.0]), np.array([3000.0]), np.array([30 / 365]),
...               np.array([0.6]))
>>> round(float(g.delta[0]), 4), round(float(g.gamma[0]) * 1e4, 4)
(0.5343, 7.7022)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

SECONDS_PER_YEAR = 365.0 * 86400.0
MIN_YEARS = 1.0 / (365.0 * 24.0)     # one hour: an expiring option's greeks stay finite
MIN_IV = 1e-4


@dataclass(frozen=True)
class Greeks:
    """Per-contract greeks, arrays of one shape (see the module docstring for units)."""

    delta: np.ndarray
    gamma: np.ndarray   # per USD of the underlying
    vanna: np.ndarray   # per unit of volatility (1.0 = 100 vol points)
    charm: np.ndarray   # per year of calendar time


def _pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def bs_greeks(is_call: np.ndarray, forward: np.ndarray, strike: np.ndarray, years: np.ndarray,
              iv: np.ndarray) -> Greeks:
    """Black-76 greeks at zero rate for every option (arrays broadcast together)."""
    forward = np.maximum(np.asarray(forward, float), 1e-12)
    years = np.maximum(np.asarray(years, float), MIN_YEARS)
    vol = np.maximum(np.asarray(iv, float), MIN_IV)
    root = vol * np.sqrt(years)
    d1 = (np.log(forward / np.asarray(strike, float)) + 0.5 * root * root) / root
    d2 = d1 - root
    pdf = _pdf(d1)
    n1 = ndtr(d1)
    return Greeks(delta=np.where(is_call, n1, n1 - 1.0), gamma=pdf / (forward * root),
                  vanna=-pdf * d2 / vol, charm=pdf * d2 / (2.0 * years))


def dollar_exposures(position: np.ndarray, forward: np.ndarray, greeks: Greeks) -> dict[str, np.ndarray]:
    """Per-row dollar gamma, vanna and charm of ``position`` units (see the module docstring)."""
    return {"gex_usd_per_pct": position * greeks.gamma * forward * forward / 100.0,
            "vanna_usd_per_vol_pt": position * greeks.vanna * forward / 100.0,
            "charm_usd_per_day": position * greeks.charm * forward / 365.0,
            "delta_usd": position * greeks.delta * forward}
