"""The StableSwap venue model: a Curve-style pool simulated in wei (:mod:`protocols.stableswap.swap_math`).

Its ``venues.params`` (written by :mod:`protocols.stableswap.reader`; big integers as strings):
``coins``, ``decimals``, ``balances``, ``rates`` (per coin, as the pool scales balances), ``amp``
(A × 100), ``fee`` and ``admin_fee`` (1e10). A sale is ``exchange(asset → quote)`` of the whole
tokens truncated to wei; a purchase is the smallest quote input whose ``exchange`` pays at least
the asset asked (Curve's plain pools have no exact-output swap: what an aggregator does).
"""

from __future__ import annotations

import math

from analyzer.engine.roots import bracket_root
from analyzer.engine.venues import TradeResult, VenueModel
from analyzer.errors import ContagionError
from protocols.stableswap import swap_math as ss


def _float_d(xp: list[float], ann: float) -> float:
    s = sum(xp)
    n = len(xp)
    d = s
    for _ in range(255):
        d_p = d
        for x in xp:
            d_p = d_p * d / (x * n)
        d_prev = d
        d = (ann * s + d_p * n) * d / ((ann - 1) * d + (n + 1) * d_p)
        if abs(d - d_prev) <= 1e-12 * d:
            break
    return d


def _float_y(i: int, j: int, x: float, xp: list[float], ann: float, d: float) -> float:
    n = len(xp)
    c, s_ = d, 0.0
    for k in range(n):
        if k == j:
            continue
        x_k = x if k == i else xp[k]
        s_ += x_k
        c = c * d / (x_k * n)
    c = c * d / (ann * n)
    b = s_ + d / ann
    y = d
    for _ in range(255):
        y_prev = y
        y = (y * y + c) / (2 * y + b - d)
        if abs(y - y_prev) <= 1e-12 * y:
            break
    return y


def _marginal(i: int, j: int, xp: list[float], ann: float, d: float) -> float:
    """Units of coin j (xp) per unit of coin i (xp) at the margin: (ann + P/x_i) / (ann + P/x_j)."""
    n = len(xp)
    p = d
    for x in xp:
        p = p * d / (x * n)
    return (ann + p / xp[i]) / (ann + p / xp[j])


