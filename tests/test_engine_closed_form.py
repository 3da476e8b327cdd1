"""Closed forms the engine must reproduce with the real Aave V3 rule (protocols/aave_v3/rules.py).

1. One account, one constant-product pool: each round computed by hand in this file (Aave's close
   factor and bonus, Uniswap V2's x·y = k), compared round by round with the engine.
2. The CRV position of November 2022 in shape: 305M CRV against 63.2M USDT at a 0.55 liquidation
   threshold is liquidatable at $0.3767 and not at $0.3768 (63.2 / (305 × 0.55) = 0.37675…).
"""

from __future__ import annotations

import json
import math

import pytest

from analyzer.engine import simulate
from analyzer.model import Snapshot
from analyzer.scenarios import ShockScenario
from protocols.aave_v3.rules import AaveV3Rules

RULES = {"aave-v3": AaveV3Rules()}
MARKET = "0x" + "a" * 40


def address(i: int) -> str:
    return "0x" + f"{i:040x}"


def aave_snapshot(assets: dict[str, dict], accounts: dict[str, list[tuple[str, str, float]]],
                  pools: dict[str, tuple[float, float, float]] | None = None, market: str = MARKET,
                  receipts: dict[str, str] | None = None, version: str = "3.0") -> Snapshot:
    """An Aave V3 snapshot in the reader's row format.

    ``assets``: symbol -> {price, lt, bonus, fee_bps}; ``accounts``: label -> [(symbol, side, amount)];
    ``pools``: symbol -> (reserve_asset, reserve_usdc, fee) constant-product pools against USDC;
    ``receipts``: receipt symbol -> underlying symbol (an aToken of this Aave market).
    """
    symbols = list(assets)
    addr = {s: address(i + 1) for i, s in enumerate(symbols)}
    receipt_of = {s: f"aave-v3:{addr[u]}" for s, u in (receipts or {}).items()}
    asset_rows = [{"address": addr[s], "symbol": s, "decimals": 18, "price_usd": a["price"],
                   "receipt_of": receipt_of.get(s, "")} for s, a in assets.items()]
    markets = [{"protocol": "aave-v3", "market": market, "asset": addr[s], "oracle_price_usd": a["price"],
                "ltv": a["lt"] - 0.05, "liquidation_threshold": a["lt"], "liquidation_bonus": a["bonus"],
                "close_factor": 0.5, "protocol_fee": a.get("fee_bps", 1000) / 1e4, "collateral_enabled": True,
                "borrowable": True, "params": json.dumps({"reserve_id": i, "liquidation_protocol_fee_bps":
                                                          a.get("fee_bps", 1000), "emode_categories": {},
                                                          "version": version})}
               for i, (s, a) in enumerate(assets.items())]
    positions, account_rows = [], []
    for label, rows in accounts.items():
        account_rows.append({"protocol": "aave-v3", "market": market, "account": label,
                             "params": json.dumps({"collateral_off": []})})
        positions += [{"protocol": "aave-v3", "market": market, "account": label, "asset": addr[s], "side": side,
                       "amount": amount, "raw": "0"} for s, side, amount in rows]
    venues = [{"protocol": "test", "venue": f"pool-{s}", "asset": addr[s], "quote_asset": addr["USDC"],
               "model": "constant_product", "params": json.dumps({"reserve_asset": x, "reserve_quote": y, "fee": f})}
              for s, (x, y, f) in (pools or {}).items()]
    return Snapshot(meta={"chain_id": 31337, "block_number": 1}, assets=asset_rows, markets=markets,
                    accounts=account_rows, positions=positions, venues=venues)


WETH = {"price": 2000.0, "lt": 0.80, "bonus": 0.05, "fee_bps": 1000}
USDC = {"price": 1.0, "lt": 0.87, "bonus": 0.05, "fee_bps": 1000}


