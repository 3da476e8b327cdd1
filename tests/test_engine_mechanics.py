"""Mechanisms real cascades showed, each pinned down on a small Aave V3 book (the real rule)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from analyzer.engine import simulate
from analyzer.model import Snapshot
from analyzer.scenarios import ForcedSale, ShockScenario
from benchmarks.synthetic import synthetic_snapshot
from protocols.aave_v3.rules import AaveV3Rules
from protocols.base import OptionLiquidation, OptionMarginRules, ReceiptWritedownRules
from tests.test_engine_closed_form import RULES, USDC, WETH, aave_snapshot

CRV = {"price": 0.50, "lt": 0.55, "bonus": 0.085, "fee_bps": 1000}


def weth_book(pool_weth=1_000.0, **extra_accounts):
    accounts = {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)],
                "bob": [("WETH", "collateral", 200.0), ("USDC", "debt", 270_000.0)]}
    accounts.update(extra_accounts)
    return aave_snapshot({"USDC": USDC, "WETH": WETH}, accounts,
                         pools={"WETH": (pool_weth, pool_weth * 2000.0, 0.003)})


def test_debt_squeeze_creates_bad_debt():
    # a CRV short (USDC collateral, CRV debt): keepers must buy CRV in a thin pool to repay it
    snapshot = aave_snapshot({"USDC": USDC, "CRV": CRV},
                             {"short": [("USDC", "collateral", 60e6), ("CRV", "debt", 80e6)]},
                             pools={"CRV": (200e6, 100e6, 0.003)})
    result = simulate(snapshot, ShockScenario(price_shocks={"CRV": 0.40}, max_rounds=100), rules=RULES)
    crv = list(result.symbols).index("CRV")
    assert result.total_liquidated_usd > 0
    assert result.price_final[crv] > result.price_after_shock[crv] * 1.05      # the keepers' buying moved it
    assert result.bad_debt_usd["aave-v3"] > 0
    bought = sum(r.flows[crv, result.sources.index("liquidation:aave-v3")] for r in result.rounds)
    assert bought < 0


def test_keeper_needs_the_bonus_to_cover_gas():
    snapshot = weth_book()
    cheap = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.10}), rules=RULES)
    dear = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.10}, keeper_gas_usd=1e7), rules=RULES)
    assert cheap.total_liquidated_usd > 0
    assert dear.total_liquidated_usd == 0.0


def test_thin_pool_gives_partial_liquidations():
    deep = simulate(weth_book(pool_weth=100_000.0), ShockScenario(price_shocks={"WETH": -0.10}, max_rounds=1),
                    rules=RULES)
    thin = simulate(weth_book(pool_weth=300.0), ShockScenario(price_shocks={"WETH": -0.10}, max_rounds=1),
                    rules=RULES)
    assert 0 < thin.rounds[0].liquidated_usd[0] < deep.rounds[0].liquidated_usd[0]


def test_dex_only_crash_with_a_cex_oracle_liquidates_nothing():
    snapshot = weth_book()
    cex = simulate(snapshot, ShockScenario(venue_shocks={"WETH": -0.30}, oracle_sources={"WETH": "exogenous"}),
                   rules=RULES)
    dex = simulate(snapshot, ShockScenario(venue_shocks={"WETH": -0.30}), rules=RULES)
    weth = list(cex.symbols).index("WETH")
    assert cex.price_after_shock[weth] == pytest.approx(1400.0, rel=1e-9)
    assert cex.total_liquidated_usd == 0.0
    assert dex.total_liquidated_usd > 0


def test_oracle_lag_delays_liquidations_by_a_round():
    snapshot = weth_book()
    lagged = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.10}, oracle_lag=1), rules=RULES)
    assert lagged.rounds[0].liquidation_steps.sum() == 0
    assert lagged.rounds[1].liquidation_steps.sum() > 0
    np.testing.assert_allclose(lagged.rounds[0].oracle_source, lagged.price_before)


def test_attribution_shares_add_to_one_and_the_matrix_adds_to_the_liquidated_value():
    snapshot = weth_book(pool_weth=400.0, carol=[("WETH", "collateral", 50.0), ("USDC", "debt", 80_000.0)])
    result = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.15}), rules=RULES)
    causes = result.accounts[[c for c in result.accounts.columns if c.startswith("cause:")]].to_numpy()
    liquidated = result.accounts["liquidated_usd"].to_numpy() > 0
    np.testing.assert_allclose(causes[liquidated].sum(1), 1.0, rtol=1e-12)
    matrix = result.contagion_matrix
    assert matrix["aave-v3"].sum() == pytest.approx(result.liquidated_usd["aave-v3"], rel=1e-12)
    # the first round's liquidations are the shock's; later ones owe part of it to the keepers' sales
    assert matrix.loc["shock", "aave-v3"] > 0 and matrix.loc["liquidation:aave-v3", "aave-v3"] > 0


class PooledLossAave(AaveV3Rules, ReceiptWritedownRules):
    """Aave's rule with receipts that take losses pro rata, as a pooled ERC-4626 vault's shares do
    (``convertToAssets`` falls with the vault's bad debt); real Aave does not (see below)."""

    def receipt_writedowns(self, snapshot, books):
        return {}       # no receipt-specific account: pro rata over the markets each one claims on


def _receipt_holder_book():
    # alice's WETH crashes to bad debt; dave holds the market's aUSDC as collateral,
    # 100,000 aUSDC × 0.80 against 79,700 USDC: health 1.0038, whatever WETH does
    assets = {"USDC": USDC, "WETH": WETH, "aUSDC": dict(USDC, lt=0.80)}
    return aave_snapshot(assets, {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)],
                                  "lender": [("USDC", "collateral", 300_000.0)],
                                  "dave": [("aUSDC", "collateral", 100_000.0), ("USDC", "debt", 79_700.0)]},
                         pools={"WETH": (5_000.0, 10_000_000.0, 0.003)}, receipts={"aUSDC": "USDC"})


