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


def test_devnet_tokens_are_our_erc20_with_open_minting(devnet, chain_checkpoint):
    from analyzer.devnet.build import TOKEN
    from analyzer.devnet.solc import fixture_artifact

    w3 = devnet.w3
    token = w3.eth.contract(address=devnet.book["tokens"]["WETH"], abi=fixture_artifact(*TOKEN)["abi"])
    alice, bob = w3.eth.accounts[5], w3.eth.accounts[6]

    def send(call, sender):
        receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
        assert receipt["status"] == 1
        return receipt

    supply = token.functions.totalSupply().call()
    start = token.functions.balanceOf(bob).call()
    send(token.functions.mint(alice, 10**18), alice)
    assert token.functions.totalSupply().call() == supply + 10**18
    send(token.functions.approve(bob, 4 * 10**17), alice)
    send(token.functions.transferFrom(alice, bob, 3 * 10**17), bob)
    assert token.functions.allowance(alice, bob).call() == 10**17
    assert token.functions.balanceOf(bob).call() == start + 3 * 10**17
    # over the allowance: reverts and moves nothing
    tx = token.functions.transferFrom(alice, bob, 2 * 10**17).build_transaction({"from": bob, "gas": 200_000})
    assert w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))["status"] == 0
    assert token.functions.balanceOf(bob).call() == start + 3 * 10**17
