"""Both Aave V3 releases of the devnet (3.6 and 3.0) read back to the unit: the version comes from
the chain, every seeded account's ``Pool.getUserAccountData`` equals the contract's integer math on
the snapshot's raw integers exactly, and the vectorised rule to 1e-9; 3.6's e-modes are the
bitmaps the devnet configured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analyzer.multicall import Call, multicall
from protocols.aave_v3 import abi
from protocols.aave_v3 import params as P
from protocols.aave_v3.exact import user_account_data
from protocols.aave_v3.reader import read_snapshot
from protocols.aave_v3.rules import AaveV3Rules
from tests.aave_v3_devnets import aave_devnet, devnet_v30  # noqa: F401 -- fixtures
from tests.conftest import requires_anvil

pytestmark = requires_anvil


@pytest.fixture
def aave_read(aave_devnet):  # noqa: F811
    deployment = aave_devnet.book["protocols"]["aave-v3"]
    block = aave_devnet.w3.eth.block_number
    return aave_devnet, deployment, block, read_snapshot(aave_devnet.w3, deployment, block)


def test_every_seeded_account_equals_get_user_account_data(aave_read):
    devnet, deployment, block, snap = aave_read
    rules = AaveV3Rules()
    (book,) = rules.books(snap)
    exact = user_account_data(snap, book.market)
    total_coll, total_debt, hf = rules.account_data(book, book.extra["oracle_prices"])
    chain = [r.unwrap() for r in multicall(devnet.w3, [Call(deployment["pool"], abi.GET_USER_ACCOUNT_DATA, (a,))
                                                        for a in book.accounts], block=block)]
    assert len(book.accounts) >= 300
    for i, account in enumerate(book.accounts):
        collateral_base, debt_base, hf_wad = chain[i][0], chain[i][1], chain[i][5]
        assert exact[account] == (collateral_base, debt_base, hf_wad), account  # integer-exact
        assert total_coll[i] * 1e8 == pytest.approx(collateral_base, rel=1e-9, abs=1.0), account
        assert total_debt[i] * 1e8 == pytest.approx(debt_base, rel=1e-9, abs=1.0), account
        if debt_base:
            assert hf[i] == pytest.approx(hf_wad / 1e18, rel=1e-9), account
        else:
            assert np.isinf(hf[i])


def test_version_comes_from_the_pool(aave_read):
    devnet, deployment, _, snap = aave_read
    params = snap.markets["params"].map(json.loads)
    assert set(params.map(lambda p: p["version"])) == {devnet.scenario.protocol("aave-v3")["version"]}
    assert set(params.map(lambda p: p["pool_revision"])) == ({10} if deployment["version"] == "3.6" else {1})


def test_v36_emodes_are_the_configured_bitmaps_and_every_category_has_accounts(devnet):
    deployment = devnet.book["protocols"]["aave-v3"]
    block = devnet.w3.eth.block_number
    snap = read_snapshot(devnet.w3, deployment, block)
    params = json.loads(snap.markets["params"].iloc[0])
    reserve_id = {}
    for row in snap.markets.itertuples():
        reserve_id[row.asset] = json.loads(row.params)["reserve_id"]
    token = devnet.book["tokens"]
    categories = params["emode_categories"]
    assert len(categories) == len(P.EMODE_CATEGORIES_V36) >= 8
    for category, e in P.EMODE_CATEGORIES_V36.items():
        got = categories[str(category)]
        bitmap = lambda symbols: str(sum(1 << reserve_id[token[s]] for s in symbols))  # noqa: E731
        assert (got["ltv"], got["liquidation_threshold"], got["liquidation_bonus"], got["label"]) == \
            (e.ltv, e.liquidation_threshold, e.liquidation_bonus, e.label)
        assert got["collateral_bitmap"] == bitmap(e.collateral) and got["borrowable_bitmap"] == bitmap(e.borrowable)
        assert got["ltvzero_bitmap"] == bitmap(e.ltvzero)
        assert (snap.accounts["category"] == category).sum() >= 5, category
    # collateral only inside an e-mode: reserve threshold 0, counted for the category's accounts
    markets = snap.markets.set_index("asset")
    for symbol in P.RESERVE_OVERRIDES_V36:
        assert markets.loc[token[symbol], "liquidation_threshold"] == 0
        assert markets.loc[token[symbol], "collateral_enabled"]
    holders = snap.positions[(snap.positions["side"] == "collateral")
                             & snap.positions["asset"].isin([token["USDT"], token["LINK"]])]["account"]
    rules = AaveV3Rules()
    (book,) = rules.books(snap)
    _, _, hf = rules.account_data(book, book.extra["oracle_prices"])
    rows = np.flatnonzero(np.isin(book.accounts, holders.to_numpy()) & (book.category > 0))
    assert len(rows) >= 20 and np.isfinite(hf[rows]).all() and (hf[rows] > 1.0).all()


def test_v36_stable_debt_field_is_a_mock_the_reader_never_calls(devnet):
    deployment = devnet.book["protocols"]["aave-v3"]
    w3, block = devnet.w3, devnet.w3.eth.block_number
    weth = devnet.book["tokens"]["WETH"]
    reserve = multicall(w3, [Call(deployment["pool"], abi.GET_RESERVE_DATA, (weth,))], block=block)[0].unwrap()
    assert int(reserve[9], 16) != 0 and w3.eth.get_code(w3.to_checksum_address(reserve[9])) == b""  # a call fails
    snap = read_snapshot(w3, deployment, block)
    assert set(snap.markets["params"].map(lambda p: json.loads(p)["stableDebtToken"])) == \
        {"0x0000000000000000000000000000000000000000"}