def test_aave_bad_debt_is_the_suppliers_unrealised_loss_not_a_receipt_price_move():
    # Aave's aToken balance is scaled balance × liquidity index, which bad debt never lowers (3.3+
    # books a deficit): aUSDC stays at 1 USDC, and the loss is reported beside the cascade
    scenario = ShockScenario(price_shocks={"WETH": -0.45}, keeper_gas_usd=1e9)
    result = simulate(_receipt_holder_book(), scenario, rules=RULES)
    a_usdc = list(result.symbols).index("aUSDC")
    assert result.writedown["aave-v3"] == 0.0 and result.receipt_writedown == {}
    assert all(r.price_after[a_usdc] == pytest.approx(1.0, rel=1e-12) for r in result.rounds)
    assert result.receipt_writedown_usd[0] == 0.0
    # dave's aUSDC is worth what it was: only alice is left liquidatable (no keeper pays the gas)
    assert result.unliquidated_usd[0] == pytest.approx(150_000.0, rel=1e-9)
    # no keeper pays 1e9 gas: alice's 150k USDC against 100 WETH at 1,100 leaves 40k of bad debt
    out = result.to_json()
    assert out["protocols"]["aave-v3"]["unrealised_supplier_loss_usd"] == pytest.approx(40_000.0, rel=1e-9)
    loss = dict(zip(out["supplier_loss"]["sources"], (row[0] for row in out["supplier_loss"]["usd"]), strict=True))
    assert loss["shock"] == pytest.approx(40_000.0, rel=1e-9)        # alice went under by the shock alone
    assert out["totals"]["unrealised_supplier_loss_usd"] == pytest.approx(40_000.0, rel=1e-9)


