"""Comet's price feeds answered as constants for the lens's eth_call (protocols/comet/feeds.py): the
code answers exactly the bytes read at the block and nothing else; a scan with them reads the
Multicall3 snapshot; a feed the constant cannot stand in for is caught and read as it is."""

from __future__ import annotations

import logging

import pytest
from eth_utils import function_signature_to_4byte_selector

from analyzer.errors import ContagionError
from analyzer.rpc import RpcClient
from analyzer.scan import scan
from protocols import plugins
from protocols.comet import feeds
from protocols.comet import lens as comet_lens
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal

pytestmark = requires_anvil
SOMEWHERE = "0x00000000000000000000000000000000000c0de1"


def comet():
    return [plugins()["comet"]]


def test_the_constant_code_answers_its_selector_and_reverts_on_anything_else(anvil):
    answer = bytes(range(160))
    code = feeds.constant_code(feeds.LATEST_ROUND_DATA, answer)
    client = RpcClient(anvil.url)
    placed = {SOMEWHERE: {"code": code}}

    def call(data: str):
        return client.request("eth_call", [{"to": SOMEWHERE, "data": data}, "latest", placed])
    assert call("0x" + feeds.LATEST_ROUND_DATA.hex()) == "0x" + answer.hex()
    other = function_signature_to_4byte_selector("decimals()").hex()
    for data in ("0x" + other, "0x" + feeds.LATEST_ROUND_DATA.hex() + "00" * 32, "0x"):
        with pytest.raises(ContagionError, match="revert"):
            call(data)


@pytest.fixture(scope="module")
def comet_reference(devnet):
    block = devnet.w3.eth.block_number
    return block, scan(devnet.url, comet(), book=devnet.book, block=block, cache_dir=None, use_lens=False,
                       oracle_paths=False)


def test_a_scan_with_constant_feeds_reads_the_multicall_snapshot(devnet, comet_reference, monkeypatch):
    block, reference = comet_reference
    used = []
    real = feeds.feed_codes

    def spy(reader):
        codes = real(reader)
        used.append(len(codes))
        return codes
    monkeypatch.setattr(feeds, "feed_codes", spy)
    got = scan(devnet.url, comet(), book=devnet.book, block=block, cache_dir=None, oracle_paths=False)
    tables_equal(got, reference)
    assert used and min(used) >= 2       # a base feed and collateral feeds, in every Comet read
    assert (got.positions["side"] == "debt").sum() > 10     # borrowers: isLiquidatable priced them


def test_a_feed_the_constant_cannot_stand_in_for_is_read_as_it_is(devnet, comet_reference, monkeypatch, caplog):
    block, reference = comet_reference
    # a feed that Comet asks something else than the constant answers: every priced read reverts
    monkeypatch.setattr(feeds, "LATEST_ROUND_DATA", function_signature_to_4byte_selector("decimals()"))
    with caplog.at_level(logging.WARNING, logger="protocols.comet.feeds"):
        got = scan(devnet.url, comet(), book=devnet.book, block=block, cache_dir=None, oracle_paths=False)
    tables_equal(got, reference)
    assert "constant price feeds reverted" in caplog.text
    assert comet_lens.lens_code()      # the lens itself is unchanged
