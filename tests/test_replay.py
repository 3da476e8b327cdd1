"""Replay: real liquidations and swaps on a fork, the source left untouched; senders refuse non-anvil."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest
from web3 import HTTPProvider, Web3

from analyzer.cheats import deal, mine
from analyzer.errors import NotAnvilError
from analyzer.replay import replay, replay_and_compare
from analyzer.scan import scan
from analyzer.scenarios import ShockScenario
from protocols import plugins
from tests.conftest import requires_anvil
from tests.rpcserver import FakeNode

pytestmark = requires_anvil


@pytest.fixture(scope="module")
def replayed(devnet):
    chosen = [plugins()[name] for name in ("aave-v3", "uniswap-v3")]
    w3 = devnet.w3
    block = w3.eth.block_number
    root = w3.eth.get_block(block)["stateRoot"]
    before = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    logger, lines = logging.getLogger("analyzer.replay"), LogLines()
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        result = replay(devnet.url, devnet.book, ShockScenario(name="weth-20", price_shocks={"WETH": -0.20}),
                        chosen, max_rounds=3)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return {"result": result, "before": before, "block": block, "root": root, "w3": w3, "log": lines.lines}


class LogLines(logging.Handler):
    """The lines the replay logged (what the CLI and the demo print on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def flagged_at_round_zero(before, result) -> set[str]:
    """The Aave accounts the protocol's own rule calls liquidatable at the fork's round-0 oracle prices."""
    rules = plugins()["aave-v3"].rules()
    oracle = result.rounds[0].prices_usd
    flagged = set()
    for book in rules.books(before):
        prices = np.array([oracle[a] for a in book.assets])
        flagged |= {str(a) for a in book.accounts[rules.liquidatable(book, prices)]}
    return flagged


def test_replay_never_changes_the_source_chain(replayed):
    w3 = replayed["w3"]
    assert replayed["result"].source_unchanged
    assert w3.eth.block_number == replayed["block"]
    assert w3.eth.get_block(replayed["block"])["stateRoot"] == replayed["root"]
    assert replayed["result"].fork_block_end > replayed["block"]


def test_round_zero_liquidates_every_account_the_aave_rule_flags_at_the_shock(replayed):
    before, result = replayed["before"], replayed["result"]
    oracle = result.rounds[0].prices_usd      # what the fork's oracles answered after the shock
    weth, wsteth = before.address_of("WETH"), before.address_of("wstETH")
    assert oracle[weth] == pytest.approx(before.price_of()[weth] * 0.80, rel=1e-6)
    # wstETH's oracle is the stETH ratio × ETH / USD (a CAPO adapter): it falls with ETH, by the ratio
    assert oracle[wsteth] == pytest.approx(before.price_of()[wsteth] * 0.80, rel=1e-6)
    expected = flagged_at_round_zero(before, result)
    assert expected, "a 20% WETH fall must make some seeded Aave accounts liquidatable"
    round_zero = {x.account for x in result.rounds[0].liquidations if x.protocol == "aave-v3"}
    assert round_zero <= expected
    # a keeper declines only a liquidation that does not pay: one behind others in the queue sells
    # into what they left, so its collateral's pool ends the round further below the oracle price
    # than the bonus covers (gas and pool fees only add to the loss)
    skipped = expected - round_zero
    assert len(skipped) <= len(expected) // 4
    markets = before.markets[before.markets["protocol"] == "aave-v3"].set_index("asset")
    positions = before.positions[(before.positions["protocol"] == "aave-v3")
                                 & (before.positions["side"] == "collateral")]
    pool_after = result.rounds[0].pool_prices_after
    for account in skipped:
        held = positions[positions["account"] == account]
        largest = max(zip(held["asset"], held["amount"], strict=True), key=lambda x: x[1] * oracle[x[0]])[0]
        bonus = float(markets.loc[largest, "liquidation_bonus"])
        assert pool_after[largest] < oracle[largest] / (1 + bonus), (account, largest, bonus)


def test_each_skip_is_logged_once_counted_per_round_and_recorded(replayed):
    """A keeper that declines an account declines it again next round: the console says so once
    per (protocol, account, reason), each round counts it, and replay.json keeps the rounds."""
    before, result, lines = replayed["before"], replayed["result"], replayed["log"]
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, repeated
    round_zero = {x.account for x in result.rounds[0].liquidations if x.protocol == "aave-v3"}
    declined = flagged_at_round_zero(before, result) - round_zero
    assert declined <= {s.account for s in result.skips if s.protocol == "aave-v3" and 0 in s.rounds}
    for skip in result.skips:
        assert sum(f"{skip.protocol} {skip.account}: {skip.reason}" in line for line in lines) == 1, skip
    assert [r.skipped for r in result.rounds] == [sum(r.round in s.rounds for s in result.skips)
                                                  for r in result.rounds]
    recorded = result.to_json()
    assert recorded["skips"] == [{"protocol": s.protocol, "account": s.account, "reason": s.reason,
                                  "rounds": s.rounds} for s in result.skips]
    assert [r["skipped"] for r in recorded["rounds"]] == [r.skipped for r in result.rounds]


def test_selling_seized_collateral_pushes_the_weth_pool_below_the_shock(replayed):
    before, result = replayed["before"], replayed["result"]
    weth = before.address_of("WETH")
    shocked = before.price_of()[weth] * 0.80
    assert result.rounds[0].pool_prices_after[weth] < shocked * (1 - 1e-6)
    assert result.liquidated_usd["aave-v3"] > 0


@pytest.mark.parametrize("claim", ["Geth/v1.13.14-stable", "Nethermind/v1.25.4"])
def test_every_sending_path_refuses_a_node_that_is_not_anvil(claim):
    with FakeNode({"web3_clientVersion": claim, "eth_chainId": "0x1", "eth_blockNumber": "0x10"}) as node:
        w3 = Web3(HTTPProvider(node.url))
        token, account = "0x" + "11" * 20, "0x" + "22" * 20
        with pytest.raises(NotAnvilError):
            deal(w3, token, account, 1)
        with pytest.raises(NotAnvilError):
            mine(w3)
        for plugin in plugins().values():
            if plugin.executor is not None:
                with pytest.raises(NotAnvilError):
                    plugin.executor(w3, {}, account)
            if plugin.venue_executor is not None:
                with pytest.raises(NotAnvilError):
                    plugin.venue_executor(w3, {"router": token, "pools": []}, {}, {})
        # nothing was ever sent: the fake node saw no transaction
        assert not {m for m in node.calls if m.startswith(("eth_send", "anvil_", "evm_"))}


@pytest.mark.slow
@pytest.mark.parametrize("shocks", [{"WETH": -0.20}, {"WETH": -0.40},
                                    {"WETH": -0.30, "wstETH": -0.30, "WBTC": -0.25}],
                         ids=["weth-20", "weth-40", "weth-wsteth-wbtc"])
def test_the_engine_matches_real_liquidations_and_routed_swaps(devnet, shocks):
    """Issue 7's criteria on the devnet's lending protocols and every venue kind (Uniswap V3 at
    two fee tiers, a V2 pair, a V4 pool, StableSwap pools: sales routed across them), at WETH -20%, -40% and a
    joint WETH/wstETH/WBTC move (wstETH's oracle follows ETH / USD by its ratio: only its pools
    take their own move), prices moved only by root-feed overrides: the engine, run on the
    fork's own pre-shock read, liquidates the same accounts as the real transactions, the same
    value per protocol within 1%, leaves bad debt within 1% (or $1) and within $10 (issue 18: the
    -40% spiral's gaps, hundreds of dollars before the engine accrued interest on the replay's own
    clock), and pool prices within 0.5%. The market whose oracle reverts (Compound V2's CRV, its
    price configuration dropped as mainnet's deprecated markets) is named in replay.json and left
    out; the rest of the replay completes."""
    names = ("aave-v3", "compound-v2", "comet", "uniswap-v3", "uniswap-v2", "uniswap-v4", "stableswap")
    chosen = [plugins()[name] for name in names if name in devnet.book.get("protocols", {})]
    shock = ShockScenario(name="-".join(f"{a}{round(m * 100)}" for a, m in shocks.items()), price_shocks=shocks)
    compared = replay_and_compare(devnet.url, devnet.book, shock, chosen)
    replayed, fidelity = compared.replay, compared.fidelity
    assert replayed.reached_fixed_point and replayed.source_unchanged
    lending = [name for name in names[:3] if name in fidelity["protocols"]]
    assert lending and all(fidelity["protocols"][name]["replay_liquidated_usd"] > 0 for name in lending)
    for name, gap in fidelity["protocols"].items():
        assert gap["accounts_ok"], (name, gap["only_in_engine"], gap["only_in_replay"])
        assert gap["value_ok"], (name, gap["engine_liquidated_usd"], gap["replay_liquidated_usd"])
        assert gap["bad_debt_ok"], (name, gap["engine_bad_debt_usd"], gap["replay_bad_debt_usd"])
        assert gap["bad_debt_gap_usd"] < 10.0, (name, gap["engine_bad_debt_usd"], gap["replay_bad_debt_usd"])
    unpriced = replayed.to_json()["unpriced_markets"]
    removed = devnet.scenario.protocol("compound-v2").get("oracle_removed", [])
    assert removed and {(u["protocol"], u["asset"]) for u in unpriced} == \
        {("compound-v2", devnet.book["tokens"][symbol]) for symbol in removed}
    assert fidelity["final_prices"] and all(p["ok"] for p in fidelity["final_prices"].values()), fidelity["final_prices"]