def test_single_account_in_a_constant_product_pool_cascades_as_computed_by_hand():
    reserve_weth, reserve_usdc = 1_000.0, 2_000_000.0
    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH},
                             {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)]},
                             pools={"WETH": (reserve_weth, reserve_usdc, 0.0)})
    result = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.10}), rules=RULES)

    # by hand: arbitrage takes the pool to the shocked CEX price, k = x·y unchanged (no fee)
    k = reserve_weth * reserve_usdc
    x = math.sqrt(k / 1800.0)
    collateral, debt = 100.0, 150_000.0
    expected = []
    for _ in range(10):
        price = k / x ** 2
        health = collateral * price * 0.80 / debt
        if health >= 1.0:
            break
        close = 0.5 if health > 0.95 else 1.0           # LiquidationLogic: CLOSE_FACTOR_HF_THRESHOLD
        repaid = close * debt
        seized = repaid / price * 1.05                    # base collateral × bonus (10500 bps)
        fee = (seized - seized / 1.05) * 0.10             # liquidationProtocolFee 10% of the bonus part
        collateral, debt = collateral - seized, debt - repaid
        x += seized - fee                                 # the keeper sells what it received
        expected.append((repaid, seized, k / x ** 2, collateral * (k / x ** 2) * 0.80 / debt))
    assert len(expected) == 2                             # two liquidations, then healthy

    rounds = result.rounds
    assert result.stop_reason == "fixed_point" and len(rounds) == len(expected) + 1
    weth = list(result.symbols).index("WETH")
    for record, (repaid, seized, price_after, _) in zip(rounds, expected, strict=False):
        assert record.repaid_tokens[0].sum() == pytest.approx(repaid, rel=1e-9)
        assert record.seized_tokens[0, weth] == pytest.approx(seized, rel=1e-9)
        assert record.price_after[weth] == pytest.approx(price_after, rel=1e-9)
    assert rounds[-1].liquidation_steps.sum() == 0
    account = result.accounts.iloc[0]
    assert account["health_after"] == pytest.approx(expected[-1][3], rel=1e-9)
    assert account["liquidated_usd"] == pytest.approx(expected[0][0] + expected[1][0], rel=1e-9)
    # the shock did 10%, the cascade the rest: amplification is the final move over the shock
    assert result.amplification()["WETH"] == pytest.approx((expected[-1][2] / 2000.0 - 1) / -0.10, rel=1e-9)
    assert result.amplification()["WETH"] > 1.0


CRV = {"price": 0.40, "lt": 0.55, "bonus": 0.085, "fee_bps": 1000}
USDT = {"price": 1.0, "lt": 0.75, "bonus": 0.05, "fee_bps": 1000}


@pytest.mark.parametrize("crv_price, liquidated", [(0.3767, True), (0.3768, False), (0.40, False), (0.30, True)])
def test_crv_position_becomes_liquidatable_at_0_3767_and_not_above(crv_price, liquidated):
    snapshot = aave_snapshot({"USDC": USDC, "USDT": USDT, "CRV": CRV},
                             {"crv-whale": [("CRV", "collateral", 305e6), ("USDT", "debt", 63.2e6)]})
    scenario = ShockScenario(price_shocks={"CRV": crv_price / 0.40 - 1.0}, price_impact=False)
    result = simulate(snapshot, scenario, rules=RULES, venues={})
    assert (result.total_liquidated_usd > 0) is liquidated
    if liquidated:
        # 50% close factor while HF > 0.95: half the USDT debt repaid in the first step
        assert result.rounds[0].repaid_tokens[0].max() >= 0.5 * 63.2e6 * (1 - 1e-12)


def test_the_engine_calls_each_registered_plugins_own_rule(monkeypatch):
    from analyzer.engine.prepare import default_rules
    from protocols import plugins

    rules = default_rules()
    for name, rule in rules.items():
        assert type(rule) is plugins()[name].rules
    calls = []
    original = AaveV3Rules.liquidate

    def spy(self, book, prices, mask=None):
        calls.append(len(book.accounts))
        return original(self, book, prices, mask)

    monkeypatch.setattr(AaveV3Rules, "liquidate", spy)
    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH},
                             {"alice": [("WETH", "collateral", 100.0), ("USDC", "debt", 150_000.0)]},
                             pools={"WETH": (1_000.0, 2_000_000.0, 0.0)})
    result = simulate(snapshot, ShockScenario(price_shocks={"WETH": -0.10}))   # default: every plugin's rules
    assert calls and result.total_liquidated_usd > 0


