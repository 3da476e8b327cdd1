"""Pool maths shared by venue plugins: what two protocols' pools compute alike lives here, in the
core, so that no plugin imports another (see :mod:`protocols.base`). Names no protocol.

- :mod:`analyzer.amm.concentrated_liquidity`: the exact integer tick, sqrt-price and swap maths
  of concentrated-liquidity pools (TickMath, SqrtPriceMath, SwapMath, TickBitmap).
- :mod:`analyzer.amm.venue`: the venue model that simulates such a pool to the wei.
- :mod:`analyzer.amm.layout`: how a devnet lays liquidity out in such a pool (start price, ranges).
"""
