"""Aave V3's PriceOracleSentinel (L2 markets) end to end: the real contract of
@aave-dao/aave-v3-origin, set on the devnet's PoolAddressesProvider over a Chainlink-style
sequencer-uptime feed (answer 0 = up, 1 = down; ``startedAt`` = the last change).

In each state (sequencer down; back up within the grace period; up past it) the decision the tool
makes (the plugin reads the sentinel's feed and grace period, :func:`analyzer.oracles.sequencer_down`
decides, :meth:`AaveV3Rules.sentinel_permits` applies the HF < 0.95 exemption) must equal the
chain's: which ``liquidationCall`` succeeds, and whether a healthy account may borrow.
"""

from __future__ import annotations

import numpy as np
from eth_utils import keccak, to_checksum_address

from analyzer.books import market_of
from analyzer.chain import rpc
from analyzer.cheats import read, send_as
from analyzer.devnet.solc import fixture_artifact
from analyzer.multicall import Call
from analyzer.oracles import PriceMover, sequencer_down
from protocols.aave_v3 import origin
from protocols.aave_v3.executor import MAX_UINT, AaveV3Executor
from protocols.aave_v3.prices import AaveV3PriceSources
from protocols.aave_v3.reader import read_snapshot
from protocols.aave_v3.rules import AaveV3Rules
from tests.conftest import requires_anvil

pytestmark = requires_anvil
GRACE_SECONDS = 3600
SENTINEL_FAILED = "0x" + keccak(text="PriceOracleSentinelCheckFailed()")[:4].hex()
LIQUIDATION_CALL = "liquidationCall(address,address,address,uint256,bool)()"
BORROW = "borrow(address,uint256,uint256,uint16,address)()"


def _deploy(w3, artifact: dict, *args) -> str:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": w3.eth.accounts[0]}))
    assert receipt["status"] == 1
    return receipt["contractAddress"]


def _call_error(w3, sender: str, target: str, signature: str, *args) -> str | None:
    """``eth_call`` of ``signature`` at the latest block: None when it succeeds, else the revert data."""
    data = "0x" + Call(target, signature, args).calldata.hex()
    answer = w3.provider.make_request("eth_call", [{"from": sender, "to": target, "data": data,
                                                    "gas": hex(5_000_000)}, "latest"])
    return None if "error" not in answer else str(answer["error"].get("data") or answer["error"])


def _tool_decision(w3, deployment, keeper, pool):
    """The tool's answer now: (sequencer reason or None, accounts the rule and sentinel let be
    liquidated, every rule-planned account with its (collateral, debt) pair and HF)."""
    feed, grace = AaveV3PriceSources(w3, deployment).sequencer_uptime_feed()
    reason = sequencer_down(w3, feed, grace)
    snap = read_snapshot(w3, deployment, w3.eth.block_number)
    rules = AaveV3Rules()
    (book,) = rules.books(snap)
    prices = book.extra["oracle_prices"]
    plan = rules.liquidate(book, prices)
    permitted = rules.sentinel_permits(book, prices, reason is None)
    hf = rules.health_factor(book, prices)
    planned = [(book.accounts[row], book.assets[plan.seized[k].argmax()], book.assets[plan.repaid[k].argmax()],
                hf[row]) for k, row in enumerate(plan.rows)]
    allowed = {book.accounts[row] for row in plan.rows if permitted[row]}
    healthy = [book.accounts[i] for i in np.argsort(-np.where(np.isfinite(hf), hf, 1e9))[:8]]
    return reason, allowed, planned, healthy


def test_the_sentinel_decision_equals_the_chain_in_and_after_the_grace_period(chain_checkpoint):
    devnet = chain_checkpoint
    w3, book_json = devnet.w3, devnet.book
    deployment = market_of(book_json, "aave-v3")
    pool = deployment["pool"]
    provider = to_checksum_address(read(w3, pool, "ADDRESSES_PROVIDER()(address)"))
    # our settable feed (its constructor takes a positive answer: 1, the sequencer down)
    feed = _deploy(w3, fixture_artifact("oracles", "PriceFeed"), "L2 sequencer uptime", 1)
    sentinel = _deploy(w3, origin.artifact("PriceOracleSentinel"), provider, feed, GRACE_SECONDS)
    send_as(w3, read(w3, provider, "owner()(address)"), provider, "setPriceOracleSentinel(address)", sentinel)
    assert AaveV3PriceSources(w3, deployment).sequencer_uptime_feed() == (feed, GRACE_SECONDS)

    tokens, decimals = book_json["tokens"], book_json["decimals"]
    keeper = w3.eth.accounts[1]
    executor = AaveV3Executor(w3, deployment, keeper)
    for funded in ("USDC", "USDT", "DAI", "WETH"):
        executor.fund_keeper(tokens[funded], 10**9 * 10 ** decimals[funded])
    executor.set_price("WETH", devnet.scenario.assets["WETH"].price_usd * 0.7)   # some under HF 0.95, some above
    borrow_usdc = (tokens["USDC"], 10 ** decimals["USDC"], 2, 0)

    mover = PriceMover(w3)
    states = {"down": lambda: mover.set_answer(feed, 1), "up, in grace": lambda: mover.set_answer(feed, 0),
              "up, past grace": lambda: (rpc(w3, "evm_increaseTime", [GRACE_SECONDS + 60]), rpc(w3, "evm_mine", []))}
    seen_exempt = seen_paused = 0
    for state, enter in states.items():
        enter()
        reason, allowed, planned, healthy = _tool_decision(w3, deployment, keeper, pool)
        assert (reason is None) == (state == "up, past grace"), (state, reason)
        assert len(planned) >= 10, state
        errors = {account: _call_error(w3, keeper, pool, LIQUIDATION_CALL, collateral, debt, account, MAX_UINT, False)
                  for account, collateral, debt, _ in planned}
        assert {a for a, error in errors.items() if error is None} == allowed, state
        for account, _, _, hf in planned:
            if account not in allowed:      # refused by the sentinel itself, not by another check
                assert errors[account].startswith(SENTINEL_FAILED), (state, account, hf, errors[account])
                seen_paused += 1
            elif reason is not None:
                assert hf < AaveV3Rules.SENTINEL_EXEMPT_HEALTH_FACTOR
                seen_exempt += 1
        borrows = [_call_error(w3, account, pool, BORROW, *borrow_usdc, account) for account in healthy]
        if reason is None:
            assert any(error is None for error in borrows), borrows
        else:
            assert all(error is not None and error.startswith(SENTINEL_FAILED) for error in borrows), (state, borrows)
    assert seen_exempt > 0 and seen_paused > 0    # both sides of the HF 0.95 exemption were exercised
