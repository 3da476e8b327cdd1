"""The devnet core: every scenario asset is a real token with a price feed at the scenario price."""

from __future__ import annotations

from analyzer.devnet.scenario import account_address, load
from analyzer.multicall import Call, multicall
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def test_tokens_and_feeds_match_the_scenario(devnet):
    scenario = load("mainnet-like")
    w3, book = devnet.w3, devnet.book
    block = w3.eth.block_number
    symbols = sorted(scenario.assets)
    calls = []
    for symbol in symbols:
        calls += [Call(book["tokens"][symbol], "symbol()(string)"), Call(book["tokens"][symbol], "decimals()(uint8)"),
                  Call(book["feeds"][symbol], "latestAnswer()(int256)"), Call(book["feeds"][symbol], "decimals()(uint8)")]
    values = [r.unwrap() for r in multicall(w3, calls, block=block)]
    for i, symbol in enumerate(symbols):
        spec = scenario.assets[symbol]
        assert values[4 * i:4 * i + 4] == [symbol, spec.decimals, round(spec.price_usd * 10**8), 8]


def test_account_labels_give_stable_distinct_addresses():
    assert account_address("pop-1") == account_address("pop-1")
    assert len({account_address(f"pop-{i}") for i in range(500)}) == 500
