"""Discovery: one eth_getLogs per range for all of a protocol's contracts, cached block chunks that
a later scan and an interrupted scan reuse, a node's range limit learnt once."""

from __future__ import annotations

import pytest
from eth_utils import to_checksum_address

from analyzer.books import market_of
from analyzer.rpc import RpcClient
from analyzer.scan import ScanStats, scan
from protocols import plugins
from protocols.aave_v3 import abi as aave_abi
from tests.conftest import requires_anvil
from tests.rpcserver import FaultProxy
from tests.test_scan import tables_equal

pytestmark = requires_anvil
LENDERS = ("aave-v3", "compound-v2", "comet")


def chosen(*names):
    known = plugins()
    return [known[n] for n in names if n in known]


def onbehalf_on_aave(w3, pool: str, block: int, *events) -> set[str]:
    """onBehalfOf of every one of ``events`` (Pool event ABIs), decoded by web3 from the event ABI."""
    contract = w3.eth.contract(address=to_checksum_address(pool), abi=list(events))
    return {e["args"]["onBehalfOf"] for event in events
            for e in contract.events[event["name"]]().get_logs(from_block=0, to_block=block)}


def atoken_receivers(w3, pool: str, block: int) -> set[str]:
    """The receiver of every aToken Transfer but a burn's (decoded by web3)."""
    pool_contract = w3.eth.contract(address=to_checksum_address(pool),
                                    abi=[{"type": "function", "name": "getReservesList", "inputs": [], "stateMutability": "view",
                                          "outputs": [{"name": "", "type": "address[]"}]},
                                         {"type": "function", "name": "getReserveAToken", "stateMutability": "view",
                                          "inputs": [{"name": "asset", "type": "address"}],
                                          "outputs": [{"name": "", "type": "address"}]}])
    found = set()
    for asset in pool_contract.functions.getReservesList().call(block_identifier=block):
        token = w3.eth.contract(address=pool_contract.functions.getReserveAToken(asset).call(block_identifier=block),
                                abi=[aave_abi.TRANSFER_EVENT])
        found |= {e["args"]["to"] for e in token.events.Transfer().get_logs(from_block=0, to_block=block)}
    return found - {"0x" + "00" * 20}


def test_one_log_request_per_range_finds_every_account(devnet, tmp_path):
    block = devnet.w3.eth.block_number
    stats = ScanStats()
    snapshot = scan(devnet.url, chosen(*LENDERS), book=devnet.book, block=block, cache_dir=tmp_path, stats=stats,
                    chunk_blocks=10**6)
    protocols = [p for p in LENDERS if p in devnet.book["protocols"]]
    markets = sum(len(devnet.book["protocols"][p]) for p in protocols)
    # one chunk, one range, per market (Comet has two): every cToken, the Comptroller and all topics
    # in one request
    assert stats.requests["eth_getLogs"] == markets
    if "aave-v3" in protocols:
        pool = market_of(devnet.book, "aave-v3")["pool"]
        # borrowers and aToken receivers; a supplier is an aToken receiver (the supply's mint), so no
        # Supply event is asked
        expected = onbehalf_on_aave(devnet.w3, pool, block, aave_abi.BORROW_EVENT) | atoken_receivers(devnet.w3, pool, block)
        assert onbehalf_on_aave(devnet.w3, pool, block, aave_abi.SUPPLY_EVENT) <= expected
        assert stats.accounts["aave-v3"] == len(expected) > 100
        held = set(snapshot.positions[snapshot.positions["protocol"] == "aave-v3"]["account"])
        assert held <= expected


def test_a_later_scan_reads_only_the_blocks_it_has_not_seen(chain_checkpoint, tmp_path):
    devnet = chain_checkpoint
    lenders = chosen(*LENDERS)
    first = devnet.w3.eth.block_number
    scan(devnet.url, lenders, book=devnet.book, block=first, cache_dir=tmp_path, chunk_blocks=200)
    devnet.w3.provider.make_request("anvil_mine", ["0x100"])  # past the next chunk boundary
    later = devnet.w3.eth.block_number
    stats = ScanStats()
    again = scan(devnet.url, lenders, book=devnet.book, block=later, cache_dir=tmp_path, chunk_blocks=200, stats=stats)
    protocols = sum(len(devnet.book["protocols"][p]) for p in LENDERS if p in devnet.book["protocols"])  # markets
    full_chunks = first // 200       # chunks the first scan completed
    assert stats.discovery.chunks_cached == protocols * full_chunks
    # per protocol: the tail of the partial chunk the first scan left, and the new chunk
    new_chunks = later // 200 - first // 200 + 1
    assert stats.requests["eth_getLogs"] == protocols * new_chunks
    tables_equal(again, scan(devnet.url, lenders, book=devnet.book, block=later, cache_dir=None))


def test_an_interrupted_discovery_resumes_without_reading_a_finished_range(devnet, tmp_path):
    lenders = chosen("aave-v3", "comet")
    block = devnet.w3.eth.block_number
    chunk = 100
    stop_after = 6

    def crash(label, done, total):
        if label.endswith("discovery") and done >= stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, chunk_blocks=chunk, progress=crash)
    stats = ScanStats()
    resumed = scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path, chunk_blocks=chunk, stats=stats)
    chunks = block // chunk + 1
    # aave-v3 stopped after stop_after chunks; comet's markets (two on the devnet) had not started
    comet_markets = len(devnet.book["protocols"].get("comet", {}))
    assert stats.discovery.chunks_cached == stop_after
    assert stats.requests["eth_getLogs"] == (chunks - stop_after) + chunks * comet_markets
    tables_equal(resumed, scan(devnet.url, lenders, book=devnet.book, block=block, cache_dir=None))


def test_a_node_range_limit_is_learnt_once_and_remembered(devnet, tmp_path):
    block = devnet.w3.eth.block_number
    lenders = chosen(*LENDERS)
    with FaultProxy(devnet.url, faults=(), rate=0.0, max_log_range=64) as proxy:
        client = RpcClient(proxy.url)
        scan(proxy.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path / "a", client=client)
        refused = proxy.injected["logs_range_limit"]
        assert 0 < refused <= 12          # halvings from 100,000 blocks to 64, then never again
        assert client.log_span <= 64
        # a new process with only the remembered width in its cache: nothing is refused
        (remembered,) = (tmp_path / "a").rglob("log-span-*.json")
        target = tmp_path / "b" / remembered.relative_to(tmp_path / "a")
        target.parent.mkdir(parents=True)
        target.write_bytes(remembered.read_bytes())
        scan(proxy.url, lenders, book=devnet.book, block=block, cache_dir=tmp_path / "b", client=RpcClient(proxy.url))
        assert proxy.injected["logs_range_limit"] == refused
