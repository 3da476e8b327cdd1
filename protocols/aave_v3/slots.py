"""Aave V3 accounts read straight from storage (fixtures/contracts/lens: ``AaveV3SlotLens``), checked
against the real getters.

The getter lens (:mod:`.lens`) calls, per account, the Pool twice and a token proxy per balance:
each a CALL, a DELEGATECALL and an ABI dispatch, most of the node's work in a scan. Here, for the
duration of one ``eth_call``, ``AaveV3SlotReader``'s code replaces the code (not the storage) of
the Pool and of every aToken and variable debt token, and answers the mapping words of many
accounts at once: the Pool's ``_usersConfig`` and ``_usersEModeCategory``, a token's
``_userState`` (whose low 120 bits are the scaled balance that ``scaledBalanceOf`` returns). The
slots are those of solc's storage layout of ``@aave-dao/aave-v3-origin`` 3.6
(``PoolInstance``, ``ATokenInstance``, ``VariableDebtTokenInstance``; tests/test_aave_v3_slots.py
derives them again); storage of an upgradeable contract keeps its slots from version to version,
and 3.0's are the same. The rows are the getter lens's, word for word.

Nothing is assumed of the deployment: every token is checked against the getters before its
slot reads are taken. In each chunk, accounts that hold (by discovery) or borrow (by their
configuration) a token not yet proven, and the first accounts while the configuration or the
e-mode has not been seen non-zero, are read through the getter lens too; a token is proven by an
account whose getter figure is non-zero and equal, and one that is only ever seen zero keeps all
its accounts checked. Any difference turns the slot reads off for the reader (a warning says so)
and the scan goes on through the getter lens. Words of a shape the layout does not give (bits over
the e-mode's byte, bits 120..127 of a balance word) send their account to the getters.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Sequence
from functools import cache

from eth_utils import function_signature_to_4byte_selector

from analyzer.devnet.solc import fixture_artifact
from analyzer.lens import encode_arguments, read_rows

log = logging.getLogger(__name__)

SELECTOR = function_signature_to_4byte_selector(
    "accounts(address,uint256[],address[],address[],uint256[],uint256[4])")
# solc storageLayout of aave-v3-origin 3.6 (PoolInstance / ATokenInstance / VariableDebtTokenInstance)
POOL_USERS_CONFIG_SLOT = 53         # PoolStorage._usersConfig: mapping(address => UserConfigurationMap)
POOL_USERS_EMODE_SLOT = 56          # PoolStorage._usersEModeCategory: mapping(address => uint8)
ATOKEN_USER_STATE_SLOT = 52         # IncentivizedERC20._userState in AToken
VARIABLE_DEBT_USER_STATE_SLOT = 56  # IncentivizedERC20._userState in VariableDebtToken
ODD = [1]                           # the slot lens's row for an account the getters must read
CHECK_FIRST = 16                    # accounts checked per chunk while configuration or e-mode is unproven


@cache
def lens_code() -> str:
    return fixture_artifact("lens", "AaveV3SlotLens")["deployedBytecode"]


@cache
def reader_code() -> str:
    return fixture_artifact("lens", "AaveV3SlotReader")["deployedBytecode"]


def slots() -> list[int]:
    return [POOL_USERS_CONFIG_SLOT, POOL_USERS_EMODE_SLOT, ATOKEN_USER_STATE_SLOT, VARIABLE_DEBT_USER_STATE_SLOT]


class SlotChecks:
    """What the getters have proven of one reader's slot reads (shared by its chunks' threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proven: set[int] = set()   # tags (3 * reserve index + kind) proven by a non-zero equal figure
        self.config = False             # a non-zero configuration read equal
        self.emode = False              # a non-zero e-mode read equal
        self.off = False                # a difference was found: getters only


def checks_of(reader) -> SlotChecks:
    known = getattr(reader, "_slot_checks", None)
    if known is None:
        known = reader._slot_checks = SlotChecks()
    return known


def holders_of(holdings: dict[str, list[str]] | None, accounts: Sequence[str],
               a_tokens: Sequence[str]) -> list[list[int]] | None:
    """Per reserve: the accounts (indices) that may hold its aToken, ascending, as
    :func:`analyzer.lens.masks` gives them; None (every account) where the holdings are unknown or
    there are more reserves than mask bits."""
    if holdings is None or len(a_tokens) > 256:
        return None
    index = {token.lower(): r for r, token in enumerate(a_tokens)}
    spelled: dict[str, int] = {}       # each holding as discovery spells it -> its reserve (-1: none)
    lists: list[list[int]] = [[] for _ in a_tokens]
    for u, account in enumerate(accounts):
        for holding in holdings.get(account, ()):
            r = spelled.get(holding)
            if r is None:
                r = spelled[holding] = index.get(holding.lower(), -1)
            if r >= 0 and (not lists[r] or lists[r][-1] != u):
                lists[r].append(u)
    return lists


