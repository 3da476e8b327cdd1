"""Bulk populations: one transaction opens many accounts, each a clone that makes its own calls
(SELF standing for its address), at the address bulk_account predicts."""

from __future__ import annotations

import pytest

from analyzer.devnet.bulk import SELF, AccountPlan, bulk_account, bulk_spec, seed_accounts, seeder
from analyzer.devnet.context import DevnetContext
from analyzer.errors import ContagionError
from analyzer.multicall import Call
from tests.conftest import requires_anvil

BALANCE = "balanceOf(address)(uint256)"
ALLOWANCE = "allowance(address,address)(uint256)"


@requires_anvil
def test_one_transaction_opens_accounts_that_act_as_themselves(chain_checkpoint):
    devnet = chain_checkpoint
    w3, weth = devnet.w3, devnet.book["tokens"]["WETH"]
    ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=devnet.scenario, book=devnet.book)
    spender = "0x" + "ab" * 20
    plans = [AccountPlan(f"bulk-test-{i}", (Call(weth, "mint(address,uint256)", (SELF, 10**18 + i)),
                                             Call(weth, "approve(address,uint256)", (spender, 7 + i))))
             for i in range(5)]
    seeder(ctx)                                                    # deployed once per devnet
    before = w3.eth.block_number
    seed_accounts(ctx, plans, "test population", accounts_per_tx=3)
    assert w3.eth.block_number == before + 2                      # 5 accounts, 3 per transaction
    for i, plan in enumerate(plans):
        account = bulk_account(ctx, plan.label)
        assert len(w3.eth.get_code(account)) > 0                   # a clone, at the CREATE2 address predicted
        balance = Call(weth, BALANCE, (account,))
        allowance = Call(weth, ALLOWANCE, (account, spender))
        assert balance.decode(w3.eth.call({"to": weth, "data": "0x" + balance.calldata.hex()})) == 10**18 + i
        assert allowance.decode(w3.eth.call({"to": weth, "data": "0x" + allowance.calldata.hex()})) == 7 + i


@requires_anvil
def test_a_failing_account_names_its_batch_and_the_revert(chain_checkpoint):
    devnet = chain_checkpoint
    w3, weth = devnet.w3, devnet.book["tokens"]["WETH"]
    ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=devnet.scenario, book=devnet.book)
    nobody = "0x" + "00" * 20
    plans = [AccountPlan("bulk-bad-0", (Call(weth, "mint(address,uint256)", (nobody, 1)),))]
    with pytest.raises(ContagionError, match="bulk-bad-0.*mint to the zero address"):
        seed_accounts(ctx, plans, "test population")


def test_a_bulk_table_is_checked_field_by_field():
    assert bulk_spec(None, "x") is None
    assert bulk_spec({"accounts": 3, "first": 10}, "x").labels() == ["bulk-10", "bulk-11", "bulk-12"]
    for bad in ({"accounts": -1}, {"accounts": 3, "borrower_share": 2}, {"accounts": 3, "colour": 1},
                {"accounts": 3, "collateral_usd": [5, 1]}):
        with pytest.raises(ContagionError, match="x"):
            bulk_spec(bad, "x")
