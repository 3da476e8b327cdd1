"""Address books: one shape for built-in and devnet books, checked by one loader.

The structure test runs every plugin's reader on the devnet with a deployment that records which
keys the reader looks up unconditionally (``deployment[key]``), and checks that every built-in
market of that plugin has each of them as a real address: a built-in book can never stop a
mainnet scan with ``missing "..."``.
"""

from __future__ import annotations

import json

import pytest

from analyzer.books import builtin_books, builtin_markets, deployments_for, load_book, market_rows, parse_book
from analyzer.cli import main
from analyzer.errors import ContagionError
from analyzer.scan import scan
from protocols import plugins
from protocols.base import ReadContext
from tests.conftest import requires_anvil


class RecordingDeployment(dict):
    """A deployment that remembers the keys read with ``[]`` (the ones a reader cannot do without)."""

    def __init__(self, data, seen: set[str]):
        super().__init__(data)
        self.seen = seen

    def __getitem__(self, key):
        self.seen.add(key)
        return super().__getitem__(key)


def test_every_builtin_book_parses_with_the_loader_and_cites_its_sources():
    books = builtin_books()
    ethereum_comets = {name for book in books if book["chain_id"] == 1 for name in book["protocols"].get("comet", {})}
    assert ethereum_comets == {"cUSDCv3", "cUSDSv3", "cUSDTv3", "cWBTCv3", "cWETHv3", "cWstETHv3"}
    assert {name for book in books for name in book["protocols"]} >= {"aave-v3", "comet", "compound-v2"}
    for book in books:
        for name, markets in book["protocols"].items():
            for market, deployment in markets.items():
                assert deployment["source"], (name, market)
                # Comet and Compound V2 on Ethereum name the block their discovery may start from
                assert book["chain_id"] != 1 or name not in ("comet", "compound-v2") or \
                    deployment["start_block"] > 0, (name, market)
                # so does every Compound V2 fork and every Comet on every chain (none from genesis)
                assert name not in ("comet", "compound-v2") or deployment["start_block"] > 0, (book["chain"], market)
                # the V4 reader reads Initialize events from the PoolManager's deployment block
                assert name != "uniswap-v4" or deployment["start_block"] > 0, (book["chain"], market)
    ethereum_v4 = {m: d for book in books if book["chain_id"] == 1 for m, d in book["protocols"].get("uniswap-v4", {}).items()}
    assert ethereum_v4["Uniswap V4"]["pool_manager"] == "0x000000000004444c5dc75cB358380D2e3dE08A90"
    assert ethereum_v4["Uniswap V4"]["start_block"] == 21688329


def test_book_keys_are_addresses_in_every_builtin_market():
    from eth_utils import is_checksum_address

    for market in builtin_markets(list(plugins().values())):
        for key in market.plugin.reader.book_keys:
            value = market.deployment[key]
            if isinstance(value, str):
                assert is_checksum_address(value), (market.plugin.name, market.name, key, value)
        assert market.main_address, (market.plugin.name, market.name)


def test_every_builtin_market_makes_its_reader():
    """A reader takes its market as the book gives it (fork profiles and the like resolve), before
    any chain is asked."""
    ctx = ReadContext(w3=None, chain_id=1, block=0, multicall=None, get_logs=None)
    for market in builtin_markets(list(plugins().values())):
        assert market.plugin.reader(ctx, market.deployment).deployment is market.deployment


@requires_anvil
def test_builtin_markets_name_every_contract_the_readers_read(devnet):
    """Run each reader on the devnet's markets, recording the deployment keys it indexes; the
    declared ``book_keys`` cover them, and so every built-in market (checked by the loader) has them."""
    from web3 import Web3

    from analyzer.multicall import multicall

    w3: Web3 = devnet.w3
    block = w3.eth.block_number
    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block),
                      get_logs=lambda address, topics, start, end: w3.eth.get_logs(
                          {"address": address, "topics": topics, "fromBlock": start, "toBlock": end}))
    checked = 0
    for market in deployments_for(list(plugins().values()), w3.eth.chain_id, devnet.book):
        reader_type = market.plugin.reader
        if reader_type is None or market.plugin.name not in {"aave-v3", "comet", "compound-v2", "uniswap-v3", "uniswap-v4"}:
            continue
        seen: set[str] = set()
        reader = reader_type(ctx, RecordingDeployment(market.deployment, seen))
        reader.read_markets()
        accounts = reader.discover_accounts(0, block)[:5]
        reader.read_accounts(accounts)
        assert seen <= set(reader_type.book_keys), (market.plugin.name, seen - set(reader_type.book_keys))
        checked += 1
    assert checked >= 3