def test_a_deficit_written_off_at_liquidation_stays_bad_debt_in_later_rounds():
    # Aave 3.3+: alice's 100 WETH at 1,100 (HF 0.59, close factor 100%) are all seized for
    # 110,000 / 1.05 USDC repaid; the rest of her debt is burnt into the reserve's deficit
    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH}, {"alice": [("WETH", "collateral", 100.0),
                                                                      ("USDC", "debt", 150_000.0)]},
                             pools={"WETH": (50_000.0, 100_000_000.0, 0.003)}, version="3.6")
    result = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.45}), rules=RULES)
    deficit = 150_000.0 - 100 * 1_100.0 / 1.05
    assert len(result.rounds) >= 2 and result.liquidations["aave-v3"] == 1
    assert result.liquidated_usd["aave-v3"] == pytest.approx(100 * 1_100.0 / 1.05, rel=1e-9)
    assert result.bad_debt_usd["aave-v3"] == pytest.approx(deficit, rel=1e-9)
    assert result.to_json()["protocols"]["aave-v3"]["unrealised_supplier_loss_usd"] == pytest.approx(deficit, rel=1e-9)


def test_a_pooled_receipt_write_down_reaches_the_holders():
    scenario = ShockScenario(price_shocks={"WETH": -0.45}, keeper_gas_usd=1e9)
    result = simulate(_receipt_holder_book(), scenario, rules={"aave-v3": PooledLossAave()})
    # 40k of bad debt over the market's supply: 110k of WETH, 300k of USDC and dave's 100k aUSDC
    # (valued at its written-down price, so a little under 100k)
    assert 40_000 / 510_000 <= result.writedown["aave-v3"] <= 40_000 / 410_000
    # which takes dave, 0.38% above liquidation, under (no keeper pays the gas: both are left
    # liquidatable): the channel when receipts do take losses
    assert result.unliquidated_usd[0] == pytest.approx(150_000.0 + 79_700.0, rel=1e-9)
    a_usdc = list(result.symbols).index("aUSDC")
    assert result.price_final[a_usdc] == pytest.approx(1.0 - result.writedown["aave-v3"], rel=1e-12)
    assert result.receipt_writedown_usd[0] > 0


def test_short_gamma_hedging_sells_into_the_fall_and_flags_divergence():
    calm = synthetic_snapshot(300, n_markets=1, n_assets=3, seed=3, hedger_gamma=-1e-6)
    pool = json.loads(calm.venues["params"][0])
    # impact of a constant-product pool near the mid: dp/dq ≈ 2p/x; a short gamma of 3x/p is a loop gain ~6
    wild = synthetic_snapshot(300, n_markets=1, n_assets=3, seed=3, hedger_gamma=-3 * pool["reserve_asset"]
                              / (pool["reserve_quote"] / pool["reserve_asset"]))
    scenario = ShockScenario(price_shocks={"TKN1": -0.2}, max_rounds=8)
    calm_result = simulate(calm, scenario, rules=RULES)
    wild_result = simulate(wild, scenario, rules=RULES)
    hedging = wild_result.sources.index("hedging:synthetic-options")
    assert wild_result.rounds[0].flows[1, hedging] > 0            # a short-gamma pool sells into a fall
    assert not calm_result.diverging and wild_result.diverging
    assert wild_result.price_final[1] < calm_result.price_final[1]


class ShortPutMargin(OptionMarginRules):
    """Test fixture for the option-margin hook: a short put is liquidated below 1.5 × its intrinsic value."""

    protocol = "opt"

    def option_liquidations(self, options, spot_usd, iv, now, carry=None):
        intrinsic = np.maximum(options["strike"].to_numpy() - spot_usd, 0.0) * options["size"].to_numpy()
        short_put = (options["side"] == "short").to_numpy() & (options["kind"] == "put").to_numpy()
        liquidated = short_put & (options["collateral"].to_numpy() < 1.5 * intrinsic)
        return OptionLiquidation(liquidated, np.where(liquidated, options["collateral"].to_numpy(), 0.0),
                                 np.where(liquidated, intrinsic, 0.0))


