"""Compound V2 borrows kept as the cToken stores them (principal, interestIndex: read from its
storage through our code in an eth_call override): after the markets accrue interest, each kept
pair gives back the cToken's own ``borrowBalanceStored`` at the new block."""

from __future__ import annotations

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.discovery import CHUNK_BLOCKS
from analyzer.multicall import Call
from analyzer.rpc import RpcClient
from analyzer.scan import ScanStats, _read_context, scan
from protocols import plugins
from protocols.compound_v2.borrows import borrow_pairs
from protocols.compound_v2.reader import CompoundV2Reader
from tests.conftest import requires_anvil
from tests.test_scan import tables_equal
from tests.test_scan_incremental import send

pytestmark = requires_anvil


def reader_at(devnet, block: int) -> CompoundV2Reader:
    ctx = _read_context(devnet.url, RpcClient(devnet.url), devnet.w3.eth.chain_id, block, True, CHUNK_BLOCKS)
    return CompoundV2Reader(ctx, market_of(devnet.book, "compound-v2"))


def borrows(devnet, block: int) -> dict[tuple[str, str], int]:
    """(account, cToken) -> ``borrowBalanceStored`` at ``block``, read through Multicall3."""
    snapshot = scan(devnet.url, [plugins()["compound-v2"]], book=devnet.book, block=block, cache_dir=None,
                    use_lens=False, oracle_paths=False)
    debt = snapshot.positions[snapshot.positions["side"] == "debt"]
    return {(a, c): int(r) for a, c, r in zip(debt["account"], debt["reserve"], debt["raw"], strict=True)}


def test_kept_borrow_pairs_give_back_borrow_balance_stored_after_interest(chain_checkpoint):
    devnet = chain_checkpoint
    w3 = devnet.w3
    earlier = w3.eth.block_number
    before = borrows(devnet, earlier)
    reader = reader_at(devnet, earlier)
    index_of = {m["ctoken"]: j for j, m in enumerate(reader.markets())}
    asked: dict[str, dict[int, int]] = {}
    for (account, ctoken), balance in before.items():
        asked.setdefault(account, {})[index_of[ctoken]] = balance
    pairs = borrow_pairs(reader, asked)
    # every borrow's pair is found and proven at the block it was read
    assert sum(map(len, pairs.values())) == len(before) > 10
    # every market with a borrow accrues interest (a borrow there), a day passes
    actor = account_address("pop-5")
    ctokens = sorted({ctoken for _, ctoken in before})
    for ctoken in ctokens:
        send(w3, actor, Call(ctoken, "accrueInterest()(uint256)"))
    w3.provider.make_request("evm_increaseTime", [86400])
    w3.provider.make_request("anvil_mine", ["0x2"])
    later = w3.eth.block_number
    after = borrows(devnet, later)
    markets = reader_at(devnet, later).markets()
    computed = {(account, markets[j]["ctoken"]): principal * markets[j]["borrow_index"] // interest_index
                for account, held in pairs.items() for j, (principal, interest_index) in held.items()}
    assert computed == after
    assert sum(computed[key] != before[key] for key in before) > len(before) // 2   # the balances moved


def test_a_rescan_without_borrow_pairs_reads_the_moved_borrows_again(chain_checkpoint, tmp_path, monkeypatch):
    """Where the accountBorrows slot is not found (a fork's layout), borrows are kept as balances
    and read again in the markets whose index moved: the rescan is still the full scan's snapshot."""
    from protocols.compound_v2 import borrows as borrows_mod

    monkeypatch.setattr(borrows_mod, "SLOT_CANDIDATES", 3)     # the devnet's slot is past the search
    devnet = chain_checkpoint
    w3, compound = devnet.w3, [plugins()["compound-v2"]]
    earlier = w3.eth.block_number
    first = scan(devnet.url, compound, book=devnet.book, block=earlier, cache_dir=tmp_path, oracle_paths=False)
    debt = first.positions[first.positions["side"] == "debt"]
    actor = account_address("pop-5")
    for ctoken in sorted(set(debt["reserve"])):     # every market with a borrow accrues (no event names an account)
        send(w3, actor, Call(ctoken, "accrueInterest()(uint256)"))
    w3.provider.make_request("evm_increaseTime", [86400])
    w3.provider.make_request("anvil_mine", ["0x2"])
    later = w3.eth.block_number
    stats = ScanStats()
    rescan = scan(devnet.url, compound, book=devnet.book, block=later, cache_dir=tmp_path, since_block=earlier,
                  stats=stats, oracle_paths=False)
    tables_equal(rescan, scan(devnet.url, compound, book=devnet.book, block=later, cache_dir=None, use_lens=False,
                              oracle_paths=False))
    assert stats.accounts["compound-v2"] == 0 and stats.accounts_refreshed["compound-v2"] >= 40
    after = borrows(devnet, later)
    assert sum(after[(a, c)] != int(r) for a, c, r in zip(debt["account"], debt["reserve"], debt["raw"], strict=True)) \
        > len(debt) // 2       # the balances moved: read again, not kept
    # a rescan of the rescan starts from the balances and indices it wrote again (its changed words)
    for ctoken in sorted(set(debt["reserve"])):
        send(w3, actor, Call(ctoken, "accrueInterest()(uint256)"))
    w3.provider.make_request("evm_increaseTime", [86400])
    w3.provider.make_request("anvil_mine", ["0x2"])
    last = w3.eth.block_number
    again = scan(devnet.url, compound, book=devnet.book, block=last, cache_dir=tmp_path, since_block=later,
                 oracle_paths=False)
    tables_equal(again, scan(devnet.url, compound, book=devnet.book, block=last, cache_dir=None, use_lens=False,
                             oracle_paths=False))