def test_the_loader_names_what_is_wrong_in_one_line(tmp_path):
    known = plugins()
    good = {"chain_id": 1, "chain": "ethereum",
            "protocols": {"comet": {"cUSDCv3": {"comet": "0xc3d688B66703497DAA19211EEdff47f25384cdc3"}}}}
    assert parse_book(good, "b", known) is good
    cases = [
        ({**good, "chain_id": "1"}, '"chain_id" must be a positive integer'),
        ({k: v for k, v in good.items() if k != "chain"}, '"chain" must name the chain'),
        ({**good, "protocols": {"comet": {"comet": "0xc3d688B66703497DAA19211EEdff47f25384cdc3"}}},
         "is the market level missing?"),
        ({**good, "protocols": {"comet": {"cUSDCv3": {"base": "0xc3d688B66703497DAA19211EEdff47f25384cdc3"}}}},
         'comet market "cUSDCv3": missing "comet"'),
        ({**good, "protocols": {"comet": {"cUSDCv3": {"comet": "0xC3d688B66703497DAA19211EEdff47f25384cdc3"}}}},
         "is not an address"),
        ({**good, "protocols": {"nope": {"m": {}}}}, 'unknown protocol "nope"'),
        ({**good, "protocols": {"comet": {"cUSDCv3": {"comet": "0xc3d688B66703497DAA19211EEdff47f25384cdc3",
                                                      "start_block": -1}}}}, "non-negative integer"),
    ]
    for data, message in cases:
        with pytest.raises(ContagionError, match=message) as info:
            parse_book(data, "b", known)
        assert "\n" not in str(info.value)
    bad = tmp_path / "book.json"
    bad.write_text("{not json")
    with pytest.raises(ContagionError, match="not valid JSON"):
        load_book(bad)
    bad.write_text(json.dumps(good["protocols"]))
    assert main(["scan", "--rpc", "http://127.0.0.1:1", "--book", str(bad)]) == 2


def test_markets_narrow_the_scan_and_unknown_names_are_refused():
    comet = [plugins()["comet"]]
    found = deployments_for(comet, 1, None, ["cUSDCv3"])
    assert [m.name for m in found] == ["cUSDCv3"]
    with pytest.raises(ContagionError, match="no market named cNOPEv3 on chain 1 .known: .*cUSDCv3"):
        deployments_for(comet, 1, None, ["cNOPEv3"])


def test_contagion_markets_lists_every_builtin_market(capsys):
    assert main(["markets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = {(m.plugin.name, m.name, m.main_address) for m in builtin_markets(list(plugins().values()))}
    assert {(r["protocol"], r["market"], r["address"]) for r in rows} == expected
    assert all(r["chain"] and r["chain_id"] > 0 and r["source"] for r in rows)
    assert rows == market_rows(list(plugins().values()))
    assert main(["markets"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["protocol", "chain_id", "chain", "market", "address"] and len(table) == len(rows) + 1


@requires_anvil
def test_a_scan_through_the_written_devnet_book_reads_every_market(devnet, tmp_path):
    """``devnet up --book-out`` writes the book; the loader reads it back; the scan reads every market
    of it, and the snapshot's meta keeps the markets it read by plugin and name."""
    from analyzer.devnet.build import write_address_book

    path = write_address_book(devnet.book, tmp_path / "book.json")
    book = load_book(path)
    lenders = [p for n, p in plugins().items() if n in ("comet", "compound-v2")]
    snapshot = scan(devnet.url, lenders, book=book, cache_dir=None)
    for plugin in lenders:
        assert snapshot.meta["protocols"][plugin.name] == book["protocols"][plugin.name]
        names = set(snapshot.markets.loc[snapshot.markets["protocol"] == plugin.name, "market"])
        assert names == {m.main_address for m in deployments_for([plugin], devnet.w3.eth.chain_id, book)}
