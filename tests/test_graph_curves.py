"""Static liquidation curves run the real Aave V3 rule (protocols/aave_v3/rules.py) on a snapshot
shaped as the Aave reader writes it; the expected curve is computed here from the rows with the
health-factor and close-factor formulas of Aave V3.0 (GenericLogic / LiquidationLogic)."""

from __future__ import annotations

import json

import pytest

from analyzer.graph import build_graph, exposure_metrics
from analyzer.graph.curves import DEFAULT_DROPS, liquidation_curves
from analyzer.model import Snapshot


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


WETH, WBTC, USDC, AWETH = addr(1), addr(2), addr(3), addr(4)
POOL = addr(0x100)
PRICE = {WETH: 3000.0, WBTC: 60000.0, USDC: 1.0, AWETH: 3000.0}
# asset: (reserve id, liquidation threshold, bonus, protocol fee) as Aave V3 Ethereum lists them
RESERVES = {WETH: (0, 0.83, 0.05, 0.10), WBTC: (1, 0.78, 0.05, 0.10), USDC: (2, 0.78, 0.045, 0.10)}
# account: ({collateral asset: amount}, USDC debt)
BOOK = {
    addr(0x1001): ({WETH: 10.0}, 20000.0),            # HF 1.245: liquidatable past a 19.7 % WETH drop
    addr(0x1002): ({WBTC: 1.0}, 40000.0),             # HF 1.17: past a 14.5 % WBTC drop
    addr(0x1003): ({WETH: 5.0, WBTC: 0.5}, 31000.0),  # mixed collateral
    addr(0x1004): ({WETH: 3.0}, 0.0),                 # a supplier: never liquidatable
    addr(0x1005): ({WETH: 2.0}, 6000.0),              # HF 0.83: liquidatable already, full close
}


def aave_snapshot() -> Snapshot:
    assets = [{"address": a, "symbol": s, "decimals": 18, "price_usd": PRICE[a]}
              for a, s in ((WETH, "WETH"), (WBTC, "WBTC"), (USDC, "USDC"))]
    assets.append({"address": AWETH, "symbol": "aWETH", "decimals": 18, "price_usd": 3000.0,
                   "receipt_of": f"aave-v3:{WETH}"})
    markets = []
    for asset, (reserve_id, lt, bonus, fee) in RESERVES.items():
        params = {"reserve_id": reserve_id, "liquidation_protocol_fee_bps": int(fee * 1e4), "emode_categories": {},
                  "version": "3.0"}
        markets.append({"protocol": "aave-v3", "market": POOL, "asset": asset, "oracle_price_usd": PRICE[asset],
                        "ltv": lt - 0.05, "liquidation_threshold": lt, "liquidation_bonus": bonus, "close_factor": 0.5,
                        "protocol_fee": fee, "borrowable": True, "collateral_enabled": True,
                        "params": json.dumps(params, sort_keys=True)})
    positions, accounts = [], []
    for account, (collateral, debt) in BOOK.items():
        accounts.append({"protocol": "aave-v3", "market": POOL, "account": account, "category": 0,
                         "params": json.dumps({"collateral_off": [], "user_configuration": "0"}, sort_keys=True)})
        rows = [(a, "collateral", x) for a, x in collateral.items()] + ([(USDC, "debt", debt)] if debt else [])
        positions += [{"protocol": "aave-v3", "market": POOL, "account": account, "asset": a, "side": side,
                       "amount": x, "raw": str(int(x * 1e6))} for a, side, x in rows]
    return Snapshot(meta={"chain_id": 31337, "block_number": 1}, assets=assets, markets=markets, accounts=accounts,
                    positions=positions).validate()


def expected_curve(shocked: str) -> dict[str, list[float]]:
    """Aave V3.0 by hand: HF = Σ collateral × price × LT / Σ debt × price < 1; one liquidationCall
    repays 50 % of the largest debt (100 % when HF ≤ 0.95) and seizes debt × bonus in the largest
    collateral, capped at its balance."""
    out = {"collateral_usd": [], "debt_usd": [], "seizable_usd": [], "accounts": []}
    for drop in DEFAULT_DROPS:
        price = {a: p * (1 - drop) if a == shocked else p for a, p in PRICE.items()}
        coll_total = debt_total = seized_total = count = 0.0
        for collateral, debt in BOOK.values():
            coll_usd = {a: x * price[a] for a, x in collateral.items()}
            if not debt:
                continue
            hf = sum(v * RESERVES[a][1] for a, v in coll_usd.items()) / debt
            assert abs(hf - 1) > 1e-3, "an account this close to HF 1 would depend on the bps floor"
            if hf >= 1:
                continue
            largest = max(coll_usd, key=coll_usd.get)
            repay = debt * (1.0 if hf <= 0.95 else 0.5)
            seized = min(repay * (1 + RESERVES[largest][2]) / price[largest], collateral[largest])
            coll_total += sum(coll_usd.values())
            debt_total += debt
            seized_total += seized * price[largest]
            count += 1
        for key, value in zip(out, (coll_total, debt_total, seized_total, count), strict=True):
            out[key].append(value)
    return out


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return aave_snapshot()


@pytest.mark.parametrize("asset,symbol", [(WETH, "WETH"), (WBTC, "WBTC")])
def test_static_curve_equals_the_aave_formula(snapshot, asset, symbol):
    got = liquidation_curves(snapshot)
    curves = {(c["protocol"], c["symbol"]): c for c in got["curves"]}
    assert set(curves) == {("aave-v3", "WETH"), ("aave-v3", "WBTC")}    # no curve for a debt-only asset
    assert got["without_rules"] == []
    curve, expected = curves[("aave-v3", symbol)], expected_curve(asset)
    assert curve["accounts"] == expected["accounts"]
    for key in ("collateral_usd", "debt_usd", "seizable_usd"):
        assert curve[key] == pytest.approx(expected[key], rel=1e-9), key
    # the shape the figures rely on: nothing liquidated at first but the already unhealthy account,
    # then more as the price falls
    assert curve["accounts"][0] == 1 and curve["accounts"][-1] == 3
    assert all(b >= a for a, b in zip(curve["accounts"], curve["accounts"][1:], strict=False))


def test_exposure_metrics_use_the_rule_health_factor(snapshot):
    metrics = exposure_metrics(snapshot, build_graph(snapshot))
    assert metrics["liquidation_curves"]["curves"]
    json.dumps(metrics, allow_nan=False)
    composition = metrics["composition"]["aave-v3"]
    assert composition["collateral_usd"] == pytest.approx(sum(x * PRICE[a] for c, _ in BOOK.values()
                                                              for a, x in c.items()))
