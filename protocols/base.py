"""The protocol plugin interface: reader, rules, executor, devnet.

A protocol is a package (a folder ``protocols/<name>/`` here, or a distribution of its own) that
defines a :class:`Plugin` naming its parts and registers it under the entry-point group
``defi_contagion.plugins``. The core finds plugins through :mod:`protocols` (the registry) and never
imports a protocol by name; a protocol never imports another protocol.

Every capability the core uses is declared here: the four parts (:class:`Reader`, :class:`Rules`,
:class:`Executor`, :class:`Devnet`, plus :class:`VenueExecutor`) and the optional capability classes
a part derives from when the protocol has the mechanism (:class:`AbsorbingRules`,
:class:`OptionMarginRules`, :class:`PartialCollateralExecutor`, :class:`OptionExecutor`). The core
asks ``isinstance``, never ``getattr``.

Units everywhere: token amounts are float64 in whole-token units (``raw`` integers beside them in
the snapshot), prices are USD per whole token, ratios are fractions (0.825, not 8250 bps).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from analyzer.kept import Carried, KeptRows, KeptState, Refreshed
from analyzer.model import Table

if TYPE_CHECKING:
    from web3 import Web3

    from analyzer.devnet.context import DevnetContext
    from analyzer.engine.venues import VenueModel
    from analyzer.model import Snapshot
    from analyzer.multicall import Call, CallResult

Rows = dict[str, Table]
"""Snapshot rows by table name, e.g. ``{"positions": [{...}, ...], "markets": [...]}``, a table as
row dicts or as its columns (:data:`analyzer.model.Columns`: many rows at once). A reader
may add ``"excluded"``: ``{protocol, market, asset, reason}`` rows for markets it read but left out
of every table (an oracle that reverts): the scan warns and lists them in the snapshot's meta
(``excluded_markets``), so a market is never silently priced at 0 or dropped."""


# --- reading ------------------------------------------------------------------------------------

@dataclass
class ReadContext:
    """What a reader may use: every read is pinned to ``block``.

    ``multicall(calls)`` batches through Multicall3 at ``block`` (with the scan's retries);
    ``get_logs(address, topics, from_block, to_block)`` returns raw logs, chunked to the node's
    range limit. ``lens(runtime_code, calldata)``, when the node takes state overrides, runs our
    read-only lens code in one ``eth_call`` at ``block`` (see :mod:`analyzer.lens`); None otherwise,
    and readers use ``multicall``. Readers return rows; they never print. ``assets``: the asset
    addresses the scan's earlier readers found (lending protocols read first), so that a venue
    reader can look up the pools of the assets a cascade trades.
    """

    w3: Web3
    chain_id: int
    block: int
    multicall: Callable[[Sequence[Call]], list[CallResult]]
    get_logs: Callable[..., list[dict]]
    assets: tuple[str, ...] = ()
    lens: Callable[[str, bytes], bytes] | None = None


@dataclass(frozen=True)
class EventField:
    """Where the logs of one event name an address, declared so that discovery reads it from every
    log of a range at once instead of calling a reader's function per log.

    Logs whose topic0 is ``topic0`` (``0x`` hex), emitted by any of ``emitters`` (every address asked
    when empty), name the address in indexed argument ``topic`` (1-3) or in data word ``word``
    (0-based) of a non-indexed argument. ``skip_zero`` / ``skip_emitter``: the zero address / the
    log's own address is never named. For a holding, ``holding_topic`` is the topic of the held
    address, None when the holding is the emitter (spelled as in ``emitters``).
    """

    topic0: str
    emitters: tuple[str, ...] = ()
    topic: int | None = None
    word: int | None = None
    holding_topic: int | None = None
    skip_zero: bool = False
    skip_emitter: bool = False


@dataclass(frozen=True)
class AccountEvents:
    """The logs that name a protocol's accounts, declared so that the scan fetches them in one
    ``eth_getLogs`` per block range (every address, topic0 of any of ``topics``) and caches them.

    ``accounts(log)`` gives the accounts one log names (a log of another address or topic names none);
    ``log`` is a JSON-RPC log as the node sends it (``address``, ``topics`` and ``data`` as ``0x`` hex
    text, ``blockNumber`` an int); a reader takes topics and data as bytes too (web3's logs).
    ``holdings(log)`` (optional) gives ``(account, holding)`` pairs: a holding is the address of
    something the reader reads per account (an aToken, a cToken, a collateral asset) whose balance
    can only become non-zero for that account through a log of these events naming the pair. With every holding of its
    accounts known (:attr:`Reader.holdings`), a reader reads only those.
    """

    addresses: tuple[str, ...]
    topics: tuple[str, ...]                       # 0x-prefixed topic0 hashes
    accounts: Callable[[dict], Sequence[str]]
    holdings: Callable[[dict], Sequence[tuple[str, str]]] | None = None
    # optional: the same as ``accounts`` / ``holdings`` declared (discovery then decodes in bulk);
    # both functions stay, the reference the declarations are tested against
    account_fields: tuple[EventField, ...] = ()
    holding_fields: tuple[EventField, ...] = ()
    # topic0s (of ``topics``) whose every account, and holding, a log of the other topics has named
    # at the same block or before (e.g. a borrow needs collateral, whose receipt a transfer names):
    # discovery from the deployment's first block leaves them out (:meth:`from_deployment`); from a
    # later block it asks them (what came before is not read)
    named_before: tuple[str, ...] = ()

    def from_deployment(self) -> AccountEvents:
        """These events without ``named_before``: what discovery from the deployment asks (the same
        accounts and holdings, from fewer logs)."""
        if not self.named_before:
            return self
        left = {t.lower() for t in self.named_before}
        return replace(
            self, topics=tuple(t for t in self.topics if t.lower() not in left),
            account_fields=tuple(f for f in self.account_fields if f.topic0.lower() not in left),
            holding_fields=tuple(f for f in self.holding_fields if f.topic0.lower() not in left), named_before=())


class Reader(ABC):
    """Reads one market of a protocol (its address book entry, ``deployment``) at one block.

    ``book_keys``: the deployment keys the reader reads; the address-book loader
    (:mod:`analyzer.books`) refuses a market without them.
    """

    protocol: ClassVar[str]
    book_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: ReadContext, deployment: dict[str, Any]):
        self.ctx = ctx
        self.deployment = deployment
        # account -> the holdings (AccountEvents.holdings) discovery saw; set by the scan for
        # discovered accounts, None when an account's holdings are unknown (read everything)
        self.holdings: dict[str, list[str]] | None = None

    @abstractmethod
    def read_markets(self) -> Rows:
        """Markets, their assets and risk parameters, and oracle prices at the context's block.

        Returns
        -------
        Rows
            ``assets`` and ``markets`` rows (and ``venues`` / ``hedgers`` where the protocol has
            them), in the columns of :mod:`analyzer.model`.

        Raises
        ------
        ContagionError
            The deployment is not what the reader expects (no contract at an address, a getter
            that reverts for every market).
        """

    def account_events(self) -> AccountEvents | None:
        """The events that name accounts (the scan's cached discovery); None: see discover_accounts."""
        return None

    def discover_accounts(self, from_block: int, to_block: int) -> list[str]:
        """Every account that may hold a position, from the protocol's events in the block range
        (inclusive). Checksummed, sorted, without duplicates. Readers that declare
        :meth:`account_events` need not override it."""
        events = self.account_events()
        if events is None:
            raise NotImplementedError(f"{type(self).__name__} declares neither account_events nor discover_accounts")
        logs = self.ctx.get_logs(list(events.addresses), [list(events.topics)], from_block, to_block)
        return sorted({a for log in logs for a in events.accounts(log)})

    def change_events(self) -> AccountEvents | None:
        """Incremental rescans: the events that name an account whenever its state changes (every
        balance, flag and mode); None (default): the protocol does not declare them."""
        return None

    def kept_holdings(self, kept: KeptState) -> dict[str, list[str]] | None:
        """Incremental rescans: the holdings (:attr:`AccountEvents.holdings`) each account had at
        the earlier block, from the words kept of it; with the holdings the change events show
        since (:meth:`change_events` declaring ``holdings``), the accounts a rescan reads in full
        are read for those only. None (default): unknown, the accounts read are read in full."""
        return None

    def refresh_accounts(self, previous: KeptState) -> Refreshed:
        """Incremental rescans: ``previous`` holds the accounts that no :meth:`change_events` event
        named since an earlier scan, with the words that scan kept of each (``Rows["_state"]``).
        Returns their rows at this block computed from those and this block's market data, at once
        over arrays, with their kept words at this block and the accounts that must be read again.
        Default: every one is read again."""
        return Refreshed({}, KeptState.empty(), previous.accounts.tolist())

    def carry_accounts(self, kept: KeptState, rows: KeptRows) -> Carried | None:
        """Incremental rescans, when the earlier scan's tables are cached (:mod:`analyzer.carry`):
        ``kept`` holds the accounts no :meth:`change_events` event named since, with their words,
        and ``rows`` their positions rows at the earlier block, as codes. Returns each row's
        ``amount`` and ``raw`` at this block, computed at once over arrays from the kept words and
        this block's market data (every other column of a row, and an account's row, is carried
        as it was), and the accounts that must be read again. The rows of an account not read
        again must be exactly its earlier rows' keys: one whose rows would change (a balance come
        to zero) is read again. None (default): not supported (:meth:`refresh_accounts`)."""
        return None

    @abstractmethod
    def read_accounts(self, accounts: Sequence[str]) -> Rows:
        """Positions of ``accounts`` at the context's block.

        Parameters
        ----------
        accounts
            Checksummed addresses (from discovery, a rescan or ``--accounts``).

        Returns
        -------
        Rows
            ``positions`` and ``accounts`` rows (``options`` for option protocols); an account with
            nothing open yields no rows.
        """


# --- liquidation rules --------------------------------------------------------------------------

@dataclass
class LendingBook:
    """One lending market as arrays: ``n`` accounts × ``m`` assets, in token units.

    ``params`` holds per-asset arrays of length ``m`` (``liquidation_threshold``, ``ltv``,
    ``liquidation_bonus``, ``protocol_fee``, ``collateral_enabled``, ...), ``extra`` anything
    else the protocol's rule needs (e-mode categories, exchange rates, reserves).
    ``per_account`` names the entries of ``extra`` that have one row per account (first axis
    ``n``): :meth:`take` selects their rows with the book's, every other entry is shared.
    ``reserves`` (m,): the market's own contract per column where one market may list an asset
    twice (Compound V2's cToken: legacy cWBTC beside cWBTC2, two columns of one asset), as the
    snapshot's ``reserve`` column; None where the asset alone names a column.
    """

    protocol: str
    market: str
    accounts: np.ndarray            # (n,) account addresses
    assets: np.ndarray              # (m,) asset addresses (columns)
    collateral: np.ndarray          # (n, m) float64, token units
    debt: np.ndarray                # (n, m) float64, token units
    category: np.ndarray            # (n,) int64 account mode (Aave e-mode), 0 when none
    params: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    per_account: tuple[str, ...] = ()
    reserves: np.ndarray | None = None

    def copy(self) -> LendingBook:
        """A book whose collateral, debt and per-account extras may be changed without touching this one."""
        extra = {k: (np.array(v, copy=True) if k in self.per_account else v) for k, v in self.extra.items()}
        return replace(self, collateral=self.collateral.copy(), debt=self.debt.copy(), extra=extra)

    def take(self, rows: np.ndarray) -> LendingBook:
        """The accounts ``rows`` (indices into ``accounts``) as a book of their own (copies of the rows;
        ``np.take`` along the first axis, which copies whole rows, not element by element)."""
        extra = {k: (np.take(v, rows, axis=0) if k in self.per_account else v) for k, v in self.extra.items()}
        return replace(self, accounts=self.accounts[rows], collateral=np.take(self.collateral, rows, axis=0),
                       debt=np.take(self.debt, rows, axis=0), category=self.category[rows], extra=extra)

    def column_key(self, column: int) -> str:
        """What names column ``column`` to the protocol's executor: its reserve where the book has
        them (two columns may share an asset), else its asset."""
        return str(self.assets[column] if self.reserves is None else self.reserves[column])


@dataclass
class Liquidation:
    """One keeper step on ``k`` accounts at once (rows of the book, ``rows``), per asset column.

    ``repaid[i, j]``: debt of asset j repaid for account rows[i] (token units);
    ``seized[i, j]``: collateral of asset j taken from it, all of it (liquidator's share + fee);
    ``fee[i, j]``: the part of ``seized`` that goes to the protocol, not the liquidator.
    For protocols where the protocol itself absorbs the account (Comet), ``absorbed_by_protocol``
    is True and ``seized`` goes to the protocol's balance sheet to be sold later.

    A protocol may subclass it to carry what its own :meth:`Rules.apply` needs; the engine and the
    replay keep the subclass (they only call :meth:`select` and :meth:`scaled`). A subclass names
    its fields with a row per account in ``ROW_FIELDS`` and the amounts that scale with the part of
    the step a keeper takes in ``AMOUNT_FIELDS``.
    """

    ROW_FIELDS: ClassVar[tuple[str, ...]] = ("rows", "repaid", "seized", "fee")
    AMOUNT_FIELDS: ClassVar[tuple[str, ...]] = ("repaid", "seized", "fee")

    rows: np.ndarray                # (k,) int indices into the book's accounts
    repaid: np.ndarray              # (k, m)
    seized: np.ndarray              # (k, m)
    fee: np.ndarray                 # (k, m)
    absorbed_by_protocol: bool = False
    reserves_change_usd: float = 0.0  # for absorbing protocols: change of the protocol's reserves

    def select(self, keep: np.ndarray) -> Liquidation:
        """The same step on the rows ``keep`` (a bool mask or indices over the step's rows) only."""
        return replace(self, **{name: getattr(self, name)[keep] for name in self.ROW_FIELDS
                                if getattr(self, name) is not None})

    def scaled(self, share: np.ndarray) -> Liquidation:
        """The step with every row's amounts times ``share`` (k,): the part a keeper takes."""
        share = np.asarray(share, dtype=float)
        changes = {}
        for name in self.AMOUNT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                changes[name] = value * share.reshape((-1,) + (1,) * (np.ndim(value) - 1))
        return replace(self, **changes)


class Rules(ABC):
    """A protocol's own liquidation rule, vectorised over a :class:`LendingBook`.

    Each method documents the contract function whose math it mirrors. Prices are the protocol
    oracle's USD prices, one per asset column (``(m,)`` float64). A protocol with a mechanism the
    core models separately says so by also deriving from its capability class:
    :class:`AbsorbingRules` (the protocol absorbs accounts and sells their collateral itself) or
    :class:`OptionMarginRules` (short options liquidated under a margin rule).
    """

    protocol: ClassVar[str]

    @abstractmethod
    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        """The protocol's positions in ``snapshot`` as arrays.

        Parameters
        ----------
        snapshot
            A scan (or a synthetic snapshot) holding this protocol's markets and positions.

        Returns
        -------
        list of LendingBook
            One book per market of this protocol (none when it has no positions there).
        """

    @abstractmethod
    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Each account's health factor at oracle ``prices``.

        Parameters
        ----------
        book
            One market of the protocol.
        prices
            ``(m,)`` USD per token of each asset column, as the protocol's oracle reports it.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` float64: liquidation-threshold-weighted collateral over debt, as the
            protocol computes it; ``inf`` without debt. Below 1: liquidatable.
        """

    @abstractmethod
    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """Which accounts the protocol would let a keeper liquidate now.

        Parameters
        ----------
        book
            One market of the protocol.
        prices
            ``(m,)`` oracle USD per token of each asset column.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` bool.
        """

    def health_and_liquidatable(self, book: LendingBook, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`health_factor` (float64) and :meth:`liquidatable` (bool) at once, ``(n,)`` each; a
        rule that derives both from one pass over the book overrides it."""
        return (np.asarray(self.health_factor(book, prices), dtype=float),
                np.asarray(self.liquidatable(book, prices), dtype=bool))

    def sentinel_permits(self, book: LendingBook, prices: np.ndarray, liquidation_allowed: bool) -> np.ndarray:
        """Which accounts ``(n,)`` bool the protocol lets be liquidated given its L2 sequencer check
        (``liquidation_allowed``: the sequencer up and past its grace period,
        :func:`analyzer.oracles.sequencer_down` None). By default a failed check refuses every
        account; a protocol with exemptions overrides it (Aave's PriceOracleSentinel: HF < 0.95)."""
        return np.full(len(book.accounts), bool(liquidation_allowed))

    @abstractmethod
    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        """The largest liquidation a keeper may make now on every liquidatable account, as one step.

        Parameters
        ----------
        book
            One market of the protocol.
        prices
            ``(m,)`` oracle USD per token of each asset column.
        mask
            ``(n,)`` bool: consider only these accounts (default: all).

        Returns
        -------
        Liquidation
            The step (a protocol may return its own subclass); the engine and the replay repeat
            it while the rule allows.
        """

    @abstractmethod
    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        """The book after a keeper step.

        Parameters
        ----------
        book
            The market before the step (not modified).
        liquidation
            A step from :meth:`liquidate` on ``book`` (possibly narrowed by
            :meth:`Liquidation.select` or scaled by :meth:`Liquidation.scaled`).

        Returns
        -------
        LendingBook
            A new book with the repaid debt and the seized collateral removed.
        """

    def bad_debt_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """USD of each account's debt that no collateral backs.

        Parameters
        ----------
        book
            One market of the protocol.
        prices
            ``(m,)`` oracle USD per token of each asset column.

        Returns
        -------
        numpy.ndarray
            ``(n,)`` float64: debt value beyond all collateral value, 0 where covered.
        """
        return np.maximum(book.debt @ prices - book.collateral @ prices, 0.0)

    def unrealised_loss_usd(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """``(n,)`` USD of each account's bad debt that the market's suppliers bear but that no price
        shows yet: not in the receipt token's redemption value, not in a share price. By default
        all of :meth:`bad_debt_usd`: an Aave aToken balance is scaled balance × liquidity index and
        the index never falls (3.3+ books the loss as a reserve deficit, ``_burnBadDebt``); a
        Compound V2 cToken's ``exchangeRateStored`` is (cash + totalBorrows − totalReserves) /
        totalSupply, and the bad debt stays in totalBorrows. A protocol whose share price takes the
        loss (Morpho at liquidation) counts only what it has not realised yet."""
        return self.bad_debt_usd(book, prices)

    def written_off_usd(self, book: LendingBook, prices: np.ndarray) -> float:
        """USD of bad debt this market has already written off, cumulative, as its contracts record
        it, and which no position shows any more (Morpho Blue's ``Liquidate.badDebtAssets``). 0
        for protocols that leave bad debt on the account. A replay counts the growth of it."""
        return 0.0


class AbsorbingRules(Rules):
    """Rules of a protocol that absorbs a liquidated account itself (its steps have
    ``absorbed_by_protocol``) and sells the absorbed collateral at a discount (Comet)."""

    @abstractmethod
    def store_front_price(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        """The price at which the protocol sells collateral it absorbed (Comet's ``quoteCollateral``).

        Parameters
        ----------
        book
            One market of the protocol.
        prices
            ``(m,)`` oracle USD per token of each asset column.

        Returns
        -------
        numpy.ndarray
            ``(m,)`` USD per token, at or below ``prices``.
        """

    def for_sale(self, book: LendingBook, step: Liquidation) -> np.ndarray:
        """``(k,)`` bool per row of the absorb ``step``: whether the protocol sells what it absorbed
        from that account right after absorbing it (Comet sells only while its reserves are below
        ``targetReserves``; ``buyCollateral`` reverts ``NotForSale`` otherwise). Default: always."""
        return np.ones(len(step.rows), dtype=bool)


class InterestAccrual(ABC):
    """Optional capability of a rule: the protocol's own interest accrual, so that the engine lets
    debts and deposits grow while the rounds of a cascade pass, as they do on chain."""

    @abstractmethod
    def accrue(self, book: LendingBook, seconds: float, blocks: float) -> LendingBook:
        """The book after ``seconds`` (and ``blocks``, for per-block protocols) of interest at the
        rates it was read with: a new book, the input is not modified."""

    def max_debt_growth(self, book: LendingBook, seconds: float, blocks: float) -> float:
        """An upper bound of any account's debt growth factor over the same time (health screening);
        by default the largest column growth of a unit debt."""
        if len(book.accounts) == 0:
            return 1.0
        probe = book.take(np.array([0]))
        probe.collateral, probe.debt = np.zeros_like(probe.collateral), np.ones_like(probe.debt)
        return float(max(self.accrue(probe, seconds, blocks).debt.max(), 1.0))


@dataclass
class OptionLiquidation:
    """What an option protocol's margin rule does now, per row of the options it was given.

    ``liquidated``: bool; ``collateral_sold``: units of the row's collateral asset sold on venues
    to buy the option back; ``value_usd``: the USD value the liquidation moved (the buy-back the
    pool received). ``carry``: what these liquidations changed in the market's own state (Lyra:
    each strike's skew and the users' net vega), opaque to the core, which hands it back to the
    rule's next call in the same cascade; None when nothing carries.
    """

    liquidated: np.ndarray
    collateral_sold: np.ndarray
    value_usd: np.ndarray
    carry: Any = None


class OptionMarginRules(Rules):
    """Rules of an option protocol: short options are liquidated when their collateral falls under
    the protocol's own minimum (Lyra's ``OptionGreekCache.getMinCollateral``). Such a protocol has
    no lending books; the lending methods below are those of an empty book."""

    @abstractmethod
    def option_liquidations(self, options: pd.DataFrame, spot_usd: np.ndarray, iv: np.ndarray,
                            now: int, carry: Any = None) -> OptionLiquidation:
        """What the margin rule does now to this protocol's open positions in one market.

        Parameters
        ----------
        options
            The snapshot's ``options`` rows of one market of this protocol.
        spot_usd
            Per row, the underlying's USD price.
        iv
            Per row, the implied volatility (fraction: 0.8 = 80 vol points): the snapshot's,
            moved by the scenario and the vol spiral.
        now
            Unix time (seconds) at which the rule is evaluated (time to expiry).
        carry
            The previous answer's ``carry`` for the same market in this cascade (None at the start).

        Returns
        -------
        OptionLiquidation
            Per row: liquidated or not, collateral sold to buy the option back, its USD value.
        """

    def books(self, snapshot: Snapshot) -> list[LendingBook]:
        return []

    def health_factor(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return np.full(len(book.accounts), np.inf)

    def liquidatable(self, book: LendingBook, prices: np.ndarray) -> np.ndarray:
        return np.zeros(len(book.accounts), dtype=bool)

    def liquidate(self, book: LendingBook, prices: np.ndarray, mask: np.ndarray | None = None) -> Liquidation:
        empty = np.zeros((0, len(book.assets)))
        return Liquidation(np.zeros(0, dtype=np.int64), empty, empty, empty)

    def apply(self, book: LendingBook, liquidation: Liquidation) -> LendingBook:
        return book.copy()


class ReceiptWritedownRules(Rules):
    """Rules of a protocol whose receipt tokens' redemption value falls with the losses of
    particular books (Morpho's vaults: a vault share falls by the realised bad debt of the markets
    that vault supplies, and no other; ERC-4626 ``convertToAssets``). A protocol without this
    capability never writes its receipts down: its bad debt is the suppliers' unrealised loss
    (:meth:`Rules.unrealised_loss_usd`), which moves no price."""

    @abstractmethod
    def receipt_writedowns(self, snapshot: Snapshot, books: list[LendingBook]) -> dict[str, float]:
        """Fraction (0..1) of each of the protocol's receipt tokens (by asset address) written down
        when its books are ``books`` (this protocol's books as the engine holds them now)."""


# --- executing on anvil -------------------------------------------------------------------------

@dataclass
class ExecutedLiquidation:
    """What a real liquidation transaction did, read from its receipt and balances."""

    account: str
    success: bool
    tx_hash: str = ""
    repaid: dict[str, int] = field(default_factory=dict)    # asset -> raw amount
    seized: dict[str, int] = field(default_factory=dict)    # asset -> raw amount (liquidator + fee)
    fee: dict[str, int] = field(default_factory=dict)
    error: str = ""


class Executor(ABC):
    """Sends real transactions to an anvil chain: liquidations and oracle moves.

    Implementations call :func:`analyzer.chain.require_anvil` in ``__init__`` (and so refuse
    any other client); keepers are anvil accounts or impersonated addresses, never a key read
    from the environment.
    """

    protocol: ClassVar[str]

    def __init__(self, w3: Web3, deployment: dict[str, Any], keeper: str):
        from analyzer.chain import require_anvil

        require_anvil(w3)
        self.w3 = w3
        self.deployment = deployment
        self.keeper = keeper

    @abstractmethod
    def set_price(self, asset: str, price_usd: float) -> None:
        """Make the protocol's oracle report ``price_usd`` (USD per token) for ``asset`` (an address).

        Raises
        ------
        ContagionError
            The protocol's oracle cannot be moved for ``asset`` (no feed, or it reverts).
        """

    @abstractmethod
    def liquidate(self, account: str, debt_asset: str | None, collateral_asset: str | None,
                  amount_raw: int | None = None) -> ExecutedLiquidation:
        """Liquidate ``account`` as a keeper would, with a real transaction.

        Parameters
        ----------
        account
            The borrower.
        debt_asset, collateral_asset
            The book columns the keeper repays and seizes, named as :meth:`LendingBook.column_key`
            names them (the reserve where the protocol's books have them); None for a protocol
            that absorbs the whole account itself.
        amount_raw
            Debt to repay in the asset's base units; None: as much as the protocol allows.

        Returns
        -------
        ExecutedLiquidation
            What the receipt says was repaid and seized, keyed by asset; ``success`` False (with
            ``error``) when the protocol refused it: a refusal is a result, not an exception.
        """

    def close_account(self, account: str, collateral: Sequence[str], debt: Sequence[str]
                      ) -> tuple[dict[str, int], dict[str, int]]:
        """A forced sale (:class:`analyzer.scenarios.ForcedSale`) on the fork: ``account``,
        impersonated, repays all its ``debt`` (asset addresses as the snapshot's positions name
        them) with tokens dealt to it, then withdraws all its ``collateral``. Returns (raw units
        withdrawn per asset, raw units repaid per asset).

        Raises
        ------
        ContagionError
            The protocol's executor has no such path (the default), or the protocol refused.
        """
        from analyzer.errors import ContagionError

        raise ContagionError(f"{self.protocol}: a forced sale is not replayed for this protocol "
                             f"(its executor does not close accounts)")


class PartialCollateralExecutor(Executor):
    """An executor for an absorbing protocol whose keeper buys only part of what the protocol
    absorbed (Comet: ``absorb`` then ``buyCollateral`` for a share of each collateral)."""

    @abstractmethod
    def liquidate(self, account: str, debt_asset: str | None, collateral_asset: str | None,
                  amount_raw: int | None = None, *, collateral_share: float = 1.0) -> ExecutedLiquidation:
        """Liquidate ``account``; the keeper then buys part of what the protocol absorbed from it.

        Parameters
        ----------
        account, debt_asset, collateral_asset, amount_raw
            As :meth:`Executor.liquidate` (the keeper buys only ``collateral_asset`` when given).
        collateral_share
            The share (0..1) of each absorbed collateral the keeper buys.

        Returns
        -------
        ExecutedLiquidation
            The absorb and the purchase, as read from their receipts.
        """


class OptionExecutor(Executor):
    """An executor for an option protocol: liquidates one option position by its id."""

    @abstractmethod
    def liquidate_position(self, position_id: int) -> ExecutedLiquidation:
        """Liquidate a short option position as a keeper would (``OptionMarket.liquidatePosition``).

        Parameters
        ----------
        position_id
            The position's id in the protocol's option token.

        Returns
        -------
        ExecutedLiquidation
            ``account`` is the position's owner; ``success`` False (with ``error``) when refused.
        """

    @abstractmethod
    def shift_iv(self, asset: str, vol_points: float) -> None:
        """Move every implied volatility the market quotes on ``asset`` by ``vol_points`` (0.4 = +40
        vol) from where it stands: the engine's IV path (a scenario's ``[iv]`` shock, the vol spiral)
        put on chain by the replay, as the price shock is."""


@dataclass(frozen=True)
class PriceSource:
    """Where a protocol's oracle reads one asset's USD price: ``feed`` (a Chainlink-style feed, an
    adapter or a wrapper; the core follows it to the root), or, when the oracle reverts for the
    asset (a market without a config), ``feed`` None and ``error`` saying so."""

    asset: str
    feed: str | None
    error: str = ""


class PriceSources(ABC):
    """Optional capability: where the protocol's oracle gets each asset's price, read from the
    chain through the protocol's own getters (Aave ``getSourceOfAsset``, Comet ``getAssetInfo``'s
    ``priceFeed``, a Compound V2 oracle's per-market config). The price mover of
    :mod:`analyzer.oracles` moves the root feed behind each source."""

    def __init__(self, w3: Web3, deployment: dict[str, Any], block: int | None = None):
        self.w3 = w3
        self.deployment = deployment
        self.block = block        # read at this block (None: the latest)

    def read_block(self) -> int:
        return self.w3.eth.block_number if self.block is None else self.block

    @abstractmethod
    def price_sources(self) -> list[PriceSource]:
        """Where the protocol's oracle reads each asset's price, at :meth:`read_block`.

        Returns
        -------
        list of PriceSource
            One entry per asset the protocol prices (asset addresses as in the snapshot); an asset
            its oracle reverts for has ``feed`` None and ``error`` set.
        """

    def sequencer_uptime_feed(self) -> tuple[str, int] | None:
        """On an L2: the sequencer-uptime feed the protocol checks before liquidations and its grace
        period in seconds (Aave's PriceOracleSentinel); None where there is none."""
        return None


class VenueExecutor(ABC):
    """Moves and trades a venue protocol's pools on an anvil chain (replay): the market side of a
    cascade, as :class:`Executor` is the protocol side. Implementations call require_anvil.

    ``entries``: the pools it trades, each a dict with at least ``asset``, ``quote`` (addresses)
    and ``pool`` (the venue address), as its address book lists them.
    """

    entries: list[dict[str, Any]]
    symbols: dict[str, str]

    @abstractmethod
    def __init__(self, w3: Web3, deployment: dict[str, Any], decimals: dict[str, int], symbols: dict[str, str]):
        """``decimals`` and ``symbols`` by asset address, from the snapshot."""

    @abstractmethod
    def ratio(self, entry: dict) -> float:
        """Units of the entry's ``quote`` per unit of its ``asset`` in its pool now (whole tokens)."""

    def primary(self, asset: str) -> dict | None:
        """The first pool of ``asset`` against a stablecoin (the one the oracles follow), if any."""
        for entry in self.entries:
            if entry["asset"] == asset and self.symbols.get(entry["quote"]) in STABLE_SYMBOLS:
                return entry
        return None

    def market_prices(self, stable_usd: dict[str, float]) -> dict[str, float]:
        """USD per asset from each asset's primary pool (against a stablecoin at ``stable_usd``)."""
        return {e["asset"]: self.ratio(e) * stable_usd.get(e["quote"], 1.0)
                for e in self.entries if self.primary(e["asset"]) is e}

    @abstractmethod
    def move_to(self, entry: dict, target_ratio: float, trader: str) -> None:
        """Trade in one pool until its price reaches a target (the replay's shock).

        Parameters
        ----------
        entry
            One of :attr:`entries`.
        target_ratio
            Units of the entry's ``quote`` per unit of its ``asset``.
        trader
            The anvil account (or impersonated address) that trades; funded by cheats.
        """

    @abstractmethod
    def sell(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        """Sell ``amount_raw`` base units of ``asset`` with a real swap.

        Parameters
        ----------
        asset
            The asset's address.
        amount_raw
            Base units sold.
        trader
            The anvil account (or impersonated address) that trades.
        pool
            The venue address (default: the asset's pool against a stablecoin).

        Raises
        ------
        ContagionError
            The swap reverts, or no pool of this venue trades ``asset``.
        """

    @abstractmethod
    def buy(self, asset: str, amount_raw: int, trader: str, pool: str | None = None) -> None:
        """Buy exactly ``amount_raw`` base units of ``asset``; as :meth:`sell` otherwise."""


STABLE_SYMBOLS = ("USDC", "USDT", "DAI")
"""Symbols treated as the USD numeraire of venue prices (quoted at their own oracle price)."""


def pool_priced_assets(tokens: dict[str, tuple[str, int]], mids: dict[tuple[str, str], float]) -> list[dict]:
    """The ``assets`` rows a venue reader writes: stablecoins at $1, every other token at its pools'
    mid times its quote's price, quotes priced through their own pools (X/WETH via WETH/USDC, up
    to three hops). ``tokens``: address -> (symbol, decimals); ``mids``: (asset, quote) -> quote
    per asset in whole units."""
    prices = {a: 1.0 for a, (symbol, _) in tokens.items() if symbol in STABLE_SYMBOLS}
    for _ in range(3):
        for (asset, quote), mid in mids.items():
            if asset not in prices and quote in prices:
                prices[asset] = mid * prices[quote]
    return [{"address": a, "symbol": tokens[a][0], "decimals": tokens[a][1], "price_usd": p, "receipt_of": ""}
            for a, p in sorted(prices.items())]


# --- devnet -------------------------------------------------------------------------------------

def pool_tables(ctx: DevnetContext, protocol: str, key: str) -> list[dict[str, Any]]:
    """A venue's devnet pools: the scenario's ``protocols.<protocol>.<key>`` array of tables, each
    naming two different scenario assets ``asset`` and ``quote``. Anything else is bad input
    (ContagionError naming the place); the protocol checks its own further keys."""
    from analyzer.errors import ContagionError

    where = f"{ctx.scenario.path.name}: protocols.{protocol}.{key}"
    tables = ctx.scenario.protocol(protocol).get(key, [])
    if not isinstance(tables, list):
        raise ContagionError(f"{where}: expected an array of tables")
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise ContagionError(f"{where}[{i}]: expected a table")
        ctx.scenario.asset(table.get("asset", ""), f"{where}[{i}].asset")
        ctx.scenario.asset(table.get("quote", ""), f"{where}[{i}].quote")
        if table["asset"] == table["quote"]:
            raise ContagionError(f"{where}[{i}]: asset and quote are the same")
    return tables


class Devnet(ABC):
    """Deploys the protocol on a fresh anvil from real artifacts (or our fixtures) and seeds it."""

    protocol: ClassVar[str]

    @abstractmethod
    def deploy(self, ctx: DevnetContext) -> dict[str, dict[str, Any]]:
        """Deploy and configure the protocol for the devnet scenario's assets.

        Parameters
        ----------
        ctx
            The devnet being built: its web3 connection, deployer, scenario and the tokens and
            feeds the core deployed.

        Returns
        -------
        dict
            The protocol's markets by name, each an address book entry of the same shape as the
            built-in books' (:mod:`analyzer.books`), so readers work on both.
        """

    @abstractmethod
    def seed(self, ctx: DevnetContext, markets: dict[str, dict[str, Any]]) -> None:
        """Open the scenario's positions on this protocol's ``markets`` with real transactions.

        Parameters
        ----------
        ctx
            The devnet being built.
        markets
            What :meth:`deploy` returned.
        """


# --- off-chain option venues ---------------------------------------------------------------------

class OptionsSource(ABC):
    """An options venue's public market data (open interest, mark IV) as the venue's own API serves
    it: :func:`analyzer.options.imports.import_options` reads saved responses, and ``fetch`` asks the
    venue (or a server speaking its format) for the same responses.

    Normalised instrument rows carry: ``instrument``, ``currency`` (the underlying's ticker, e.g.
    "ETH"), ``kind`` ("call" | "put"), ``strike`` (USD), ``expiry`` (unix s), ``as_of`` (unix s of
    the data), ``open_interest`` (underlying units), ``mark_iv`` (fraction: 0.65 = 65 vol points),
    ``underlying_price`` (USD, the forward the venue marks the option against).
    """

    venue: ClassVar[str]
    default_url: ClassVar[str]

    @abstractmethod
    def requests(self, currency: str) -> list[tuple[str, dict[str, str]]]:
        """The GET requests (path, query) whose responses :meth:`instruments` needs for ``currency``."""

    @abstractmethod
    def response_kind(self, payload: Any) -> str | None:
        """Which of this venue's responses ``payload`` is (e.g. "instruments", "summary"), or None
        when it is not one of this venue's."""

    @abstractmethod
    def instruments(self, responses: dict[str, list[Any]]) -> list[dict]:
        """Normalised option rows (see the class docstring) from this venue's responses, grouped by
        :meth:`response_kind`. Raises ContagionError naming what is missing or malformed."""


# --- risk parameters ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TunableParameter:
    """One risk parameter a governance change may set: ``parameter`` of ``asset`` in ``market``,
    now ``value`` (a fraction), moved in steps of ``step`` (the size governance proposals use)
    within [``minimum``, ``maximum``]; ``tighten`` is -1 when a safer setting is a lower value;
    ``margin``: it sets where a position becomes liquidatable (a liquidation threshold, or a
    collateral factor that is one), the parameter a dynamic-margin schedule moves."""

    market: str
    asset: str
    parameter: str
    value: float
    step: float
    minimum: float
    maximum: float
    tighten: int = -1
    margin: bool = False


@dataclass(frozen=True)
class ParameterChange:
    """``parameter`` of ``asset`` in ``market`` of ``protocol`` set to ``value`` (a fraction)."""

    protocol: str
    market: str
    asset: str
    parameter: str
    value: float


def changes_by_market_asset(changes: Sequence[ParameterChange]) -> dict[tuple[str, str], list[ParameterChange]]:
    """``changes`` grouped by the (market, asset) row they set, in their order."""
    out: dict[tuple[str, str], list[ParameterChange]] = {}
    for change in changes:
        out.setdefault((change.market, change.asset), []).append(change)
    return out


class ParameterTuning(ABC):
    """A protocol's risk parameters as its governance sets them: listed and applied to a snapshot
    offline (for ``contagion recommend``), and applied on an anvil fork through the protocol's own
    configuration functions (for ``recommend --prove``)."""

    protocol: ClassVar[str]

    @abstractmethod
    def parameters(self, snapshot: Snapshot) -> list[TunableParameter]:
        """The parameters of this protocol's markets in ``snapshot`` a governance change may re-set."""

    @abstractmethod
    def apply(self, snapshot: Snapshot, changes: Sequence[ParameterChange]) -> Snapshot:
        """A copy of ``snapshot`` whose rows carry ``changes`` (this protocol's), as the protocol's
        configuration functions would store them (their rounding, their consistency rules)."""

    @abstractmethod
    def configure(self, w3: Web3, deployment: dict[str, Any], changes: Sequence[ParameterChange]) -> None:
        """Set ``changes`` of the market ``deployment`` on an anvil fork (``require_anvil``) through
        the protocol's own configuration functions, as its governance would."""


# --- the plugin ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plugin:
    """A protocol's parts. ``devnet_order``: lower deploys first (lending before venues before
    options); ``books``: the folder of the plugin's built-in address books (one ``<chain>.json``
    per chain, the shape :mod:`analyzer.books` reads, each market citing its source);
    ``market_key``: the deployment key of the contract that names a market in the snapshot's
    ``market`` column (Comet's ``comet``, Aave's ``pool``);
    ``venue_models``: the :class:`analyzer.engine.venues.VenueModel` subclasses that simulate the
    ``venues`` rows its reader writes (each names its ``model``)."""

    name: str
    reader: type[Reader] | None = None
    rules: type[Rules] | None = None
    executor: type[Executor] | None = None
    devnet: type[Devnet] | None = None
    venue_executor: type[VenueExecutor] | None = None
    price_sources: type[PriceSources] | None = None
    venue_models: tuple[type[VenueModel], ...] = ()
    options_source: type[OptionsSource] | None = None
    tuning: type[ParameterTuning] | None = None
    devnet_order: int = 50
    books: Path | None = None
    market_key: str = ""
