"""Compound V2 accounts read from storage in the full scan (slots found and proven against the
getters): the same snapshot as Multicall3, most accounts never through the getter lens, the
borrow pairs kept with the read; a slot that does not hold falls back to the getters."""

from __future__ import annotations

import logging

from analyzer.scan import scan
from protocols import plugins
from protocols.compound_v2 import lens as compound_lens
from protocols.compound_v2 import slots as compound_slots
from protocols.compound_v2.borrows import borrow_pairs
from tests.conftest import requires_anvil
from tests.test_compound_borrow_pairs import reader_at
from tests.test_scan import tables_equal

pytestmark = requires_anvil


def _spied(monkeypatch) -> dict[str, list[str]]:
    """Accounts asked of the getter lens and of the storage lens."""
    asked: dict[str, list[str]] = {"getters": [], "storage": []}
    getters, storage = compound_lens._lens_rows, compound_slots._rows

    def spy_getters(reader, accounts):
        asked["getters"] += list(accounts)
        return getters(reader, accounts)

    def spy_storage(reader, slots, accounts, masks):
        asked["storage"] += list(accounts)
        return storage(reader, slots, accounts, masks)

    monkeypatch.setattr(compound_lens, "_lens_rows", spy_getters)
    monkeypatch.setattr(compound_slots, "_rows", spy_storage)
    return asked


def _scans(devnet):
    compound = [plugins()["compound-v2"]]
    block = devnet.w3.eth.block_number
    reference = scan(devnet.url, compound, book=devnet.book, block=block, cache_dir=None, use_lens=False,
                     oracle_paths=False)
    return reference, scan(devnet.url, compound, book=devnet.book, block=block, cache_dir=None, oracle_paths=False)


def test_the_full_read_comes_from_storage_with_the_multicall_snapshot(devnet, monkeypatch, caplog):
    asked = _spied(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="protocols.compound_v2.slots"):
        reference, got = _scans(devnet)
    tables_equal(got, reference)
    holders = set(reference.accounts["account"])
    assert len(holders) > 40 and "getters" not in caplog.text
    # the accounts with a position were read from storage (but those holding a market no sample
    # proved the slots of), the getters saw the samples
    assert len(holders & set(asked["storage"])) > len(holders) // 2, (len(holders), len(asked["storage"]))


def test_the_kept_borrow_pairs_are_the_ones_proven_against_borrow_balance_stored(devnet):
    """The pairs kept by the storage read are those :func:`borrow_pairs` proves on the balances
    Multicall3 reads, every borrow with one."""
    block = devnet.w3.eth.block_number
    reference = scan(devnet.url, [plugins()["compound-v2"]], book=devnet.book, block=block, cache_dir=None,
                     use_lens=False, oracle_paths=False)
    reader = reader_at(devnet, block)
    index_of = {m["ctoken"]: j for j, m in enumerate(reader.markets())}
    debt = reference.positions[reference.positions["side"] == "debt"]
    borrowed: dict[str, dict[int, int]] = {}
    for account, ctoken, raw in zip(debt["account"], debt["reserve"], debt["raw"], strict=True):
        borrowed.setdefault(account, {})[index_of[ctoken]] = int(raw)
    accounts = sorted(set(reference.accounts["account"]))
    held = reference.positions.groupby("account")["reserve"]
    reader.holdings = {account: sorted(set(reserves)) for account, reserves in held}   # as discovery gives them
    rows = reader.read_accounts(accounts)
    assert compound_slots.slots_of(reader).ready(len(reader.markets())) and not compound_slots.slots_of(reader).off
    kept: dict[str, dict[int, tuple[int, int]]] = {}
    for account, words in rows["_state"].items():   # [tag, entered count, entered..., then records]
        at = 2 + words[1]
        for k in range(at, len(words), compound_lens.RECORD):
            j, _, first, second, paired = words[k:k + compound_lens.RECORD]
            if paired:
                kept.setdefault(account, {})[j] = (first, second)
    assert kept == borrow_pairs(reader_at(devnet, block), borrowed)
    assert sum(map(len, kept.values())) == len(debt) > 10


def test_a_wrong_slot_falls_back_to_the_getters_with_the_same_snapshot(devnet, monkeypatch, caplog):
    asked = _spied(monkeypatch)
    found = compound_slots.market_slots

    def planted(reader, truth, todo, guess):     # every cToken balance one slot off
        balance, borrow = found(reader, truth, todo, guess)
        return {j: slot + 1 for j, slot in balance.items()}, borrow

    monkeypatch.setattr(compound_slots, "market_slots", planted)
    with caplog.at_level(logging.WARNING, logger="protocols.compound_v2.slots"):
        reference, got = _scans(devnet)
    tables_equal(got, reference)
    assert "differs from the getters" in caplog.text
    assert set(reference.accounts["account"]) <= set(asked["getters"])
