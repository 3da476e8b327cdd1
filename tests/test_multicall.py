"""Multicall3 batching returns exactly what single eth_calls return, failures included."""

from __future__ import annotations

import random

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import Web3

from analyzer.devnet.context import DevnetContext, npm_artifact
from analyzer.devnet.solc import fixture_artifact
from analyzer.multicall import (
    AGGREGATE3,
    MULTICALL3_ADDRESS,
    Call,
    aggregate3_answers,
    aggregate3_arguments,
    ensure_multicall3,
    multicall,
    parse_signature,
    single_call,
    split_types,
)
from analyzer.rpc import RetryingProvider, RpcClient
from tests.conftest import requires_anvil

pytestmark = requires_anvil


def test_aggregate3_selector_is_the_canonical_one():
    # Multicall3's aggregate3 selector on every chain is 0x82ad56cb
    assert parse_signature(AGGREGATE3)[0].hex() == "82ad56cb"
    assert parse_signature(AGGREGATE3)[0] == function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])")


def test_split_types_keeps_tuples_whole():
    assert split_types("(address,bool,bytes)[],uint256,(uint8,(int24,int24))") == (
        "(address,bool,bytes)[]", "uint256", "(uint8,(int24,int24))")


def test_aggregate3_is_encoded_and_decoded_as_eth_abi_does():
    """The hand-written aggregate3 encoding and answer decoding against eth-abi's, on random batches
    (empty calldata, whole words, ragged lengths; failed and empty answers)."""
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(0, 12)
        calls = [(to_checksum_address("0x" + rng.randbytes(20).hex()), rng.randbytes(rng.choice([0, 4, 36, rng.randint(1, 150)])))
                 for _ in range(n)]
        assert aggregate3_arguments(calls) == abi_encode(["(address,bool,bytes)[]"], [[(t, True, d) for t, d in calls]])
        answers = [(rng.random() < 0.7, rng.randbytes(rng.choice([0, 32, rng.randint(1, 150)]))) for _ in range(n)]
        raw = abi_encode(["(bool,bytes)[]"], [answers])
        assert aggregate3_answers(raw) == list(abi_decode(["(bool,bytes)[]"], raw)[0]) == answers


@pytest.mark.parametrize("damage", ["truncated", "count", "flag", "padding", "pointer"])
def test_a_malformed_aggregate3_answer_is_refused(damage):
    raw = bytearray(abi_encode(["(bool,bytes)[]"], [[(True, b"\x01" * 33), (False, b"")]]))
    # layout: [0x20][count][offset0][offset1] | [flag][0x40][len 33][2 data words] | [flag][0x40][len 0]
    element0 = 32 * 4
    if damage == "truncated":
        raw = raw[:-40]
    elif damage == "count":
        raw[32:64] = (10**6).to_bytes(32, "big")
    elif damage == "flag":
        raw[element0:element0 + 32] = (2).to_bytes(32, "big")
    elif damage == "padding":
        raw[element0 + 32 * 3 + 33] = 1       # the byte after the 33 data bytes, inside their padding
    else:
        raw[64:96] = (len(raw)).to_bytes(32, "big")
    with pytest.raises(ValueError):
        aggregate3_answers(bytes(raw))


@pytest.fixture
def contracts(anvil):
    w3 = anvil.w3
    ensure_multicall3(w3)
    ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=None)
    token = ctx.deploy(npm_artifact("@aave/core-v3", "MintableERC20"), "Wrapped Ether", "WETH", 18)
    feed = ctx.deploy(fixture_artifact("oracles", "PriceFeed"), "WETH / USD", 3000 * 10**8)
    holders = [w3.eth.accounts[i] for i in range(1, 6)]
    for i, holder in enumerate(holders):
        ctx.transact(token.functions.mint(holder, (i + 1) * 10**18 + i))
    return anvil, token, feed, holders


def mixed_calls(token, feed, holders):
    calls = [Call(token.address, "balanceOf(address)(uint256)", (h,)) for h in holders]
    calls += [
        Call(token.address, "symbol()(string)"),
        Call(token.address, "decimals()(uint8)"),
        Call(feed.address, "latestRoundData()(uint80,int256,uint256,uint256,uint80)"),
        # reverts: only the owner may set the answer, and Multicall3 is not the owner
        Call(feed.address, "setAnswer(int256)()", (1,)),
        # no code at this address: the call "succeeds" with empty data, which cannot decode
        Call("0x000000000000000000000000000000000000dEaD", "balanceOf(address)(uint256)", (holders[0],)),
        Call(MULTICALL3_ADDRESS, "getEthBalance(address)(uint256)", (holders[0],)),
    ]
    return calls


