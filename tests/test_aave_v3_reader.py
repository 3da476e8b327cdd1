"""Aave V3 reader against the chain: Pool.getUserAccountData, the data provider, our own listing."""

from __future__ import annotations

import numpy as np
import pytest
from eth_utils import (
    event_abi_to_log_topic,
    event_signature_to_log_topic,
    function_signature_to_4byte_selector,
)

from analyzer.books import market_of
from analyzer.multicall import Call, multicall, single_call
from protocols.aave_v3 import abi
from protocols.aave_v3 import params as P
from protocols.aave_v3.reader import decode_configuration, read_snapshot, user_flags
from protocols.aave_v3.rules import AaveV3Rules
from tests.conftest import requires_anvil

pytestmark = requires_anvil


@pytest.fixture(scope="module")
def aave(devnet):
    deployment = market_of(devnet.book, "aave-v3")
    block = devnet.w3.eth.block_number
    return deployment, block, read_snapshot(devnet.w3, deployment, block)


def test_event_topics_and_selectors_match_the_documented_signatures():
    assert event_abi_to_log_topic(abi.SUPPLY_EVENT) == event_signature_to_log_topic(
        "Supply(address,address,address,uint256,uint16)")
    assert event_abi_to_log_topic(abi.BORROW_EVENT) == event_signature_to_log_topic(
        "Borrow(address,address,address,uint256,uint8,uint256,uint16)")
    assert event_abi_to_log_topic(abi.LIQUIDATION_CALL_EVENT) == event_signature_to_log_topic(
        "LiquidationCall(address,address,address,uint256,uint256,address,bool)")
    assert Call("0x" + "00" * 20, abi.GET_USER_ACCOUNT_DATA, ("0x" + "00" * 20,)).calldata[:4] == \
        function_signature_to_4byte_selector("getUserAccountData(address)")


def test_configuration_bitmap_decoding_of_a_hand_built_word():
    word = (8050 | 8300 << 16 | 10500 << 32 | 18 << 48 | 1 << 56 | 1 << 58 | 1500 << 64 | 1_400_000 << 80
            | 1_800_000 << 116 | 1000 << 152 | 1 << 168 | 500_000_000 << 212)
    got = decode_configuration(word)
    assert (got["ltv"], got["liquidation_threshold"], got["liquidation_bonus"], got["decimals"]) == (8050, 8300, 10500, 18)
    assert (got["active"], got["frozen"], got["borrowing_enabled"], got["reserve_factor"]) == (1, 0, 1, 1500)
    assert (got["borrow_cap"], got["supply_cap"], got["liquidation_protocol_fee"]) == (1_400_000, 1_800_000, 1000)
    assert (got["emode_category"], got["debt_ceiling"]) == (1, 500_000_000)
    assert user_flags(0b1001, 0) == (True, False) and user_flags(0b1001, 1) == (False, True)


def test_markets_carry_the_listed_risk_parameters(aave, devnet):
    _, _, snap = aave
    markets = snap.markets.set_index("asset")
    listed_here = market_of(devnet.book, "aave-v3")["reserves"]
    for symbol, listed in P.reserves(market_of(devnet.book, "aave-v3")["version"]).items():
        if symbol not in listed_here:
            continue    # a listing only the mainnet-scale scenario deploys
        row = markets.loc[devnet.book["tokens"][symbol]]
        assert row["ltv"] == listed.ltv / 1e4 and row["liquidation_threshold"] == listed.liquidation_threshold / 1e4
        assert row["liquidation_bonus"] == pytest.approx(max(listed.liquidation_bonus / 1e4 - 1, 0), abs=1e-12)
        assert row["category"] == listed.emode_category and row["isolated"] == bool(listed.debt_ceiling_usd)
        assert row["oracle_price_usd"] == devnet.scenario.assets[symbol].price_usd
    receipts = snap.assets[snap.assets["receipt_of"] != ""]
    assert len(receipts) == len(listed_here)


