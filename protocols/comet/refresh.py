"""Comet's incremental rescan (:func:`refresh_accounts`): the accounts no event named since an
earlier scan, computed at this block from the words that scan kept and this block's market state,
at once over arrays. The kept words are taken as :class:`analyzer.kept.KeptState` holds them,
int64 and the few wider ones beside (:class:`protocols.comet.ints.Ints`), and leave as limbs
(:mod:`analyzer.wideint`), floats and Arrow text: no Python integer or string per account. A rescan
that carries the earlier scan's tables (:mod:`protocols.comet.carry`) computes its accounts with the
same pieces: :func:`at_block`, :func:`liquidatable`, :func:`params`, :func:`amounts`, :func:`kept_words`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analyzer import wideint
from analyzer.kept import KeptState, Refreshed
from analyzer.textcolumns import Texts, arrow_text, labels, repeated, text
from protocols.comet import lens
from protocols.comet.ints import Ints

HEAD = 5    # a kept row: the principal (signed), assetsIn, three words a rescan computes, then the collaterals


def refresh_accounts(reader, previous: KeptState) -> Refreshed:
    """Untouched accounts at this block, at once over arrays. Comet keeps each account's
    principal, ``assetsIn`` and collateral balances; events name every change of the collateral
    and of a supplier's principal, but not a base transfer's borrow (``transferBase`` emits
    ``Transfer(src, 0)`` only for the supply src gives up, ``Transfer(0, dst)`` only for the supply
    dst gains). So a kept supplier (principal > 0) is computed without a read, and every other
    account has only its principal read again (:func:`at_block`). Then ``borrowBalanceOf``
    / ``balanceOf`` are the principal's present value at this block's accrued indices
    (CometCore.presentValue), and ``isLiquidatable`` is Comet's sum at this block's prices over the
    stored indices (:func:`liquidatable`). The collateral is handled as the list of the balances
    that are not zero (account, asset, amount), not as a table of every account by every asset."""
    now = at_block(reader, previous)
    state, comet, n = now.state, reader.comet, len(now.state["assets"])
    kept = kept_words(previous.accounts, now, now.changed, n)
    rows = np.flatnonzero(now.keep)
    owner = (np.cumsum(now.keep) - 1)[now.owner]        # now a row of the accounts kept
    principal, assets_in, names = now.principal.taken(rows), now.assets_in[rows], previous.accounts[rows]
    size, negative = principal.limbs()
    value = lens.present_values(size, negative, state["supply_index"], state["borrow_index"])
    flagged = liquidatable(state, principal, owner, now.asset, now.amount)
    accounts = arrow_text(names)        # converted once, labelling both tables
    tables = {"positions": _positions(state, comet, accounts, negative, value, owner, now.asset, now.amount),
              "accounts": _account_rows(comet, accounts, params(principal, assets_in, flagged))}
    return Refreshed(tables, kept, previous.accounts[now.again].tolist(), carried=now.keep & ~now.changed)


@dataclass(frozen=True)
class AtBlock:
    """What kept accounts' words give at this block (:func:`at_block`): per kept account, and per
    collateral balance that is not zero of the accounts not read again (by asset then account).

    Attributes
    ----------
    state : dict
        The market state (:func:`protocols.comet.lens.lens_state`).
    again : numpy.ndarray
        bool: read again in full (words of another market's shape, or no lens for the principals).
    keep : numpy.ndarray
        bool: computed, with something open at this block (a principal or a collateral balance).
    changed : numpy.ndarray
        bool: computed, and its words at this block differ from the kept ones (its principal
        moved, or the market lists more collateral assets than when it was read).
    principal : Ints
        Each account's principal at this block (signed).
    assets_in : numpy.ndarray
        int64, each account's ``assetsIn``.
    owner, asset, amount : numpy.ndarray
        The collateral balances: the account's place, the asset's offset, the balance as limbs.
    """

    state: dict
    again: np.ndarray
    keep: np.ndarray
    changed: np.ndarray
    principal: Ints
    assets_in: np.ndarray
    owner: np.ndarray
    asset: np.ndarray
    amount: np.ndarray


def at_block(reader, previous: KeptState) -> AtBlock:
    """The kept accounts at this block: a kept supplier's principal as kept, every other one's read
    again (:func:`principals_now`); an account kept with more collateral assets than the market
    now lists, or an ``assetsIn`` wider than a uint16, is read again in full."""
    state = lens.lens_state(reader)
    n = len(state["assets"])
    words = _Words(previous)
    again = previous.lengths - HEAD > n
    assets_in = words.at(words.starts + 1)       # a uint16: a wider word is no row of ours, read again
    again[assets_in.wide_at] = True
    principal = words.at(words.starts).signed()
    unseen = ~again & (principal.negative() | ~principal.nonzero())    # a borrow may have moved without an event
    found = principals_now(reader, previous.names, principal, unseen)
    if found is None:                            # no lens calls: read them again in full
        again |= unseen
        moved = np.zeros(len(previous), dtype=bool)
    else:
        principal, moved = found
    owner, asset, amount = words.collateral(n, again)
    holds = np.zeros(len(previous), dtype=bool)
    holds[owner] = True
    keep = ~again & (principal.nonzero() | holds)   # nothing open: no rows, as the lens gives none
    # an account's words hold at this block as kept unless its principal moved or the market lists
    # more collateral assets than when it was read (its words are then padded to them)
    changed = keep & (moved | (previous.lengths != HEAD + n))
    return AtBlock(state, again, keep, changed, principal, assets_in.small, owner, asset, amount)


def liquidatable(state: dict, principal: Ints, owner: np.ndarray, asset: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """``isLiquidatable`` per account of ``principal`` holding the collateral balances ``owner``,
    ``asset``, ``amount`` (limbs): :func:`protocols.comet.lens.liquidatable_sparse`."""
    return lens.liquidatable_sparse(state, principal.floats(), owner, asset, approximate_floats(amount),
                                    lambda who, which: (principal.values(who),
                                                        wideint.to_ints(wideint.taken(amount, which))))


def params(principal: Ints, assets_in: np.ndarray, flagged: np.ndarray) -> pa.Array:
    """The accounts' ``params``, as :func:`protocols.comet.lens.rows_from_lens` writes them
    (``str(principal)``, assetsIn, isLiquidatable): the text after the principal is one of a few
    (an assetsIn bitmap and a flag each), written once each and taken per account."""
    if not len(flagged):
        return pa.array([], type=pa.string())
    code = assets_in * 2 + flagged
    distinct, which = np.unique(code, return_inverse=True)
    after = pa.array([f'", "assets_in": {c >> 1}, "is_liquidatable": {"true" if c & 1 else "false"}}}'
                      for c in distinct.tolist()], type=pa.string()).take(pa.array(which.astype(np.int64).ravel()))
    return pc.binary_join_element_wise(pa.scalar('{"principal": "', pa.string()), principal.text(), after, "")


def amounts(state: dict, raw: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, pa.StringArray]:
    """Positions' ``amount`` and ``raw`` of their balances (limbs) in asset ``which`` (0: the base,
    ``i + 1``: collateral ``i``): :func:`analyzer.model.raw_to_amount` and ``str``, exactly
    (:mod:`analyzer.wideint`)."""
    return (wideint.quotient_floats(raw, np.array(state["decimals"], dtype=np.int64)[which]),
            wideint.decimal_text(raw))


def _account_rows(comet: str, accounts: pa.StringArray, texts: pa.Array) -> pd.DataFrame:
    """The accounts' rows, their ``params`` the texts given (:func:`params`)."""
    from protocols.comet.reader import PROTOCOL

    count = len(accounts)
    return pd.DataFrame({"protocol": constant(PROTOCOL, count), "market": constant(comet, count),
                         "account": text(accounts), "category": np.zeros(count, dtype=np.int64),
                         "params": text(texts)}, copy=False)