def test_option_margin_hook_and_black_scholes_rehedging():
    base = synthetic_snapshot(30, n_markets=1, n_assets=3, seed=5, hedger_gamma=-1.0)
    tkn1 = base.assets["address"][1]
    spot = float(base.assets["price_usd"][1])
    options = pd.DataFrame({"protocol": "opt", "market": "0xoptions", "account": ["u1", "u2"], "position_id": [1, 2],
                            "kind": "put", "strike": spot, "expiry": 1_700_000_000 + 30 * 86400, "size": [10.0, 10.0],
                            "side": "short", "collateral_asset": tkn1, "collateral": [2.0, 10.0 * spot]})
    hedgers = pd.DataFrame({"protocol": "opt", "market": "0xoptions", "asset": [tkn1], "net_delta": 0.0,
                            "net_gamma": 0.0, "net_vega": 0.0, "hedge_position": 0.0})
    snapshot = Snapshot(meta=base.meta, assets=base.assets, markets=base.markets, accounts=base.accounts,
                        positions=base.positions, venues=base.venues, options=options, hedgers=hedgers)
    # without price impact: the round's hedge is the revalued delta change itself (with impact, a pool
    # long gamma as this one hedges a 1 / (1 + g) share of it, test_options_hedging.py)
    result = simulate(snapshot, ShockScenario(price_shocks={"TKN1": -0.2}, iv_per_contract=0.01, price_impact=False),
                      rules={**RULES, "opt": ShortPutMargin()})
    assert result.liquidations["opt"] == 1                       # u1's thin collateral, not u2's
    first = result.rounds[0]
    hedging = result.sources.index("hedging:opt")
    # the pool is long both puts (delta < 0) before; after the fall it holds only u2's (u1's was bought
    # back), revalued at the new spot and the spiralled IV (0.6 + 0.2): it trades the delta difference
    years, strike = 30 / 365, spot
    def put_delta(s, vol):
        return norm.cdf((np.log(s / strike) + 0.5 * vol ** 2 * years) / (vol * np.sqrt(years))) - 1.0
    pool_before = 2 * 10.0 * put_delta(spot, 0.6)
    pool_after = 10.0 * put_delta(result.price_after_shock[1], 0.6 + 0.2)
    assert first.flows[1, hedging] == pytest.approx(pool_after - pool_before, rel=1e-9)
    assert first.iv_after[1] > base.assets["iv"][1]
    assert result.contagion_matrix["opt"].sum() == pytest.approx(result.liquidated_usd["opt"], rel=1e-12)
    # the owner of the liquidated short is an account outcome: its buy-back at the round-0 spot
    shorts = result.accounts[result.accounts["protocol"] == "opt"]
    assert list(shorts["account"]) == ["u1"] and shorts["first_round"].iloc[0] == 0
    intrinsic = 10.0 * (strike - result.price_after_shock[1])
    assert shorts["liquidated_usd"].iloc[0] == pytest.approx(intrinsic, rel=1e-12)
    assert shorts[[c for c in shorts if c.startswith("cause:")]].sum(axis=1).iloc[0] == pytest.approx(1.0)


def test_forced_sale_and_unknown_names_are_errors_for_people():
    snapshot = weth_book()
    sold = simulate(snapshot, ShockScenario(forced_sales=[ForcedSale("bob")]), rules=RULES)
    weth = list(sold.symbols).index("WETH")
    assert sold.rounds[0].flows[weth, sold.sources.index("forced_sale")] == pytest.approx(200.0)
    assert sold.price_final[weth] < 2000.0
    from analyzer.errors import ContagionError
    with pytest.raises(ContagionError, match='price_shocks: asset "WETHH" is not in the snapshot'):
        simulate(snapshot, ShockScenario(price_shocks={"WETHH": -0.1}), rules=RULES)
    with pytest.raises(ContagionError, match="forced_sale: account nobody has no position"):
        simulate(snapshot, ShockScenario(forced_sales=[ForcedSale("nobody")]), rules=RULES)


