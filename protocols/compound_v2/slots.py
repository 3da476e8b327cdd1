"""Compound V2 accounts read straight from storage (fixtures/contracts/slot_lens: ``CompoundV2Accounts``),
proven against the real getters.

The getter lens (``CompoundV2Lens``, :mod:`.lens`) calls, per account, the Comptroller's
``getAssetsIn`` and each held market's ``getAccountSnapshot``, which recomputes the market's
exchange rate (a ``balanceOf`` call to the underlying and several storage reads) every time: most
of the node's work in a scan. Here, for one ``eth_call``, ``MappingWords``' code replaces the code
(not the storage) of the Comptroller and of every cToken, and the lens reads per account the
Comptroller's ``accountAssets[account]`` (``getAssetsIn``) and per market of its mask the cToken's
``accountTokens[account]`` (``balanceOf``) and ``accountBorrows[account]`` = (principal,
interestIndex). ``borrowBalanceStored`` is principal × borrowIndex / interestIndex truncated, 0 for
no principal (CToken.borrowBalanceStoredInternal), at the market's ``borrowIndex`` read at this
block, and the exchange rate is the market's ``exchangeRateStored`` at this block (what
``getAccountSnapshot`` returns: CToken.exchangeRateStoredInternal), both read once per market by
:meth:`CompoundV2Reader.markets`. The borrow pairs come with the read: they are the state kept for
rescans (:mod:`.borrows`).

Slots differ by deployment (Compound's Unitroller keeps ``accountAssets`` at 8, a cToken's
``accountTokens`` and ``accountBorrows`` at 14 and 16; Venus's isolated pools at 204, 215 and 217;
our devnet's fixtures elsewhere), so they are searched per contract on sample accounts read
through the getters: the first candidate whose words give back the sample's ``getAssetsIn``
length, cToken balance or ``borrowBalanceStored``. Then every sample is read both ways and must
give the same figures (entered markets, balances, borrow balances, exchange rates). A market
without a sample to prove its slots on (no sampled balance or borrow there) keeps its accounts on
the getter lens; no slot proven, any difference, or a node that takes no overrides turns the
storage reads off for the reader (with a warning) and every account goes through the getters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector

from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, read_rows
from analyzer.multicall import Call
from protocols.compound_v2 import borrows
from protocols.compound_v2.borrows import Pair, proven, read_entries, search_slots, slot_groups, words_code

log = logging.getLogger(__name__)

SELECTOR = function_signature_to_4byte_selector("accounts(address,address[],uint256[],address[],uint256[])")
SAMPLES = 64            # accounts read through the getters to find and prove the slots on, per round
SAMPLE_ROUNDS = 4       # rounds of samples for markets whose slots are not found yet
MASK_BITS = 256         # the lens reads the markets of one mask word
ODD = 2**256 - 1        # the lens's row for an entered list that is not an array of markets

# An account's figures: (entered market indices, market index -> (cToken balance, borrowBalanceStored,
# exchangeRateStored)), market indices into the reader's markets()
Figures = tuple[list[int], dict[int, tuple[int, int, int]]]


@cache
def lens_code() -> str:
    return fixture_artifact("slot_lens", "CompoundV2Accounts")["deployedBytecode"]


class Slots:
    """The slots proven for one reader (shared by its chunks' threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.searched = False
        self.off = False
        self.assets: int | None = None          # the Comptroller's accountAssets
        self.balance: dict[int, int] = {}       # market index -> its cToken's accountTokens
        self.borrow: dict[int, int] = {}        # market index -> its cToken's accountBorrows

    def ready(self, markets: int) -> int:
        """The mask of the markets whose slots are both proven."""
        return sum(1 << j for j in range(min(markets, MASK_BITS)) if j in self.balance and j in self.borrow)


def slots_of(reader) -> Slots:
    known = getattr(reader, "_storage_slots", None)
    if known is None:
        known = reader._storage_slots = Slots()
    return known


def _turn_off(reader, slots: Slots, why: str) -> None:
    slots.off = True
    log.warning("compound-v2 %s: %s: reading accounts through the getters", reader.comptroller, why)


def read_figures(reader, accounts: Sequence[str], account_masks: list[int], getter_figures
                 ) -> tuple[dict[str, Figures], dict[str, dict[int, Pair]], list[str]] | None:
    """Per account read from storage: its figures (the getter lens's, word for word) and the
    (principal, interestIndex) of each borrow; then the accounts left to the getters (a market
    of their mask not proven, a word not of the layout's shape). None when storage reads are off
    for this reader (now or before) or no market is proven. ``account_masks``: per account, the
    markets to read; ``getter_figures(accounts)``: {account: figures} through the getter lens, or
    None when the node has no lens calls."""
    slots = slots_of(reader)
    markets = reader.markets()
    with slots.lock:
        if not slots.searched:
            slots.searched = True
            _search(reader, slots, accounts, account_masks, getter_figures)
        if slots.off:
            return None
        ready = slots.ready(len(markets))
    if not ready:
        return None
    mine = [u for u, mask in enumerate(account_masks) if mask & ~ready == 0]
    if not mine:
        return None
    rows = _rows(reader, slots, [accounts[u] for u in mine], [account_masks[u] for u in mine])
    if rows is None:
        with slots.lock:
            _turn_off(reader, slots, "the node takes no code overrides")
        return None
    figures, pairs, odd = _figures(reader, [accounts[u] for u in mine], rows)
    chosen = set(mine)
    return figures, pairs, odd + [a for u, a in enumerate(accounts) if u not in chosen]


def _rows(reader, slots: Slots, accounts: Sequence[str], account_masks: Sequence[int]) -> list[list[int]] | None:
    """The storage lens's rows of ``accounts`` (None: the node takes no overrides)."""
    markets = reader.markets()[:MASK_BITS]
    ctokens = [m["ctoken"] for m in markets]
    words = [slots.assets or 0]
    for j in range(len(markets)):
        words += [slots.balance.get(j, 0), slots.borrow.get(j, 0)]
    codes = dict.fromkeys([reader.comptroller, *ctokens], words_code())
    first = {account: u for u, account in enumerate(accounts)}    # a batch is a slice of ``accounts``

    def encode(batch: Sequence[str]) -> bytes:
        start = first[batch[0]] if batch else 0
        runs = market_runs(account_masks[start:start + len(batch)], len(markets))
        return SELECTOR + encode_arguments(reader.comptroller, ctokens, words, batch, runs)

    # (about 37k gas an account: 500 a call stay well under the call's gas)
    return read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=8, codes=codes)


