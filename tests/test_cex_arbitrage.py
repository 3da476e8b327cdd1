"""Per-round CEX arbitrage (analyzer/engine/arbitrage.py): a thin constant-product pool pushed off
the CEX price is traded back to the edge of its fee band, to the amount an independent solution of
Uniswap V2's formulas (and the square-root law's, for a CEX of finite depth) gives."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy.optimize import brentq

from analyzer.engine.arbitrage import arbitrage
from analyzer.engine.impact import AssetVenues, ConstantProduct, SqrtLaw
from analyzer.engine.prepare import prepare, start_state
from analyzer.model import to_table
from analyzer.scenarios import ShockScenario, scenario_from_dict
from tests.conftest import requires_anvil
from tests.test_engine_closed_form import RULES, USDC, WETH, aave_snapshot

X, Y, FEE = 2_000.0, 3_600_000.0, 0.003          # the thin pool: 2,000 ETH / 3.6M USDC
KEEP = 1.0 - FEE


def _market(daily_volume: float) -> tuple[ConstantProduct, SqrtLaw, AssetVenues]:
    pool = ConstantProduct("WETH", "USDC", X, Y, FEE, venue="pool")
    cex = SqrtLaw("WETH", "", Y / X, sigma=0.035, daily_volume=daily_volume, venue="cex")
    return pool, cex, AssetVenues("WETH", [pool, cex])


def test_a_sold_down_pool_is_bought_back_to_the_fee_band_of_a_deep_cex():
    pool, cex, venues = _market(daily_volume=1e30)        # the CEX price does not move (k ~ 1e-17)
    pool.trade(300.0)                                     # a keeper's sale into the pool alone
    x, y, price = pool.reserve_asset, pool.reserve_quote, cex.mid_price()
    trades = arbitrage(venues)
    # by hand: buying u leaves w = x − u and y' = y + y·u / (w·(1 − f)) (getAmountIn, fee on input);
    # the arbitrage stops at y'/w = (1 − f)·P: (1 − f)²·P·w² + f·y·w − y·x = 0
    w = (-FEE * y + math.sqrt((FEE * y) ** 2 + 4 * KEEP ** 2 * price * y * x)) / (2 * KEEP ** 2 * price)
    assert len(trades) == 1 and trades[0][0] == 0
    assert -trades[0][1] == pytest.approx(x - w, rel=1e-9)
    assert pool.mid_price() == pytest.approx(KEEP * cex.mid_price(), rel=1e-9)
    assert pool.mid_price() > (Y / X) * 0.98          # pulled back from 12.6% below to the band's edge


def test_a_bought_up_pool_is_sold_back_to_the_fee_band_of_a_deep_cex():
    pool, cex, venues = _market(daily_volume=1e30)
    pool.trade(-250.0)
    x, y, price = pool.reserve_asset, pool.reserve_quote, cex.mid_price()
    arbitrage(venues)
    # selling u: y' = y·x / (x + u(1 − f)), x' = x + u; stop at y'/x' = P / (1 − f):
    # (1 − f)·u² + x(2 − f)·u + x² − (1 − f)·x·y/P = 0
    a, b, c = KEEP, x * (1 + KEEP), x * x - KEEP * x * y / price
    u = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    assert pool.reserve_asset == pytest.approx(x + u, rel=1e-9)
    assert pool.mid_price() == pytest.approx(cex.mid_price() / KEEP, rel=1e-9)


def test_the_arbitrage_moves_a_cex_of_finite_depth_by_the_square_root_law():
    pool, cex, venues = _market(daily_volume=20_000.0)    # $36M a day: the arbitrage moves the CEX too
    pool.trade(300.0)
    x, y, k, p0 = pool.reserve_asset, pool.reserve_quote, cex.k, cex.price0_usd
    arbitrage(venues)

    def gap(u: float) -> float:      # the pool's price over (1 − f) minus the CEX's after selling u there
        pool_mid = (y + y * u / ((x - u) * KEEP)) / (x - u)
        return pool_mid / KEEP - p0 * (1.0 - k * math.sqrt(u))

    u = brentq(gap, 0.0, x * 0.5, xtol=1e-14, rtol=1e-15)
    assert X + 300.0 - pool.reserve_asset == pytest.approx(u, rel=1e-9)
    assert cex.flow == pytest.approx(u, rel=1e-9)
    assert cex.mid_price() < p0 * (1 - 1e-4)          # the CEX gave way
    assert pool.mid_price() == pytest.approx(KEEP * cex.mid_price(), rel=1e-9)


def test_a_pool_inside_its_band_is_left_alone():
    pool, cex, venues = _market(daily_volume=1e30)
    pool.trade(0.5)                                       # 0.05% below the CEX: inside the 0.3% band
    assert arbitrage(venues) == []
    assert pool.reserve_asset == X + 0.5


def test_scenarios_read_cex_arbitrage():
    assert scenario_from_dict({"cex_arbitrage": True}).cex_arbitrage
    assert not ShockScenario().cex_arbitrage


def test_each_round_of_a_cascade_leaves_every_pool_in_its_band_around_the_cex():
    """WETH liquidations sell into WETH's thin pool and CEX; an LST quoted in WETH falls with WETH in
    its LST/WETH pool while the LST's own CEX does not: with ``cex_arbitrage`` arbitrageurs buy the
    LST back from the pool after each round, so every pool ends each round within its fee band of
    its asset's CEX (without the arbitrage the LST pool stays below its band)."""
    from analyzer.engine.cascade import run_round

    lst_fee = 0.0001
    snapshot = aave_snapshot({"USDC": USDC, "WETH": {**WETH, "price": Y / X}, "LST": {**WETH, "price": 1.1 * Y / X}},
                             {"alice": [("WETH", "collateral", 1_000.0), ("USDC", "debt", 1_250_000.0)]},
                             pools={"WETH": (X, Y, FEE)})
    address = dict(zip(snapshot.assets["symbol"], snapshot.assets["address"], strict=True))
    lst_pool = {"protocol": "test", "venue": "pool-LST", "asset": address["LST"], "quote_asset": address["WETH"],
                "model": "constant_product",
                "params": json.dumps({"reserve_asset": 10_000.0, "reserve_quote": 11_000.0, "fee": lst_fee})}
    snapshot.venues = to_table("venues", pd.concat([snapshot.venues, pd.DataFrame([lst_pool])], ignore_index=True))
    scenario = ShockScenario(price_shocks={"WETH": -0.20}, cex_arbitrage=True, max_rounds=6)
    prep = prepare(snapshot, rules=RULES)
    state = start_state(prep, scenario)
    index = {str(s): i for i, s in enumerate(prep.symbols)}
    markets = {symbol: state.venues[index[symbol]].venues for symbol in ("WETH", "LST")}
    for pool, cex in markets.values():
        assert cex.centralised and not pool.centralised
        assert cex.mid_price() == pytest.approx(pool.mid_price(), rel=1e-12)   # placed at the pool after the shock
    liquidated = 0.0
    for _ in range(scenario.max_rounds):
        record = run_round(prep, state, scenario)
        liquidated += float(record.liquidated_usd.sum())
        for pool, cex in markets.values():
            keep = 1.0 - pool.fee_fraction
            assert keep * cex.mid_price() * (1 - 1e-9) <= pool.mid_price() <= cex.mid_price() / keep * (1 + 1e-9)
        if record.quiet:
            break
    assert liquidated > 0
    assert markets["LST"][0].reserve_asset < 10_000.0      # LST was bought out of its pool