def test_cascade_files_are_deterministic_and_follow_the_schema(tmp_path):
    snapshot = weth_book(pool_weth=400.0)
    scenario = ShockScenario(price_shocks={"WETH": -0.15}, seed=11)
    first = simulate(snapshot, scenario, rules=RULES).write(tmp_path / "a")
    second = simulate(snapshot, scenario, rules=RULES).write(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    doc = json.loads(first.read_text())
    assert doc["schema"] == "defi-contagion/cascade" and doc["scenario"]["seed"] == 11
    assert doc["stop_reason"] in ("fixed_point", "round_limit")
    assert set(doc["files"]) == {"prices.parquet", "flows.parquet", "liquidations.parquet", "accounts.parquet",
                                 "contagion.parquet"}
    for name in doc["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert doc["totals"]["liquidated_usd"] == pytest.approx(
        sum(p["liquidated_usd"] for p in doc["protocols"].values()))
    weth = next(a for a in doc["assets"] if a["symbol"] == "WETH")
    assert weth["amplification"] > 1.0 and weth["shock"] == pytest.approx(-0.15)
    usd = np.array(doc["contagion"]["usd"])
    assert usd.sum() == pytest.approx(doc["totals"]["liquidated_usd"], rel=1e-12)
    accounts = pd.read_parquet(tmp_path / "a" / "accounts.parquet")
    assert set(accounts["account"]) == {"alice", "bob"}


def test_an_asset_quoted_in_a_shocked_asset_moves_with_it_in_the_same_round():
    """wstETH trades only against WETH: after a WETH shock its USD price is the pool's wstETH/WETH
    ratio times WETH's *new* price at once, so its holders are liquidated in round 0."""
    wsteth = {"price": 2400.0, "lt": 0.80, "bonus": 0.06, "fee_bps": 1000}
    base = aave_snapshot({"USDC": USDC, "WETH": WETH, "wstETH": wsteth},
                         {"carol": [("wstETH", "collateral", 100.0), ("USDC", "debt", 170_000.0)]},
                         pools={"WETH": (50_000.0, 100_000_000.0, 0.003)})
    addr = dict(zip(base.assets["symbol"], base.assets["address"], strict=True))
    # 50,000 wstETH against 60,000 WETH: 1.2 WETH (2,400 USD) per wstETH, deep enough to stay put
    snap = with_wsteth_weth_pool(base, addr)
    result = simulate(snap, ShockScenario(name="weth-20", price_shocks={"WETH": -0.20}, max_rounds=1), rules=RULES)
    index = {a: i for i, a in enumerate(result.assets)}
    oracle = result.rounds[0].oracle_source
    assert oracle[index[addr["WETH"]]] == pytest.approx(1600.0, rel=1e-9)
    assert oracle[index[addr["wstETH"]]] == pytest.approx(1.2 * 1600.0, rel=1e-9)
    # 100 × 1,920 × 0.80 = 153,600 < 170,000 of debt: liquidatable now, not a round later
    carol = result.accounts[result.accounts["account"] == "carol"]
    assert len(carol) == 1 and carol["first_round"].iloc[0] == 0 and carol["liquidated_usd"].iloc[0] > 0


def _wsteth_two_pools():
    """wstETH on two pools, one against WETH (1.2 WETH each) and one against USDC ($2,400); WETH on
    one pool against USDC. Depths: wstETH/WETH 50,000 wstETH, wstETH/USDC 20,000 wstETH."""
    wsteth = {"price": 2400.0, "lt": 0.80, "bonus": 0.06, "fee_bps": 1000}
    base = aave_snapshot({"USDC": USDC, "WETH": WETH, "wstETH": wsteth},
                         {"dave": [("wstETH", "collateral", 10.0), ("USDC", "debt", 1_000.0)]},
                         pools={"WETH": (50_000.0, 100_000_000.0, 0.003),
                                "wstETH": (20_000.0, 48_000_000.0, 0.003)})
    addr = dict(zip(base.assets["symbol"], base.assets["address"], strict=True))
    return with_wsteth_weth_pool(base, addr), addr


def with_wsteth_weth_pool(base: Snapshot, addr: dict[str, str]) -> Snapshot:
    """``base`` plus a constant-product wstETH/WETH pool: 50,000 wstETH against 60,000 WETH."""
    quoted = pd.DataFrame([{"protocol": "test", "venue": "pool-wstETH-WETH", "asset": addr["wstETH"],
                            "quote_asset": addr["WETH"], "model": "constant_product",
                            "params": json.dumps({"reserve_asset": 50_000.0, "reserve_quote": 60_000.0, "fee": 0.003})}])
    return Snapshot(meta=base.meta, assets=base.assets, markets=base.markets, accounts=base.accounts,
                    positions=base.positions, venues=pd.concat([base.venues, quoted], ignore_index=True))


def test_a_joint_shock_takes_every_pool_of_an_asset_to_its_target_once():
    """WETH and wstETH both fall 30% (a CEX-wide move): arbitrage leaves wstETH/USDC at $1,680 and
    wstETH/WETH at the ratio of the two targets (1,680 / 1,400 = 1.2 WETH, unchanged), not moved
    30% itself and then 30% more through its WETH quote."""
    from analyzer.engine.prepare import prepare, start_state

    snap, addr = _wsteth_two_pools()
    prep = prepare(snap, rules=RULES)
    state = start_state(prep, ShockScenario(price_shocks={"WETH": -0.30, "wstETH": -0.30}))
    index = {a: i for i, a in enumerate(prep.assets)}
    assert state.price[index[addr["WETH"]]] == pytest.approx(1400.0, rel=1e-9)
    assert state.price[index[addr["wstETH"]]] == pytest.approx(1680.0, rel=1e-9)
    pools = {v.quote: v for v in state.venues[index[addr["wstETH"]]].venues}
    # each pool's own mid, from its reserves: quote units per wstETH
    weth_pool, usdc_pool = pools[addr["WETH"]], pools[addr["USDC"]]
    assert weth_pool.reserve_quote / weth_pool.reserve_asset == pytest.approx(1.2, rel=1e-9)
    assert usdc_pool.reserve_quote / usdc_pool.reserve_asset == pytest.approx(1680.0, rel=1e-9)


def test_native_eth_is_priced_and_sold_as_weth():
    """Compound's CEther lists ETH (0xEeee…), which the same feed prices as WETH and a keeper
    wraps and sells as WETH: an ETH-collateral account is liquidated by a WETH shock, and what is
    seized from it is sold on the WETH pool."""
    native = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"
    eth = {"price": 2000.0, "lt": 0.80, "bonus": 0.05, "fee_bps": 1000}
    base = aave_snapshot({"USDC": USDC, "WETH": WETH, "ETH": eth},
                         {"erin": [("ETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)]},
                         pools={"WETH": (50_000.0, 100_000_000.0, 0.003)})
    eth_address = base.assets.loc[base.assets["symbol"] == "ETH", "address"].iloc[0]
    swap = {eth_address: native}
    snap = Snapshot(meta=base.meta, assets=base.assets.replace({"address": swap}),
                    markets=base.markets.replace({"asset": swap}), accounts=base.accounts,
                    positions=base.positions.replace({"asset": swap}), venues=base.venues)
    assert snap.wrapped_native_of() == {native: snap.address_of("WETH")}
    result = simulate(snap, ShockScenario(price_shocks={"WETH": -0.10}, max_rounds=3), rules=RULES)
    index = {a: i for i, a in enumerate(result.assets)}
    weth = index[snap.address_of("WETH")]
    for record in result.rounds:
        assert record.price[index[native]] == pytest.approx(record.price[weth], rel=1e-12)
    # 100 × 1,800 × 0.80 = 144,000 < 150,000: liquidated in round 0, its ETH sold as WETH
    erin = result.accounts[result.accounts["account"] == "erin"]
    assert erin["first_round"].iloc[0] == 0 and erin["liquidated_usd"].iloc[0] > 0
    assert result.rounds[0].flows[weth].sum() > 0
    assert result.rounds[0].flows[index[native]].sum() == 0


def _two_markets(receipt_market: str):
    """Two Aave markets over the same assets: alice's WETH position in MARKET turns to bad debt;
    the other market is sound. dave posts an aUSDC of ``receipt_market`` in the sound market."""
    other = "0x" + "b" * 40
    assets = {"USDC": USDC, "WETH": WETH, "aUSDC": dict(USDC, lt=0.80)}
    crashing = aave_snapshot(assets, {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)],
                                      "lender": [("USDC", "collateral", 300_000.0)]},
                             pools={"WETH": (5_000.0, 10_000_000.0, 0.003)})
    sound = aave_snapshot(assets, {"bob": [("USDC", "collateral", 400_000.0)],
                                   "dave": [("aUSDC", "collateral", 100_000.0), ("WETH", "debt", 10.0)]},
                          market=other)
    assets_t = crashing.assets.copy()
    usdc = assets_t.loc[assets_t["symbol"] == "USDC", "address"].iloc[0]
    market = {"crashing": crashing.markets["market"].iloc[0], "sound": other}[receipt_market]
    assets_t.loc[assets_t["symbol"] == "aUSDC", "receipt_of"] = f"aave-v3:{market}:{usdc}"
    return Snapshot(meta=crashing.meta, assets=assets_t,
                    markets=pd.concat([crashing.markets, sound.markets], ignore_index=True),
                    accounts=pd.concat([crashing.accounts, sound.accounts], ignore_index=True),
                    positions=pd.concat([crashing.positions, sound.positions], ignore_index=True),
                    venues=crashing.venues)


def test_bad_debt_stays_in_the_market_where_it_arose():
    scenario = ShockScenario(price_shocks={"WETH": -0.45}, keeper_gas_usd=1e9)
    results = {where: simulate(_two_markets(where), scenario, rules=RULES) for where in ("crashing", "sound")}
    for result in results.values():
        by_market = result.bad_debt_by_market
        assert by_market[("aave-v3", "0x" + "a" * 40)] > 0
        assert by_market[("aave-v3", "0x" + "b" * 40)] == 0.0
        assert sum(by_market.values()) == pytest.approx(result.bad_debt_usd["aave-v3"], rel=1e-12)
    # Aave's receipts keep their value whichever market they claim on; the loss is reported per
    # market as the suppliers' unrealised loss: alice's 150k USDC against 100 WETH at 1,100
    for result in results.values():
        assert result.receipt_writedown == {}
        markets = {(m["protocol"], m["market"]): m["unrealised_supplier_loss_usd"] for m in result.to_json()["markets"]}
        assert markets[("aave-v3", "0x" + "a" * 40)] == pytest.approx(40_000.0, rel=1e-9)
        assert markets[("aave-v3", "0x" + "b" * 40)] == 0.0
    # an issuer whose shares take losses writes a receipt of the crashing market down by that
    # market's bad debt over what its book supplied, not diluted by the sound market's deposits
    crashing = simulate(_two_markets("crashing"), scenario, rules={"aave-v3": PooledLossAave()})
    a_usdc = list(crashing.symbols).index("aUSDC")
    assert crashing.receipt_writedown["aUSDC"] == pytest.approx(40_000 / (100 * 1_100 + 300_000), rel=1e-12)
    assert crashing.price_final[a_usdc] == pytest.approx(1.0 - crashing.receipt_writedown["aUSDC"])
    sound = simulate(_two_markets("sound"), scenario, rules={"aave-v3": PooledLossAave()})
    assert sound.receipt_writedown == {}