def market_runs(account_masks: Sequence[int], markets: int) -> list[int]:
    """The lens's ``runs``: per market, the number of accounts whose mask has it, then their indices."""
    who: list[list[int]] = [[] for _ in range(markets)]
    for u, mask in enumerate(account_masks):
        while mask:
            low = mask & -mask
            who[low.bit_length() - 1].append(u)
            mask ^= low
    runs: list[int] = []
    for listed in who:
        runs.append(len(listed))
        runs += listed
    return runs


def _figures(reader, accounts: Sequence[str], rows: Sequence[Sequence[int]]
             ) -> tuple[dict[str, Figures], dict[str, dict[int, Pair]], list[str]]:
    """Storage rows as figures: ``borrowBalanceStored`` from the pair at the market's
    ``borrowIndex`` (CToken.borrowBalanceStoredInternal: principal × borrowIndex / interestIndex,
    0 without a principal), the exchange rate the market's ``exchangeRateStored``; the pair kept
    where the borrow balance is not 0. An account whose words are not of the layout's shape (an
    entered list that is not one, a principal without an interest index) is left to the getters."""
    markets = reader.markets()
    indexes = [m.get("borrow_index") for m in markets]
    rates = [m["exchange_rate_mantissa"] for m in markets]
    figures: dict[str, Figures] = {}
    pairs: dict[str, dict[int, Pair]] = {}
    odd: list[str] = []
    for account, row in zip(accounts, rows, strict=True):
        if not row:
            continue
        if row[0] == ODD:
            odd.append(account)
            continue
        count = row[0]
        held: dict[int, tuple[int, int, int]] = {}
        kept: dict[int, Pair] = {}
        for k in range(1 + count, len(row), 4):
            j, balance, principal, interest_index = row[k:k + 4]
            index = indexes[j]
            if principal and (not interest_index or index is None):
                break
            borrowed = principal * index // interest_index if principal else 0
            if balance or borrowed:
                held[j] = (balance, borrowed, rates[j])
            if borrowed:
                kept[j] = (principal, interest_index)
        else:
            if held:
                figures[account] = (list(row[1:1 + count]), held)
                if kept:
                    pairs[account] = kept
            continue
        odd.append(account)
    return figures, pairs, odd