@pytest.mark.parametrize("pool_fee, shock", [(0.0, 0.0), (0.003, -0.02), (0.0, -0.05)])
def test_thin_pool_keeper_takes_what_pays_round_by_round_by_the_exact_rule(pool_fee, shock):
    """One account (1000 ETH against $1.5M, LT 0.8, bonus 5%, 10% protocol fee) in a thin
    constant-product pool (2,000 ETH / 3.6M USDC; without and with a 0.3% fee): the keeper takes the largest of
    1, 1/2, ..., 1/64 of each liquidation whose sale pays (x·y = k proceeds, exactly), queued behind
    the round's earlier sales; followed here by hand, round by round."""
    reserve_weth, reserve_usdc = 2_000.0, 3_600_000.0
    weth_asset = {**WETH, "price": 1_800.0}
    snapshot = aave_snapshot({"USDC": USDC, "WETH": weth_asset},
                             {"alice": [("WETH", "collateral", 1_000.0), ("USDC", "debt", 1_500_000.0)]},
                             pools={"WETH": (reserve_weth, reserve_usdc, pool_fee)})
    result = simulate(snapshot, ShockScenario(price_shocks={"WETH": shock}), rules=RULES)

    keep = 1.0 - pool_fee
    # an arbitrageur sells WETH into the pool (paying its fee) until its mid is the shocked price
    target, low, high = 1_800.0 * (1 + shock), 0.0, reserve_weth
    for _ in range(200):
        q = 0.5 * (low + high)
        out = reserve_usdc * q * keep / (reserve_weth + q * keep)
        low, high = (q, high) if (reserve_usdc - out) / (reserve_weth + q) > target else (low, q)
    x, y = reserve_weth + q, reserve_usdc - reserve_usdc * q * keep / (reserve_weth + q * keep)
    collateral, debt = 1_000.0, 1_500_000.0
    fractions = [0.5 ** i for i in range(7)]
    expected = []    # per round: (USDC repaid, WETH seized, price after)
    for _ in range(40):
        price = y / x                                     # the oracle follows the pool
        proceeds = lambda q, x=x, y=y: y * q * keep / (x + q * keep)   # noqa: E731  USDC for q WETH
        committed, repaid_round, seized_round = 0.0, 0.0, 0.0
        for _ in range(32):
            health = collateral * price * 0.80 / debt
            if health >= 1.0:
                break
            close = 0.5 if health > 0.95 else 1.0
            repaid = close * debt
            seized = repaid / price * 1.05
            if seized > collateral:
                seized, repaid = collateral, collateral * price / 1.05
            sold = seized - (seized - seized / 1.05) * 0.10
            taken = next((f for f in fractions
                          if proceeds(committed + f * sold) - proceeds(committed) - f * repaid > 0), 0.0)
            if taken == 0.0:
                break
            collateral, debt = collateral - taken * seized, debt - taken * repaid
            committed += taken * sold
            repaid_round, seized_round = repaid_round + taken * repaid, seized_round + taken * seized
            if taken < 1.0:
                break
        if committed == 0.0:
            break
        out = proceeds(committed)
        x, y = x + committed, y - out
        expected.append((repaid_round, seized_round, y / x))
    assert len(expected) >= 3                             # a cascade of partial liquidations

    weth = list(result.symbols).index("WETH")
    got = [(r.repaid_tokens[0].sum(), r.seized_tokens[0, weth], r.price_after[weth]) for r in result.rounds
           if r.seized_tokens[0, weth] > 0]
    assert len(got) == len(expected)
    for i, (have, want) in enumerate(zip(got, expected, strict=True)):
        assert have == pytest.approx(want, rel=1e-9), f"round {i}"