@pytest.mark.slow
@requires_anvil
def test_the_replay_sends_the_engines_arbitrage_as_real_swaps(devnet):
    """Issue 7's fidelity criteria with ``cex_arbitrage`` on the devnet's lending protocols and every
    venue kind: the replay routes keepers' sales across the pools and the CEX models, sends each
    arbitrage's pool leg as a real swap, and the engine beside it agrees (same accounts, value within
    1%, bad debt within 1%, prices within 0.5%)."""
    from analyzer.replay import replay_and_compare
    from protocols import plugins

    names = ("aave-v3", "compound-v2", "comet", "uniswap-v3", "uniswap-v2", "uniswap-v4", "stableswap")
    chosen = [plugins()[name] for name in names if name in devnet.book.get("protocols", {})]
    shock = ShockScenario(name="weth-20-cex", price_shocks={"WETH": -0.20}, cex_arbitrage=True)
    compared = replay_and_compare(devnet.url, devnet.book, shock, chosen)
    replayed, fidelity = compared.replay, compared.fidelity
    assert replayed.reached_fixed_point and replayed.source_unchanged
    arbitraged = [s for r in replayed.rounds for s in r.routed if s.get("arbitrage")]
    assert arbitraged, "no pool was arbitraged against its CEX"
    for name, gap in fidelity["protocols"].items():
        assert gap["accounts_ok"], (name, gap["only_in_engine"], gap["only_in_replay"])
        assert gap["value_ok"], (name, gap["engine_liquidated_usd"], gap["replay_liquidated_usd"])
        assert gap["bad_debt_ok"], (name, gap["engine_bad_debt_usd"], gap["replay_bad_debt_usd"])
    assert fidelity["final_prices"] and all(p["ok"] for p in fidelity["final_prices"].values()), fidelity["final_prices"]


def test_the_report_names_the_cex_an_arbitraged_asset_used(tmp_path):
    """``depth_by_asset``: an asset with a pool says it also traded on the parameter file's CEX when
    the scenario arbitraged to it (WETH by its own entry, a symbol the file lacks by the default)."""
    from analyzer.report.data import depth_by_asset
    from analyzer.report.inputs import RunInputs

    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH, "ZZZ": WETH}, {},
                             pools={"WETH": (X, Y, FEE), "ZZZ": (X, Y, FEE)})
    for arbitraged in (False, True):
        inputs = RunInputs(tmp_path, "t", "s", {"s": {"scenario": {"cex_arbitrage": arbitraged}}}, snapshot=snapshot)
        depth = depth_by_asset(inputs)
        if not arbitraged:
            assert depth == {"WETH": "test", "ZZZ": "test"}
        else:
            assert depth == {"WETH": "test, CEX arbitrage (centralised_depth.toml: WETH)",
                             "ZZZ": "test, CEX arbitrage (centralised_depth.toml: the generic default)"}