def _search(reader, slots: Slots, accounts: Sequence[str], account_masks: list[int], getter_figures) -> None:
    """Find the slots on samples of ``accounts`` read through the getters and prove them (module
    docstring); turn storage reads off where none is proven or any sample differs. Samples: the
    first accounts and one more for each market not yet in a sample's mask, then, for up to
    ``SAMPLE_ROUNDS`` rounds, accounts that may hold a market whose slots are not found yet."""
    markets = reader.markets()
    if len(markets) > MASK_BITS:
        return _turn_off(reader, slots, f"{len(markets)} markets, more than the storage lens reads")
    covered, samples, truth = 0, list[int](), dict[str, Figures]()
    for u, mask in enumerate(account_masks):
        if mask and (len(samples) < SAMPLES // 2 or mask & ~covered):
            samples.append(u)
            covered |= mask
        if len(samples) >= SAMPLES:
            break
    read = 0            # samples[:read] were read through the getters
    for _round in range(SAMPLE_ROUNDS):
        more = getter_figures([accounts[u] for u in samples[read:]]) if samples[read:] else {}
        if more is None:
            return _turn_off(reader, slots, "the node takes no code overrides")
        truth.update(more)
        read = len(samples)
        if slots.assets is None:
            slots.assets = assets_slot(reader, truth)
        missing = [j for j in range(len(markets)) if j not in slots.balance or j not in slots.borrow]
        guess = sorted({*slots.balance.values(), *slots.borrow.values()})
        known = len(slots.balance) + len(slots.borrow)
        balance, borrow = market_slots(reader, truth, missing, guess)
        slots.balance = {**balance, **slots.balance}
        slots.borrow = {**borrow, **slots.borrow}
        if _round and len(slots.balance) + len(slots.borrow) == known:
            break       # more samples found nothing: the markets left show no balance or no borrow
        unready = (1 << len(markets)) - 1 & ~slots.ready(len(markets))
        taken = set(samples)
        extra = [u for u, mask in enumerate(account_masks) if mask & unready and u not in taken][:SAMPLES]
        if not extra:
            break
        samples += extra
    if slots.assets is None:
        return _turn_off(reader, slots, "no accountAssets slot proven on the samples")
    return _prove(reader, slots, [accounts[u] for u in samples[:read]], [account_masks[u] for u in samples[:read]],
                  truth)


def _prove(reader, slots: Slots, samples: list[str], sample_masks: list[int], truth: dict[str, Figures]) -> None:
    """Read the samples from storage in the markets whose slots were found: their figures there
    (and their entered markets) must be the getters'. A market without a sample with a balance
    and one with a borrow there is not taken (its accounts stay on the getters)."""
    found = slots.ready(len(reader.markets()))
    masks = [mask & found for mask in sample_masks]
    rows = _rows(reader, slots, samples, masks)
    if rows is None:
        return _turn_off(reader, slots, "the node takes no code overrides")
    got, _, odd = _figures(reader, samples, rows)
    shown: dict[str, Figures] = {}      # the getters' figures in the markets read
    for account in samples:
        entered, held = truth.get(account, ([], {}))
        mine = {j: figure for j, figure in held.items() if found >> j & 1}
        if account in odd or got.get(account) != ((entered, mine) if mine else None):
            return _turn_off(reader, slots, f"a storage read differs from the getters for {account} "
                                            f"({got.get(account)} against {(entered, mine)})")
        if mine:
            shown[account] = (entered, mine)
    for j in range(len(reader.markets())):
        if found >> j & 1 and not (_sampled(shown, j, 0) and _sampled(shown, j, 1)):
            slots.balance.pop(j, None)
            slots.borrow.pop(j, None)
    if not any(entered for entered, _ in shown.values()):
        return _turn_off(reader, slots, "no sample with entered markets to prove the slots on")
    return None


def assets_slot(reader, truth: dict[str, Figures]) -> int | None:
    """The Comptroller's ``accountAssets`` slot: the first candidate whose length word is the
    ``getAssetsIn`` length of the sample with the most entered markets (None: none found)."""
    entered = max(truth, key=lambda a: len(truth[a][0]), default=None)
    if entered is None or not truth[entered][0]:
        return None
    raw = reader._read([Call(reader.comptroller, "getAssetsIn(address)(address[])", (entered,))])[0]
    if not raw:
        return None
    lengths = search_slots(reader, reader.comptroller, entered)
    return next((slot for slot, (length, _) in enumerate(lengths or []) if length == len(raw)), None)


def market_slots(reader, truth: dict[str, Figures], todo: list[int], guess: list[int]
                 ) -> tuple[dict[int, int], dict[int, int]]:
    """Per market of ``todo`` with a sample balance (borrow) in ``truth`` (figures through the
    getters): the slot of its ``accountTokens`` (``accountBorrows``), the first candidate whose
    words give back the sample's figure. ``guess`` (slots found for other markets: cTokens of one
    Comptroller share a layout) are tried first, all candidates only where they fail; without a
    guess, the first market is searched in full and its slots tried on the others."""
    everything = list(range(min(borrows.SLOT_CANDIDATES, MASK_BITS)))
    balance: dict[int, int] = {}
    borrow: dict[int, int] = {}
    if not guess and todo:
        balance, borrow = _tried(reader, truth, {todo[0]: everything})
        guess, todo = sorted({*balance.values(), *borrow.values()}), todo[1:]
    if guess:
        more = _tried(reader, truth, dict.fromkeys(todo, guess))
        balance.update(more[0])
        borrow.update(more[1])
    for j in todo:
        if (j not in balance and _sampled(truth, j, 0)) or (j not in borrow and _sampled(truth, j, 1)):
            more = _tried(reader, truth, {j: everything})
            balance.update({k: v for k, v in more[0].items() if k not in balance})
            borrow.update({k: v for k, v in more[1].items() if k not in borrow})
    for j, slot in borrow.items():      # borrow_pairs (accounts read through the getters) needs no search
        reader.__dict__.setdefault("_borrow_slots", {}).setdefault(j, slot)
    return balance, borrow


def _sampled(truth: dict[str, Figures], j: int, kind: int) -> str | None:
    """A sample with a cToken balance (kind 0) or a borrow (1) in market ``j``."""
    return next((a for a, (_, held) in truth.items() if held.get(j, (0, 0, 0))[kind]), None)


def _tried(reader, truth: dict[str, Figures], tries: dict[int, list[int]]) -> tuple[dict[int, int], dict[int, int]]:
    """Of ``tries`` (market index -> candidate slots): the first candidate whose word is a
    sample's cToken balance, and the first whose pair gives back a sample's ``borrowBalanceStored``
    (:func:`proven`), per market that has such a sample; in calls of up to one mask of entries."""
    markets = reader.markets()
    balance: dict[int, int] = {}
    borrow: dict[int, int] = {}
    for group in slot_groups(tries, MASK_BITS):
        entries: list[tuple[str, int]] = []
        asked: list[tuple[str, int]] = []
        where: list[tuple[int, int, int]] = []
        for k in group:
            mask = ((1 << len(tries[k])) - 1) << len(entries)
            entries += [(markets[k]["ctoken"], slot) for slot in tries[k]]
            for kind in (0, 1):
                sample = _sampled(truth, k, kind)
                if sample is not None:
                    asked.append((sample, mask))
                    where.append((k, kind, truth[sample][1][k][kind]))
        rows = read_entries(reader, entries, asked) if asked else []
        for (k, kind, figure), row in zip(where, rows or [], strict=False):
            pairs = zip(row[0::2], row[1::2], strict=True)
            if kind == 0:
                slot = next((s for s, (word, _) in zip(tries[k], pairs, strict=True) if word == figure), None)
                if slot is not None:
                    balance[k] = slot
            else:
                index = markets[k].get("borrow_index")
                slot = next((s for s, pair in zip(tries[k], pairs, strict=True) if proven(pair, index, figure)), None)
                if slot is not None:
                    borrow[k] = slot
    return balance, borrow
