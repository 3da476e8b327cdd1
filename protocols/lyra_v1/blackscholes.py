"""Lyra's BlackScholes library (``contracts/libraries/BlackScholes.sol``, @lyrafinance/protocol 0.1.3-alpha),
vectorised in float64.

The library works in 27-decimal fixed point; this module follows the same formulas and the same
approximations, so that prices match the contract to ~1e-12 relative wherever they are not tiny:
- time is annualised with a 365-day year (``_annualise``: ``secs / 31536000``), floored at one second;
- volatility is floored at 0.001% (``MIN_VOLATILITY``);
- N(x) is the Hart (1968) rational approximation of ``_stdNormalCDF`` (same coefficients, same split at
  ``SPLIT = 7.07106781186547``, continued fraction beyond, 0 / 1 beyond |x| > 37);
- call = max(S N(d1) - K e^{-rT} N(d2), 0), put = max(call + K e^{-rT} - S, 0) (``_optionPrices``: put by
  parity from the call, floored at 0);
- vega = S φ(d1) √T, standardised vega = vega × √(30 / days) / 100, days = floor(max(T, 7 days) / 1 day)
  (``_standardVega``).
Gamma is not in the library (Lyra caches no gamma): :func:`gamma` is the textbook φ(d1) / (S σ √T) with the
same d1, i.e. the spot derivative of the library's call delta ``N(d1)``.

Units: spot and strike in quote per base (USD), ``tte_sec`` in seconds, ``vol`` and ``rate`` as fractions
per year (0.8 = 80%). Every function broadcasts over numpy arrays.
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_YEAR = 31_536_000.0
MIN_T_ANNUALISED = 1.0 / SECONDS_PER_YEAR
MIN_VOLATILITY = 1e-4 / 1.0  # PRECISE_UNIT / 10000 in the library: 0.0001 as a fraction
VEGA_STANDARDISATION_MIN_DAYS_SEC = 7 * 86_400
SQRT_TWOPI = 2.506628274631000502415765285
SPLIT = 7.07106781186547
_N = (220.206867912376, 221.213596169931, 112.079291497871, 33.912866078383, 6.37396220353165,
      0.700383064443688, 0.0352624965998911)
_M = (440.413735824752, 793.826512519948, 637.333633378831, 296.564248779674, 86.7807322029461,
      16.064177579207, 1.75566716318264, 0.0883883476483184)


def annualise(tte_sec: np.ndarray | float) -> np.ndarray:
    """``_annualise``: seconds to years of 365 days."""
    return np.asarray(tte_sec, dtype=np.float64) / SECONDS_PER_YEAR


def std_normal(x: np.ndarray) -> np.ndarray:
    """``_stdNormal``: the standard normal density φ(x)."""
    return np.exp(-x * (x / 2.0)) / SQRT_TWOPI


def std_normal_cdf(x: np.ndarray) -> np.ndarray:
    """``_stdNormalCDF``: Hart's rational approximation of N(x), as the library computes it."""
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    e = np.exp(-z * (z / 2.0))
    numerator = ((((((_N[6] * z + _N[5]) * z + _N[4]) * z + _N[3]) * z + _N[2]) * z + _N[1]) * z + _N[0])
    denominator = (((((((_M[7] * z + _M[6]) * z + _M[5]) * z + _M[4]) * z + _M[3]) * z + _M[2]) * z + _M[1]) * z
                   + _M[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        near = numerator / denominator * e
        f = z + 1.0 / (z + 2.0 / (z + 3.0 / (z + 4.0 / (z + 0.65))))
        far = e / (f * SQRT_TWOPI)
    tail = np.where(z <= 37.0, np.where(z < SPLIT, near, far), 0.0)
    return np.where(x <= 0, tail, 1.0 - tail)


def d1_d2(tte_sec, vol, spot, strike, rate) -> tuple[np.ndarray, np.ndarray]:
    """``_d1d2`` with the library's floors on time (one second) and volatility."""
    t = np.maximum(annualise(tte_sec), MIN_T_ANNUALISED)
    vol = np.maximum(np.asarray(vol, dtype=np.float64), MIN_VOLATILITY)
    vt_sqrt = vol * np.sqrt(t)
    log = np.log(np.asarray(spot, dtype=np.float64) / np.asarray(strike, dtype=np.float64))
    v2t = (vol * vol / 2.0 + rate) * t
    d1 = (log + v2t) / vt_sqrt
    return d1, d1 - vt_sqrt


def option_prices(tte_sec, vol, spot, strike, rate) -> tuple[np.ndarray, np.ndarray]:
    """``optionPrices``: (call, put) in quote per contract."""
    spot = np.asarray(spot, dtype=np.float64)
    strike = np.asarray(strike, dtype=np.float64)
    d1, d2 = d1_d2(tte_sec, vol, spot, strike, rate)
    t = annualise(tte_sec)  # _optionPrices discounts with the unfloored time
    strike_pv = strike * np.exp(-np.asarray(rate, dtype=np.float64) * t)
    spot_nd1 = spot * std_normal_cdf(d1)
    strike_nd2 = strike_pv * std_normal_cdf(d2)
    call = np.maximum(spot_nd1 - strike_nd2, 0.0)
    put = np.maximum(call + strike_pv - spot, 0.0)
    return call, put


def delta(tte_sec, vol, spot, strike, rate) -> tuple[np.ndarray, np.ndarray]:
    """``delta``: (call delta N(d1), put delta N(d1) - 1) per contract, in base units."""
    d1, _ = d1_d2(tte_sec, vol, spot, strike, rate)
    call_delta = std_normal_cdf(d1)
    return call_delta, call_delta - 1.0


def vega(tte_sec, vol, spot, strike, rate) -> np.ndarray:
    """``vega``: S φ(d1) √T, quote per contract per 1.00 of volatility."""
    d1, _ = d1_d2(tte_sec, vol, spot, strike, rate)
    return np.sqrt(annualise(tte_sec)) * std_normal(d1) * np.asarray(spot, dtype=np.float64)


def std_vega(tte_sec, vol, spot, strike, rate) -> np.ndarray:
    """``_standardVega``: vega × √(30 / days) / 100 with days = floor(max(tte, 7 days) / 1 day)."""
    days = np.floor(np.maximum(np.asarray(tte_sec, dtype=np.float64), VEGA_STANDARDISATION_MIN_DAYS_SEC) / 86_400)
    return vega(tte_sec, vol, spot, strike, rate) * np.sqrt(30.0 / days) / 100.0


def gamma(tte_sec, vol, spot, strike, rate) -> np.ndarray:
    """Γ = φ(d1) / (S σ √T): change of the call (and put) delta per 1 quote of spot, per contract."""
    d1, _ = d1_d2(tte_sec, vol, spot, strike, rate)
    t = np.maximum(annualise(tte_sec), MIN_T_ANNUALISED)
    vol = np.maximum(np.asarray(vol, dtype=np.float64), MIN_VOLATILITY)
    return std_normal(d1) / (np.asarray(spot, dtype=np.float64) * vol * np.sqrt(t))
