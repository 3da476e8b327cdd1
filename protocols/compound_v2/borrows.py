"""Compound V2 borrows kept as the cToken stores them, for incremental rescans.

A cToken keeps each borrow as ``accountBorrows[account] = (principal, interestIndex)``, internal
storage that no getter returns, and answers ``borrowBalanceStored`` as ``principal × borrowIndex /
interestIndex`` truncated (CToken.borrowBalanceStoredInternal). Only a borrow, a repay or a
liquidation (events that name the borrower) change the pair; ``accrueInterest`` moves only the
market's ``borrowIndex``. So with the pair kept, a rescan computes an untouched borrow at the new
index without asking the node.

The full read takes the pair from storage with the account (:mod:`.slots`); for accounts read
through the getters, it is read beside the balance with our ``CompoundV2Borrows`` lens
(fixtures/contracts/slot_lens), each cToken's code replaced for that one ``eth_call`` by
``MappingWords``, which reads the cToken's own storage. The mapping's slot is the contract's
layout (Compound's CToken: 16; a fork's or our devnet's may differ), so it is found per market on
one borrower: the first slot whose pair gives back the ``borrowBalanceStored`` just read. Every
pair is then proven the same way before it is kept (``principal × borrowIndex / interestIndex``
equals the balance read at this block); a borrow whose pair is not proven is kept as its balance
and read again when the index moves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector

from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, read_rows

SELECTOR = function_signature_to_4byte_selector("snapshots(address[],uint256[],address[],uint256[])")
SLOT_CANDIDATES = 256    # the slots searched (Compound's CToken keeps accountBorrows at 16, Venus's VToken at 217)
ENTRY_BITS = 256         # the lens's masks are one word per account (the candidates searched in one call)

# (principal, interestIndex) of an account's borrow in one market
Pair = tuple[int, int]


@cache
def lens_code() -> str:
    return fixture_artifact("slot_lens", "CompoundV2Borrows")["deployedBytecode"]


@cache
def words_code() -> str:
    return fixture_artifact("slot_lens", "MappingWords")["deployedBytecode"]


def proven(pair: Sequence[int], borrow_index: int | None, balance: int) -> bool:
    """Whether ``pair`` gives back ``balance`` at ``borrow_index`` (CToken.borrowBalanceStoredInternal)."""
    principal, interest_index = pair
    return (borrow_index is not None and principal != 0 and interest_index != 0
            and principal * borrow_index // interest_index == balance)


def read_entries(reader, entries: Sequence[tuple[str, int]], asked: Sequence[tuple[str, int]]) -> list[list[int]] | None:
    """Per asked (account, mask over ``entries``): the pair at each entry (contract, slot) of its
    mask, in entry order; None when the node takes no state overrides."""
    contracts = [address for address, _ in entries]
    slots = [slot for _, slot in entries]
    codes = dict.fromkeys(contracts, words_code())
    # read_rows slices the list it is given: positions stand for the asked (an account may be asked twice)
    positions = [str(t) for t in range(len(asked))]

    def encode(batch: Sequence[str]) -> bytes:
        chosen = [asked[int(t)] for t in batch]
        return SELECTOR + encode_arguments(contracts, slots, [a for a, _ in chosen], [m for _, m in chosen])

    reads = max(1, sum(bin(m).count("1") for _, m in asked) // max(1, len(asked)))
    return read_rows(reader.ctx.lens, lens_code(), encode, positions, reads_per_account=reads, codes=codes)


def search_slots(reader, contract: str, account: str) -> list[Pair] | None:
    """The two words of a mapping keyed by ``account`` at each slot of ``SLOT_CANDIDATES`` in
    ``contract``'s storage (at slot s: the words at keccak(account . s) and the next), in slot
    order; None when the node takes no state overrides."""
    candidates = min(SLOT_CANDIDATES, ENTRY_BITS)
    rows = read_entries(reader, [(contract, slot) for slot in range(candidates)], [(account, (1 << candidates) - 1)])
    if rows is None:
        return None
    return list(zip(rows[0][0::2], rows[0][1::2], strict=True))


def borrow_slots(reader, samples: Mapping[int, tuple[str, int]]) -> dict[int, int | None]:
    """Per market index of ``samples`` (market -> (a borrower, its ``borrowBalanceStored`` at this
    block)): the first slot of ``SLOT_CANDIDATES`` whose pair gives back the balance (None: none
    does, or the node takes no overrides), kept on the reader; markets already searched are not
    asked again. The slots found for other markets (cTokens of one Comptroller share a layout)
    are tried first, in one call; every candidate only where they fail."""
    known: dict[int, int | None] = reader.__dict__.setdefault("_borrow_slots", {})
    todo = [j for j in samples if j not in known]
    everything = list(range(min(SLOT_CANDIDATES, ENTRY_BITS)))
    guess = sorted({slot for slot in known.values() if slot is not None})
    if not guess and todo:
        known.update(_first_proven(reader, samples, {todo[0]: everything}))
        first = known[todo[0]]
        guess = [first] if first is not None else []
        todo = todo[1:]
    found = _first_proven(reader, samples, dict.fromkeys(todo, guess)) if guess else {}
    for j in todo:
        known[j] = found.get(j)
        if known[j] is None:
            known.update(_first_proven(reader, samples, {j: everything}))
    return {j: known[j] for j in samples}


def _first_proven(reader, samples: Mapping[int, tuple[str, int]], tries: Mapping[int, list[int]]
                  ) -> dict[int, int | None]:
    """Per market of ``tries`` (market -> candidate slots): the first candidate whose pair for the
    market's sample gives back its balance (None: none), in calls of up to ``ENTRY_BITS`` entries."""
    markets, out = reader.markets(), {}
    for group in slot_groups(tries, ENTRY_BITS):
        entries: list[tuple[str, int]] = []
        asked = []
        for k in group:
            asked.append((samples[k][0], ((1 << len(tries[k])) - 1) << len(entries)))
            entries += [(markets[k]["ctoken"], slot) for slot in tries[k]]
        rows = read_entries(reader, entries, asked) if asked else []
        for k, row in zip(group, rows or [[] for _ in group], strict=True):
            pairs = zip(row[0::2], row[1::2], strict=False)
            index, balance = markets[k].get("borrow_index"), samples[k][1]
            out[k] = next((slot for slot, pair in zip(tries[k], pairs, strict=False) if proven(pair, index, balance)),
                          None)
    return out


