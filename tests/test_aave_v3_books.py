"""The committed Aave V3 address books are what the pinned ``@aave-dao/aave-address-book`` gives, and
cover the markets mainnet runs: several on Ethereum, the main L2s and sidechains."""

from __future__ import annotations

from eth_utils import is_checksum_address

from protocols.aave_v3.books import generate, load_books, markets


def test_committed_books_equal_a_fresh_generation_from_the_npm_package():
    fresh = generate.books(generate.read_markets(), generate.package_version())
    assert fresh == load_books(), "protocols/aave_v3/books is stale: run `python -m protocols.aave_v3.books.generate`"


def test_books_cover_ethereum_markets_and_other_chains_with_their_source():
    version = generate.package_version()
    assert version == "4.68.1"
    ethereum = markets(1)
    assert {"AaveV3Ethereum", "AaveV3EthereumLido", "AaveV3EthereumEtherFi", "AaveV3EthereumHorizon"} <= set(ethereum)
    production = {chain_id for chain_id, book in load_books().items() if chain_id != 1
                  and any(not m["testnet"] for m in book["protocols"]["aave-v3"].values())}
    assert {10, 56, 100, 137, 8453, 42161, 43114} <= production
    for book in load_books().values():
        for name, entry in book["protocols"]["aave-v3"].items():
            assert entry["source"] == f"@aave-dao/aave-address-book {version} ({name})"
            assert is_checksum_address(entry["pool"]) and is_checksum_address(entry["pool_addresses_provider"])
            assert entry["pool"] != entry["pool_addresses_provider"] and isinstance(entry["start_block"], int)
    assert ethereum["AaveV3Ethereum"]["pool"] == "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