def held_runs(holders: list[list[int]] | None, start: int, count: int) -> list[int]:
    """The slot lens's ``held`` for the accounts ``start .. start + count`` of ``holders``' list:
    per reserve, the number of its holders among them, then their indices (from ``start``)."""
    runs: list[int] = []
    for who in holders or ():
        lo, hi = bisect_left(who, start), bisect_left(who, start + count)
        runs.append(hi - lo)
        runs += [u - start for u in who[lo:hi]] if start else who[lo:hi]
    return runs


def read_rows_from_slots(reader, accounts: Sequence[str], ids: list[int], tokens: list[str],
                         getter_rows) -> list[list[int]] | None:
    """The getter lens's rows of ``accounts`` read from storage and checked (module docstring);
    None when slot reads are off for this reader (a difference was found, now or before) or the
    node has no lens calls. ``getter_rows(accounts)``: the getter lens's rows."""
    checks = checks_of(reader)
    if checks.off:
        return None
    reserves = reader.reserves()
    a_tokens = [r["aToken"] for r in reserves]
    overrides = {reader.pool: reader_code()}
    overrides.update({token: reader_code() for r in reserves for token in (r["aToken"], r["variableDebtToken"])})

    everyone = [list(range(len(accounts)))] * len(a_tokens)
    holders = holders_of(reader.holdings, accounts, a_tokens) or everyone
    first = {account: u for u, account in enumerate(accounts)}    # a batch is a slice of ``accounts``

    def encode(batch: Sequence[str]) -> bytes:
        runs = held_runs(holders, first[batch[0]], len(batch)) if batch else [0] * len(a_tokens)
        return SELECTOR + encode_arguments(reader.pool, ids, tokens, batch, runs, *slots())

    # without holdings (a rescan's touched accounts) every token of every account is read: calls sized
    # for that, not halved from a size the node's gas cap refuses (each refusal resent every override)
    reads = 6 if holders is not everyone else 2 + 2 * len(a_tokens)
    rows = read_rows(reader.ctx.lens, lens_code(), encode, accounts, reads_per_account=reads, codes=overrides)
    if rows is None:
        return None
    if not _checked(checks, reader.pool, accounts, rows, holders, ids, getter_rows):
        return None
    return [row if len(row) > 2 else [] for row in rows]


def _checked(checks: SlotChecks, pool: str, accounts: Sequence[str], rows: list[list[int]],
             holders: list[list[int]], ids: list[int], getter_rows) -> bool:
    """Whether the slot rows are proven (rows the getters had to read replaced in place); False
    (and slot reads off for the reader) on any difference. ``holders``: per reserve, the accounts
    (indices) that may hold its aToken."""
    with checks.lock:
        proven, config_seen, emode_seen = set(checks.proven), checks.config, checks.emode
    marked = set()
    for r, who in enumerate(holders):
        if 3 * r not in proven:         # every account that may hold an unproven aToken
            marked.update(who)
    borrow_bits = sum(1 << (2 * ids[r]) for r in range(len(holders)) if 3 * r + 1 not in proven)
    for u, row in enumerate(rows):
        if row == ODD or (u < CHECK_FIRST and not (config_seen and emode_seen)) or (row and row[0] & borrow_bits):
            marked.add(u)
    if not marked:
        return True
    check = sorted(marked)
    truth = getter_rows([accounts[u] for u in check])
    if truth is None:
        return False
    for u, real in zip(check, truth, strict=True):
        got = rows[u]
        if got == ODD:
            rows[u] = real
            continue
        if (got if len(got) > 2 else []) != real:
            with checks.lock:
                checks.off = True
            log.warning("aave-v3 %s: a storage read differs from the getters for %s (%s against %s): reading "
                        "accounts through the getters", pool, accounts[u], got[:8], real[:8])
            return False
        if real:
            config_seen, emode_seen = config_seen or real[0] != 0, emode_seen or real[1] != 0
            proven.update(real[k] for k in range(2, len(real), 3) if real[k] % 3 != 2)
    with checks.lock:
        checks.proven |= proven
        checks.config = checks.config or config_seen
        checks.emode = checks.emode or emode_seen
    return True