def slot_groups(tries: Mapping[int, Sequence[int]], limit: int) -> Iterator[list[int]]:
    """The markets of ``tries`` (market -> candidate slots) in turn, grouped so that a group's
    candidates fit one lens mask of ``limit`` entries (a market with more is a group alone)."""
    group: list[int] = []
    size = 0
    for j, slots in tries.items():
        if group and size + len(slots) > limit:
            yield group
            group, size = [], 0
        group.append(j)
        size += len(slots)
    if group:
        yield group


def borrow_pairs(reader, borrowed: Mapping[str, Mapping[int, int]]) -> dict[str, dict[int, Pair]]:
    """Per account of ``borrowed`` (account -> {market index: ``borrowBalanceStored`` at this
    block}): the proven (principal, interestIndex) of each borrow (:func:`proven`); borrows in a
    market whose slot is unknown, or whose pair is not proven, are left out."""
    markets = reader.markets()
    samples: dict[int, tuple[str, int]] = {}
    for account, balances in borrowed.items():
        for j, balance in balances.items():
            if j < ENTRY_BITS:
                samples.setdefault(j, (account, balance))
    slots = {j: slot for j, slot in borrow_slots(reader, samples).items() if slot is not None}
    if not slots:
        return {}
    order = sorted(slots)
    bit = {j: 1 << k for k, j in enumerate(order)}
    asked = [(account, sum(bit[j] for j in balances if j in bit)) for account, balances in borrowed.items()]
    asked = [(account, mask) for account, mask in asked if mask]
    rows = read_entries(reader, [(markets[j]["ctoken"], slots[j]) for j in order], asked)
    if rows is None:
        return {}
    out: dict[str, dict[int, Pair]] = {}
    for (account, mask), row in zip(asked, rows, strict=True):
        pairs = iter(zip(row[0::2], row[1::2], strict=True))
        for j in order:
            if not mask & bit[j]:
                continue
            pair = next(pairs)
            if proven(pair, markets[j].get("borrow_index"), borrowed[account][j]):
                out.setdefault(account, {})[j] = pair
    return out