def test_multicall_equals_single_calls_including_failures(contracts):
    anvil, token, feed, holders = contracts
    w3 = anvil.w3
    block = w3.eth.block_number
    calls = mixed_calls(token, feed, holders)
    batched = multicall(w3, calls, block=block, chunk_size=4)
    singles = [single_call(w3, c, block=block) for c in calls]
    assert batched == singles
    assert [r.success for r in batched[-3:]] == [False, False, True]
    assert batched[0].value == 10**18 and batched[4].value == 5 * 10**18 + 4
    assert batched[5].value == "WETH"


def test_single_call_through_the_scan_provider_asks_once(contracts):
    """Through a scan's own provider, single_call gives what it gives through web3's (reverts,
    undecodable answers and a "latest" block included) with one request per call: a revert is read
    from the node's first answer, not asked again."""
    anvil, token, feed, holders = contracts
    block = anvil.w3.eth.block_number
    client = RpcClient(anvil.url)
    scan_w3 = Web3(RetryingProvider(client))
    calls = mixed_calls(token, feed, holders)
    ours = [single_call(scan_w3, c, block=block) for c in calls]
    assert ours == [single_call(anvil.w3, c, block=block) for c in calls]
    assert [r.success for r in ours[-3:]] == [False, False, True]
    assert client.calls["eth_call"] == len(calls)
    assert single_call(scan_w3, calls[0], block="latest").value == 10**18


def test_multicall_reads_the_block_it_is_given(contracts):
    anvil, token, _feed, holders = contracts
    w3 = anvil.w3
    before = w3.eth.block_number
    ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=None)
    ctx.transact(token.functions.mint(holders[0], 7))
    call = Call(token.address, "balanceOf(address)(uint256)", (holders[0],))
    assert multicall(w3, [call], block=before)[0].value == 10**18
    assert multicall(w3, [call], block=w3.eth.block_number)[0].value == 10**18 + 7


def test_multicall_chunking_does_not_change_results(contracts):
    anvil, token, feed, holders = contracts
    w3 = anvil.w3
    block = w3.eth.block_number
    calls = mixed_calls(token, feed, holders) * 7
    assert multicall(w3, calls, block=block, chunk_size=5) == multicall(w3, calls, block=block, chunk_size=1000)


def test_ensure_multicall3_installs_our_runtime_code(anvil):
    w3 = anvil.w3
    assert len(w3.eth.get_code(MULTICALL3_ADDRESS)) == 0
    ensure_multicall3(w3)
    code = w3.eth.get_code(MULTICALL3_ADDRESS)
    assert "0x" + code.hex().removeprefix("0x") == fixture_artifact("multicall", "Multicall3")["deployedBytecode"]
    assert multicall(w3, [Call(MULTICALL3_ADDRESS, "getChainId()(uint256)")], block=w3.eth.block_number)[0].value == 31337


def test_one_word_outputs_decode_as_eth_abi_does():
    """Calls whose outputs are each one word (uintN, address, bool) are decoded without eth-abi:
    the same values and types as eth-abi's strict decoder, and the same failures (a bit past the
    type's width, a bool other than 0/1, a short answer)."""
    from analyzer.multicall import _decode_result

    rng = random.Random(7)
    kinds = ["uint256", "uint8", "uint16", "uint40", "uint64", "uint128", "address", "bool"]
    for _ in range(3000):
        outputs = [rng.choice(kinds) for _ in range(rng.randint(1, 4))]
        words = []
        for kind in outputs:
            width = 256 if rng.random() < 0.1 else 160 if kind == "address" else 2 if kind == "bool" else int(kind[4:])
            words.append(rng.getrandbits(width).to_bytes(32, "big"))
        data = b"".join(words)
        cut = rng.random()
        data = data[:rng.randint(0, len(data))] if cut < 0.1 else data + bytes(rng.randint(1, 64)) if cut < 0.2 else data
        try:
            values = abi_decode(outputs, data)
            expected = (True, values[0] if len(values) == 1 else values)
        except Exception:
            expected = (False, None)
        got = _decode_result(Call("0x" + "11" * 20, f"f()({','.join(outputs)})"), True, data)
        assert (got.success, got.value) == expected, (outputs, data.hex())
        flat = got.value if isinstance(got.value, tuple) else (got.value,)
        want = expected[1] if isinstance(expected[1], tuple) else (expected[1],)
        assert [type(v) for v in flat] == [type(v) for v in want]
