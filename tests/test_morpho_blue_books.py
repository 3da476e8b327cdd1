"""The mainnet Morpho Blue books: feeds and tokens as the pinned Aave address book lists them."""

from __future__ import annotations

import re

from eth_utils import is_checksum_address

from analyzer.chain import REPO_ROOT
from protocols import get

BOOK = REPO_ROOT / "node_modules" / "@aave-dao" / "aave-address-book" / "dist"
FEEDS = {1: ("ChainlinkEthereum", "AaveV3Ethereum"), 8453: ("ChainlinkBase", "AaveV3Base")}


def _js_constants(name: str) -> set[str]:
    return set(re.findall(r'"(0x[0-9a-fA-F]{40})"', (BOOK / f"{name}.js").read_text()))


def test_morpho_books_name_the_singleton_and_feeds_the_address_book_lists():
    books = get("morpho-blue").mainnet
    assert set(books) == {1, 8453}
    for chain_id, (feeds_file, reserves_file) in FEEDS.items():
        entry = books[chain_id]
        assert entry["morpho"] == "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb" and entry["source"]
        assert entry["start_block"] > 10_000_000
        feeds, tokens = _js_constants(feeds_file), _js_constants(reserves_file)
        for token, feed in entry["usd_feeds"].items():
            assert is_checksum_address(token) and is_checksum_address(feed)
            assert feed in feeds, f"{feed} is not a Chainlink feed of chain {chain_id}"
            assert token in tokens, f"{token} is not an Aave reserve of chain {chain_id}"
