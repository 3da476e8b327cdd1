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


# ---- what changed between releases, each on a small hand-built book --------------------------------

LINK = "0x" + "dd" * 20
BITMAP_EMODE = {"3": {"ltv": 6500, "liquidation_threshold": 7200, "liquidation_bonus": 10700, "label": "LINK/WETH",
                      "price_source": "0x" + "00" * 20, "collateral_bitmap": str(1 << 3), "borrowable_bitmap": "1",
                      "ltvzero_bitmap": "0"}}


def versioned_book(version, accounts, grace=()):
    """WETH (id 0, LT 83%), USDC (id 2, LT 78%), LINK (id 3, LT 0: collateral only in e-mode 3)."""
    rows = []
    for asset, rid, lt, bonus, price in ((WETH, 0, 0.83, 0.05, 2000.0), (USDC, 2, 0.78, 0.045, 1.0),
                                         (LINK, 3, 0.0, 0.0, 10.0)):
        params = {"reserve_id": rid, "liquidation_protocol_fee_bps": 1000, "emode_categories": BITMAP_EMODE,
                  "version": version, "in_grace_period": asset in grace}
        rows.append({"protocol": "aave-v3", "market": POOL, "asset": asset, "oracle_price_usd": price, "ltv": lt,
                     "liquidation_threshold": lt, "liquidation_bonus": bonus, "close_factor": 0.5,
                     "protocol_fee": 0.1, "category": 0, "collateral_enabled": True, "params": json.dumps(params)})
    positions, accts = [], []
    for i, (category, coll, debt) in enumerate(accounts):
        account = "0x" + f"{i + 1:040x}"
        accts.append({"protocol": "aave-v3", "market": POOL, "account": account, "category": category,
                      "params": json.dumps({"collateral_off": [], "user_configuration": "0"})})
        for side, holdings in (("collateral", coll), ("debt", debt)):
            positions += [{"protocol": "aave-v3", "market": POOL, "account": account, "asset": a, "side": side,
                           "amount": amt, "raw": "0"} for a, amt in holdings.items()]
    snap = Snapshot(meta={"chain_id": 1, "block_number": 1},
                    assets=[{"address": a, "symbol": s, "decimals": 18, "price_usd": p}
                            for a, s, p in ((WETH, "WETH", 2000.0), (USDC, "USDC", 1.0), (LINK, "LINK", 10.0))],
                    markets=rows, accounts=accts, positions=positions).validate()
    (only,) = AaveV3Rules().books(snap)
    return only


PRICES = np.array([2000.0, 1.0, 10.0])  # columns ordered by reserve id: WETH, USDC, LINK


def test_average_threshold_is_floored_up_to_3_4_and_not_from_3_5():
    mixed = [(0, {WETH: 1.0, USDC: 1000.0}, {USDC: 2000.0})]  # (2000·8300 + 1000·7800) / 3000 = 8133.33 bps
    floored = AaveV3Rules().health_factor(versioned_book("3.4", mixed), PRICES)[0]
    exact = AaveV3Rules().health_factor(versioned_book("3.5", mixed), PRICES)[0]
    assert floored == pytest.approx(3000 * 0.8133 / 2000, rel=1e-12)
    assert exact == pytest.approx((2000 * 0.83 + 1000 * 0.78) / 2000, rel=1e-12)


def test_collateral_only_inside_an_emode_counts_from_3_6():
    link_in_emode = [(3, {LINK: 1000.0}, {WETH: 3.0})]  # $10,000 of LINK at the category's 72%
    assert AaveV3Rules().health_factor(versioned_book("3.6", link_in_emode), PRICES)[0] == \
        pytest.approx(10_000 * 0.72 / 6000, rel=1e-12)
    assert AaveV3Rules().health_factor(versioned_book("3.5", link_in_emode), PRICES)[0] == 0.0
    book = versioned_book("3.6", link_in_emode)
    under = np.array([2000.0, 1.0, 8.0])  # LINK -20%: HF 0.96
    liq = AaveV3Rules().liquidate(book, under)
    # HF 0.96 > 0.95 and both legs >= $2,000: half of the $6,000 debt, LINK at the e-mode bonus (7%)
    assert list(liq.rows) == [0] and liq.repaid[0, 0] == pytest.approx(1.5, rel=1e-12)
    assert liq.seized[0, 2] == pytest.approx(3000 * 1.07 / 8.0, rel=1e-12)


def test_dust_rule_refuses_a_partial_step_that_leaves_under_1000_usd_from_3_3():
    # $2,280 of WETH and $2,300 of USDC against $3,750 of USDC (HF 0.983): half the debt ($1,875 × 1.045)
    # takes all but $341 of the USDC collateral
    dusty = [(0, {WETH: 1.2, USDC: 2300.0}, {USDC: 3750.0})]
    prices = np.array([1900.0, 1.0, 10.0])
    for version, refused in (("3.3", True), ("3.2", False)):
        step = AaveV3Rules().step(versioned_book(version, dusty), prices)
        hf = AaveV3Rules().health_factor(versioned_book(version, dusty), prices)[0]
        assert 0.95 < hf < 1.0
        assert (list(step.refused) == [0]) is refused, version
        assert len(AaveV3Rules().liquidate(versioned_book(version, dusty), prices).rows) == (0 if refused else 1)


def test_last_collateral_writes_the_remaining_debt_off_into_a_deficit_from_3_3():
    underwater = [(0, {WETH: 1.0}, {USDC: 2500.0})]  # $2000 of collateral, $2500 of debt
    for version, written_off in (("3.3", True), ("3.2", False)):
        rules = AaveV3Rules()
        book = versioned_book(version, underwater)
        after = rules.apply(book, rules.liquidate(book, PRICES))
        assert after.collateral[0, 0] == 0.0
        left = 2500 - 2000 / 1.05
        assert after.debt[0, 1] == pytest.approx(0.0 if written_off else left)
        assert rules.bad_debt_usd(after, PRICES)[0] == pytest.approx(left)  # bad debt either way


def test_no_liquidation_touches_a_reserve_in_its_grace_period_from_3_1():
    under = [(0, {WETH: 1.0}, {USDC: 1900.0})]
    assert AaveV3Rules().liquidatable(versioned_book("3.1", under, grace=(WETH,)), PRICES).sum() == 0
    assert AaveV3Rules().liquidatable(versioned_book("3.0", under, grace=(WETH,)), PRICES).sum() == 1
    assert AaveV3Rules().liquidatable(versioned_book("3.1", under), PRICES).sum() == 1


def test_an_unknown_release_is_an_error_naming_it():
    from analyzer.errors import ContagionError

    with pytest.raises(ContagionError, match='"3.7"'):
        versioned_book("3.7", [(0, {WETH: 1.0}, {USDC: 100.0})])