def test_every_seeded_account_matches_get_user_account_data(aave, devnet):
    deployment, block, snap = aave
    w3, pool = devnet.w3, deployment["pool"]
    rules = AaveV3Rules()
    (book,) = rules.books(snap)
    prices = book.extra["oracle_prices"]
    total_coll, total_debt, hf = rules.account_data(book, prices)
    assert len(book.accounts) >= 300 and (book.category == 1).sum() >= 10
    borrowers, chain_hf = 0, []
    for i, account in enumerate(book.accounts):
        chain = single_call(w3, Call(pool, abi.GET_USER_ACCOUNT_DATA, (account,)), block=block).unwrap()
        assert total_coll[i] * 1e8 == pytest.approx(chain[0], rel=1e-9, abs=1.0), account  # the chain truncates to whole base units (1e-8 USD)
        assert total_debt[i] * 1e8 == pytest.approx(chain[1], rel=1e-9, abs=1.0), account  # the chain truncates to whole base units (1e-8 USD)
        if chain[1]:
            borrowers += 1
            chain_hf.append(chain[5] / 1e18)
            assert hf[i] == pytest.approx(chain[5] / 1e18, rel=1e-9), account
        else:
            assert np.isinf(hf[i])
    assert borrowers >= 290
    assert min(chain_hf) < 1.05 and max(chain_hf) > 4.0  # the scenario's spread of health factors


def test_per_reserve_amounts_equal_the_data_provider_to_the_wei(aave, devnet):
    """The data provider computes balances itself (scaled balance × index); batched for speed."""
    deployment, block, snap = aave
    w3, data_provider = devnet.w3, deployment["data_provider"]
    positions = {(p.account, p.asset, p.side): int(p.raw) for p in snap.positions.itertuples()}
    pairs = [(account, r["asset"]) for account in snap.accounts["account"] for r in deployment["reserves"].values()]
    signature = "getUserReserveData(address,address)(uint256,uint256,uint256,uint256,uint256,uint256,uint256,uint40,bool)"
    answers = multicall(w3, [Call(data_provider, signature, (asset, account)) for account, asset in pairs], block=block)
    checked = 0
    for (account, asset), answer in zip(pairs, answers, strict=True):
        got = answer.unwrap()
        assert positions.get((account, asset, "collateral"), 0) == got[0]
        assert positions.get((account, asset, "debt"), 0) == got[1] + got[2]
        checked += bool(got[0]) + bool(got[1] + got[2])
    assert checked == len(positions)
    # and a sample straight from the tokens, one plain eth_call each (no Multicall3 in between)
    tokens = {(r["asset"], side): r[key] for r in deployment["reserves"].values()
              for side, key in (("collateral", "aToken"), ("debt", "variableDebtToken"))}
    for (account, asset, side), raw in list(positions.items())[::25]:
        balance = single_call(w3, Call(tokens[(asset, side)], "balanceOf(address)(uint256)", (account,)), block=block)
        assert balance.unwrap() == raw


def test_discovery_finds_every_seeded_label(aave):
    from analyzer.devnet.scenario import account_address

    _, _, snap = aave
    found = set(snap.accounts["account"])
    assert {account_address(f"pop-{i}") for i in range(300)} <= found
    assert account_address("whale-2") in found


def test_isolated_and_emode_accounts_are_seeded(aave, devnet):
    deployment, block, snap = aave
    crv = devnet.book["tokens"]["CRV"]
    reserve = single_call(devnet.w3, Call(deployment["pool"], abi.GET_RESERVE_DATA, (crv,)), block=block).unwrap()
    assert reserve[14] > 0  # isolationModeTotalDebt: isolated borrowers exist on chain
    holders = set(snap.positions.loc[(snap.positions["asset"] == crv) & (snap.positions["side"] == "collateral"), "account"])
    assert len(holders) >= 5
    in_emode = snap.accounts.loc[snap.accounts["category"] == 1, "account"]
    assert len(in_emode) >= 20