def principals_now(reader, accounts: np.ndarray, principal: Ints, unseen: np.ndarray) -> tuple[Ints, np.ndarray] | None:
    """The principals at this block: those kept (``principal``) but where ``unseen``, read again
    from the node (:func:`protocols.comet.lens.principals`); and a mask of those that moved. None
    when the node has no lens calls."""
    moved = np.zeros(len(accounts), dtype=bool)
    rows = np.flatnonzero(unseen)
    if not len(rows):
        return principal, moved
    names = accounts[rows]          # strings, or ASCII bytes (analyzer.kept.KeptState.names)
    packed = lens.principals(reader, names if names.dtype.kind == "S" else names.tolist()) \
        if reader.ctx.lens is not None else None
    if packed is None:
        return None
    read = Ints.of_int128s(packed)
    moved[rows] = ~read.equal(principal.taken(rows))
    return principal.replaced(rows, read), moved


class _Words:
    """A kept state's words as it holds them: int64 (``narrow``) and the wider ones beside, which
    are asked for only where needed (:meth:`analyzer.kept.KeptState.values`, ``limbs``)."""

    def __init__(self, previous: KeptState):
        self.previous, self.narrow = previous, previous.narrow
        self.is_wide = np.zeros(len(self.narrow), dtype=bool)
        self.is_wide[previous.wide_at] = True
        self.lengths, self.starts = previous.lengths, previous.starts

    def at(self, where: np.ndarray) -> Ints:
        wide_at = np.flatnonzero(self.is_wide[where])
        return Ints(self.narrow[where], wide_at, self.previous.values(where[wide_at]))

    def collateral(self, n: int, again: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The collateral balances that are not zero of the accounts not read ``again``, by asset
        then account: (account row, asset offset, amount as limbs). Each asset's balance words of
        every account at once (an account kept with fewer assets has the others left out)."""
        some = np.zeros((n, len(self.lengths)), dtype=bool)
        last = len(self.narrow) - 1
        for k in range(n):
            at = np.minimum(self.starts + HEAD + k, last)
            np.logical_and((self.narrow[at] != 0) | self.is_wide[at], self.lengths > HEAD + k, out=some[k])
        some &= ~again
        asset, owner = np.nonzero(some)
        limbs, _ = self.previous.limbs(self.starts[owner] + HEAD + asset)     # balances: not negative
        return owner, asset, limbs


def approximate_floats(limbs: np.ndarray) -> np.ndarray:
    """float64 of values given as limbs (:mod:`analyzer.wideint`), within a few units of their last
    place (not correctly rounded: for a sum with slack, :func:`protocols.comet.lens.liquidatable_sparse`)."""
    out = np.zeros(limbs.shape[1], dtype=np.float64)
    for limb in wideint.trimmed(limbs)[::-1]:
        out *= float(wideint.BASE)
        out += limb
    return out


def kept_words(names: np.ndarray, now: AtBlock, changed: np.ndarray, n: int) -> KeptState:
    """The kept words at this block of the accounts (``names``, as in ``now``) whose words
    ``changed`` (a few): the principal (signed), assetsIn, three words a rescan computes (left 0:
    the base balances, isLiquidatable), then the balance of each of the market's ``n`` collateral assets."""
    rows = np.zeros((int(changed.sum()), HEAD + n), dtype=object)
    which = np.flatnonzero(changed)
    rows[:, 0], rows[:, 1] = now.principal.values(which), now.assets_in[which].astype(object)
    mine = np.flatnonzero(changed[now.owner])
    rows[(np.cumsum(changed) - 1)[now.owner[mine]], HEAD + now.asset[mine]] = \
        wideint.to_ints(wideint.taken(now.amount, mine))
    return KeptState(names[changed], np.full(len(rows), HEAD + n, dtype=np.int64), rows.ravel())


def _positions(state: dict, comet: str, accounts: Texts, negative: np.ndarray, value: np.ndarray, owner: np.ndarray,
               asset: np.ndarray, amount: np.ndarray) -> pd.DataFrame:
    """The positions of the accounts: the base borrowed (``value``, limbs, not zero where
    ``negative``) then the base supplied (not zero where not), each in account order, then each
    collateral asset's balances (``owner``, ``asset``, ``amount``: limbs of the balances not zero,
    by asset then account) in turn,
    as :func:`protocols.comet.lens.rows_from_lens` orders them."""
    from protocols.comet.reader import PROTOCOL

    some = ~wideint.is_zero(value)
    debt, supply = np.flatnonzero(negative & some), np.flatnonzero(~negative & some)
    who = np.concatenate([debt, supply, owner])
    raw = lens.stacked([wideint.taken(value, debt), wideint.taken(value, supply), amount])
    # per row: its asset (0: the base, i + 1: collateral i) and side (0: debt, 1: collateral), in runs
    which = np.repeat(np.arange(len(state["assets"]) + 1),
                      [len(debt) + len(supply), *np.bincount(asset, minlength=len(state["assets"])).tolist()])
    count = len(who)
    side = np.repeat([0, 1], [len(debt), count - len(debt)])
    amount, raw_text = amounts(state, raw, which)
    return pd.DataFrame({"protocol": constant(PROTOCOL, count), "market": constant(comet, count),
                         "account": labels(accounts, who),
                         "asset": labels([state["base_token"], *(a["asset"] for a in state["assets"])], which),
                         "reserve": constant("", count), "side": labels(["debt", "collateral"], side),
                         "amount": amount, "raw": text(raw_text)}, copy=False)


_CONSTANTS: dict[str, pa.StringArray] = {}


def constant(value: str, count: int) -> pd.api.extensions.ExtensionArray:
    """``value`` ``count`` times as a string column: a slice of one written once per value (as
    long as the longest asked for), not written again every rescan."""
    built = _CONSTANTS.get(value)
    if built is None or len(built) < count:
        built = _CONSTANTS[value] = repeated(value, max(count, 1024))._pa_array.combine_chunks()
    return pd.arrays.ArrowStringArray(built.slice(0, count))
