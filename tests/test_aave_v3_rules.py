"""The Aave V3 rule on a hand-built book, against figures worked out by hand from LiquidationLogic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.model import Snapshot
from protocols.aave_v3.rules import AaveV3Rules

POOL = "0x" + "11" * 20
WETH, STETH, USDC = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20
EMODE = {"1": {"ltv": 9300, "liquidation_threshold": 9500, "liquidation_bonus": 10100,
               "price_source": "0x" + "00" * 20, "label": "ETH correlated"}}


def market(asset, reserve_id, ltv, lt, bonus, category, price):
    params = {"reserve_id": reserve_id, "liquidation_protocol_fee_bps": 1000, "emode_categories": EMODE,
              "version": "3.0"}
    return {"protocol": "aave-v3", "market": POOL, "asset": asset, "oracle_price_usd": price, "ltv": ltv,
            "liquidation_threshold": lt, "liquidation_bonus": bonus, "close_factor": 0.5, "protocol_fee": 0.1,
            "category": category, "collateral_enabled": True, "params": json.dumps(params)}


ACCOUNTS = {  # label: (e-mode, collateral off, {asset: collateral}, {asset: debt})
    "A_half_close": (0, [], {WETH: 10.0}, {USDC: 17000.0}),
    "B_runs_out": (0, [], {WETH: 1.0}, {USDC: 1950.0}),
    "C_emode": (1, [], {STETH: 10.0}, {WETH: 9.7}),
    "D_healthy": (0, [], {WETH: 10.0}, {USDC: 1000.0}),
    "E_flag_off": (0, [WETH], {WETH: 10.0}, {USDC: 100.0}),
    "F_mixed": (0, [], {WETH: 1.0, USDC: 1000.0}, {USDC: 2000.0}),
}


@pytest.fixture
def book():
    address = {label: "0x" + f"{i + 1:040x}" for i, label in enumerate(ACCOUNTS)}
    positions, accounts = [], []
    for label, (category, off, coll, debt) in ACCOUNTS.items():
        accounts.append({"protocol": "aave-v3", "market": POOL, "account": address[label], "category": category,
                         "params": json.dumps({"collateral_off": off, "user_configuration": "0"})})
        for side, holdings in (("collateral", coll), ("debt", debt)):
            positions += [{"protocol": "aave-v3", "market": POOL, "account": address[label], "asset": a,
                           "side": side, "amount": amt, "raw": "0"} for a, amt in holdings.items()]
    snap = Snapshot(meta={"chain_id": 1, "block_number": 1},
                    assets=[{"address": a, "symbol": s, "decimals": d, "price_usd": p}
                            for a, s, d, p in ((WETH, "WETH", 18, 2000.0), (STETH, "wstETH", 18, 2000.0),
                                               (USDC, "USDC", 6, 1.0))],
                    markets=[market(WETH, 0, 0.805, 0.83, 0.05, 1, 2000.0), market(STETH, 1, 0.785, 0.81, 0.06, 1, 2000.0),
                             market(USDC, 2, 0.75, 0.78, 0.045, 0, 1.0)],
                    accounts=accounts, positions=positions).validate()
    (only,) = AaveV3Rules().books(snap)
    return only


def row(book, label):
    return list(ACCOUNTS).index(label)


def test_health_factor_mirrors_generic_logic(book):
    hf = AaveV3Rules().health_factor(book, np.array([2000.0, 2000.0, 1.0]))
    assert hf[row(book, "A_half_close")] == pytest.approx(20000 * 0.83 / 17000, rel=1e-12)
    assert hf[row(book, "C_emode")] == pytest.approx(20000 * 0.95 / 19400, rel=1e-12)  # e-mode threshold
    assert hf[row(book, "E_flag_off")] == 0.0                                           # flag off: no collateral
    # weighted threshold (2000·8300 + 1000·7800) / 3000 = 8133.3 bps, floored to 8133 as the contract does
    assert hf[row(book, "F_mixed")] == pytest.approx(3000 * 0.8133 / 2000, rel=1e-12)


def test_liquidation_amounts_mirror_liquidation_logic(book):
    rules, prices = AaveV3Rules(), np.array([2000.0, 2000.0, 1.0])
    assert set(np.flatnonzero(rules.liquidatable(book, prices))) == {0, 1, 2}
    liq = rules.liquidate(book, prices)
    got = {int(r): k for k, r in enumerate(liq.rows)}
    a, b, c = got[0], got[1], got[2]
    # A: HF 0.976 > 0.95 -> half of 17000 USDC; 8500 / 2000 × 1.05 WETH; fee 10% of the bonus part
    assert liq.repaid[a, 2] == pytest.approx(8500.0) and liq.seized[a, 0] == pytest.approx(4.4625)
    assert liq.fee[a, 0] == pytest.approx((4.4625 - 4.25) * 0.1)
    # B: HF 0.851 <= 0.95 -> all 1950 USDC, which would need 1.02375 WETH > 1: all of it, debt cut to 2000 / 1.05
    assert liq.seized[b, 0] == pytest.approx(1.0) and liq.repaid[b, 2] == pytest.approx(2000 / 1.05)
    assert liq.fee[b, 0] == pytest.approx((1 - 1 / 1.05) * 0.1)
    # C: e-mode bonus 1% (not wstETH's 6%): half of 9.7 WETH, × 1.01 in wstETH
    assert liq.repaid[c, 0] == pytest.approx(4.85) and liq.seized[c, 1] == pytest.approx(4.85 * 1.01)
    after = rules.apply(book, liq)
    assert after.collateral[1, 0] == 0.0 and after.debt[1, 2] == pytest.approx(1950 - 2000 / 1.05)
    assert book.collateral[1, 0] == 1.0  # the input book is untouched
    assert rules.bad_debt_usd(after, prices)[1] == pytest.approx(1950 - 2000 / 1.05)


def test_mask_restricts_the_step(book):
    rules, prices = AaveV3Rules(), np.array([2000.0, 2000.0, 1.0])
    mask = np.zeros(len(book.accounts), dtype=bool)
    mask[2] = True
    assert list(rules.liquidate(book, prices, mask).rows) == [2]


def test_from_3_3_a_partial_step_caps_at_half_of_the_total_debt(book):
    liq = AaveV3Rules("3.3").liquidate(book, np.array([2000.0, 2000.0, 1.0]))
    k = list(liq.rows).index(0)
    assert liq.repaid[k, 2] == pytest.approx(8500.0)   # the single debt: 50% of total = 50% of it


def test_no_liquidatable_account_gives_an_empty_step(book):
    rules, prices = AaveV3Rules(), np.array([2000.0, 2000.0, 1.0])
    liq = rules.liquidate(book, prices, np.zeros(len(book.accounts), dtype=bool))
    assert liq.rows.shape == (0,) and liq.seized.shape == (0, 3)
    assert (rules.apply(book, liq).collateral == book.collateral).all()