class StableSwapVenue(VenueModel):
    """A Curve-style StableSwap pool, one coin (``asset``) against another (``quote``)."""

    model = "stableswap"

    def __init__(self, asset: str, quote: str, params: dict, quote_price_usd: float = 1.0, venue: str = ""):
        super().__init__(asset, quote, quote_price_usd, venue)
        where = f"venue {venue or asset} (stableswap)"
        try:
            coins = [str(c).lower() for c in params["coins"]]
            self.decimals = [int(d) for d in params["decimals"]]
            self.state = ss.PoolState([int(b) for b in params["balances"]], [int(r) for r in params["rates"]],
                                      int(params["amp"]), int(params["fee"]), int(params["admin_fee"]))
            self.i, self.j = coins.index(asset.lower()), coins.index(quote.lower())
        except (KeyError, TypeError, ValueError) as exc:
            raise ContagionError(f"{where}: params need coins (with the asset and the quote), decimals, balances, "
                                 f"rates, amp, fee, admin_fee ({exc!r})") from None
        if not all(b > 0 for b in self.state.balances):
            raise ContagionError(f"{where}: every balance must be positive")

    @classmethod
    def from_params(cls, asset, quote, params, *, asset_price_usd, quote_price_usd, venue, where):
        return cls(asset, quote, dict(params), quote_price_usd, venue)

    @property
    def fee_fraction(self) -> float:
        return self.state.fee / ss.FEE_DENOMINATOR

    def _xp_float(self) -> list[float]:
        return [float(x) for x in self.state.xp()]

    def _to_whole(self, coin: int, xp_units: float) -> float:
        """xp units of ``coin`` in whole tokens."""
        return xp_units * ss.PRECISION / self.state.rates[coin] / 10 ** self.decimals[coin]

    def mid_price(self) -> float:
        xp = self._xp_float()
        ann = self.state.amp * len(xp) / ss.A_PRECISION
        per_xp = _marginal(self.i, self.j, xp, ann, _float_d(xp, ann))
        return self._to_whole(self.j, per_xp) / self._to_whole(self.i, 1.0) * self.quote_price_usd

    def _input_for(self, want: int) -> int:
        """Smallest quote wei whose exchange pays at least ``want`` asset wei. The output grows with
        the input and is nearly linear in it, so the bracket [low, high] (low pays less than
        ``want``, high at least) closes in a few secant steps, each followed by a probe just past
        the root on the other side (twice the step's estimated error), where bisection alone takes
        one exchange per bit of the answer; a step that does not halve the bracket is followed by a
        bisection."""
        if want >= self.state.balances[self.i]:
            raise ss.SwapMathError("the pool cannot pay out")
        paid = lambda dx: self.state.exchange_amounts(self.j, self.i, dx)[0]   # noqa: E731
        low, paid_low = 0, 0
        high = max(1, want * self.state.rates[self.i] // self.state.rates[self.j])
        paid_high = paid(high)
        while paid_high < want:
            low, paid_low, high = high, paid_high, high * 2
            if high > 1 << 200:
                raise ss.SwapMathError("the pool cannot pay out")
            paid_high = paid(high)
        bisect = False
        while high - low > 1:
            width = high - low
            if bisect:
                x = (low + high) // 2
            else:
                x = min(max(low + (want - paid_low) * width // max(1, paid_high - paid_low), low + 1), high - 1)
            got = paid(x)
            if got >= want:
                high, paid_high = x, got
                probe = x - 2 * ((got - want) * (x - low) // max(1, got - paid_low)) - 1
            else:
                low, paid_low = x, got
                probe = x + 2 * ((want - got) * (high - x) // max(1, paid_high - got)) + 1
            if low < probe < high:
                got = paid(probe)
                if got >= want:
                    high, paid_high = probe, got
                else:
                    low, paid_low = probe, got
            bisect = high - low > width // 2
        return high

    def trade(self, asset_amount: float) -> TradeResult:
        before = self.mid_price()
        raw = int(abs(asset_amount) * 10 ** self.decimals[self.i])
        if raw == 0:
            return TradeResult(0.0, 0.0, before, before)
        sell = asset_amount > 0
        try:
            if sell:
                asset_raw, quote_raw = raw, self.state.exchange(self.i, self.j, raw)
            else:
                quote_raw = self._input_for(raw)
                asset_raw = self.state.exchange(self.j, self.i, quote_raw)
        except ss.SwapMathError as exc:
            raise ContagionError(f"venue {self.venue or self.asset}: cannot {'sell' if sell else 'buy'} "
                                 f"{abs(asset_amount):g} ({exc})") from None
        asset_units = asset_raw / 10 ** self.decimals[self.i]
        quote_units = quote_raw / 10 ** self.decimals[self.j]
        return self._result(asset_units, quote_units, before) if sell else self._result(quote_units, asset_units, before)

    def depth(self, fraction: float, sell: bool = True) -> float:
        """Asset units (fees ignored, D held) that move the marginal price by ``fraction``."""
        xp = self._xp_float()
        ann = self.state.amp * len(xp) / ss.A_PRECISION
        d = _float_d(xp, ann)
        start = _marginal(self.i, self.j, xp, ann, d)
        target = start * ((1.0 - fraction) if sell else (1.0 + fraction))
        if target <= 0:
            return math.inf

        def price_at(x_i: float) -> float:
            moved = list(xp)
            moved[self.i] = x_i
            moved[self.j] = _float_y(self.i, self.j, x_i, xp, ann, d)
            return _marginal(self.i, self.j, moved, ann, d)

        def above_target(log_x_i: float) -> float:
            # above the target: the asset's balance must grow (both for a sale and a purchase)
            return price_at(math.exp(log_x_i)) - target

        x0 = xp[self.i]
        low, high = (math.log(x0), math.log(x0) + 40.0) if sell else (math.log(x0) - 40.0, math.log(x0))
        gap_low, gap_high = above_target(low), above_target(high)   # the price falls as the asset's balance grows
        if gap_low <= 0 or gap_high >= 0:       # the target is at an end of the range
            return self._to_whole(self.i, abs(math.exp(low if gap_low <= 0 else high) - x0))
        low, high = bracket_root(above_target, low, high, gap_low, gap_high, 1e-16)
        return self._to_whole(self.i, abs(math.exp(0.5 * (low + high)) - x0))

    def copy(self) -> StableSwapVenue:
        clone = object.__new__(StableSwapVenue)
        clone.__dict__.update(self.__dict__)
        clone.state = self.state.copy()
        return clone
