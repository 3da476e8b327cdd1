"""From a snapshot to the engine's arrays (once per snapshot), and from a scenario to round 0.

:func:`prepare` asks every protocol plugin's rules for its books (the plugin's own
``Rules.books``; the engine never rebuilds a protocol's book), indexes every book column into
the snapshot's asset list, builds the venues (:func:`analyzer.engine.impact.build_venues`) and the
options arrays. A :class:`Prepared` is reused by every scenario of a sweep.
:func:`start_state` applies a scenario's shock: exogenous moves (venues arbitraged to them),
DEX-only moves, IV shocks, and forced sales queued as round-0 flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyzer.engine import attribution as attr
from analyzer.engine.impact import AssetVenues
from analyzer.engine.market import move_to_price
from analyzer.engine.options import OptionBook, vol_spiral
from analyzer.errors import ContagionError
from analyzer.model import Snapshot, receipt_claim
from analyzer.scenarios import ShockScenario
from protocols.base import LendingBook, OptionMarginRules, ReceiptWritedownRules, Rules


@dataclass
class BookSlot:
    """One protocol market's book and how its columns map to the snapshot's assets."""

    protocol: str
    rules: Rules
    book: LendingBook                 # before the shock (never modified)
    cols: np.ndarray                  # (m,) asset index of each column
    oracle_scale: np.ndarray          # (m,) protocol oracle price / market price before the shock
    threshold: np.ndarray             # (m,) liquidation threshold (attribution weights only)
    initially_liquidatable: np.ndarray  # (n,) bool at the pre-shock oracle prices
    bad_debt_pre: np.ndarray          # (n,) USD at the pre-shock oracle prices
    health_pre: np.ndarray            # (n,) health factor at the pre-shock oracle prices
    holders: list                     # per column: rows with collateral or debt in it
    collateral_total: np.ndarray      # (m,) tokens supplied as collateral (write-down denominator)
    market_index: int = -1            # index into Prepared.markets


@dataclass
class Prepared:
    """A snapshot as arrays: assets ``A``, protocols ``P``, sources ``S``, books per market."""

    snapshot: Snapshot
    assets: np.ndarray
    symbols: np.ndarray
    price_pre: np.ndarray
    iv_pre: np.ndarray
    is_receipt: np.ndarray
    receipt_underlying: np.ndarray    # (A,) asset index of the underlying (itself when not a receipt)
    receipt_ratio: np.ndarray         # (A,) underlying units per receipt unit (1 when not a receipt)
    receipt_protocol_index: np.ndarray  # (A,) issuing protocol's index; -1 when none (not a receipt, a native coin)
    receipt_claims: np.ndarray        # (A, K) 1 where receipt a is written down by the losses of market k
    #                                   (issuers with ReceiptWritedownRules only; 0 for aTokens, cTokens)
    markets: list[tuple[str, str]]    # (K,) (protocol, market) of the books: where losses are kept
    slots: list[BookSlot]
    venues: dict                      # asset index -> AssetVenues (pre-shock; copied per scenario)
    options: OptionBook
    option_rules: dict
    protocols: list[str]
    sources: list[str]
    protocol_index: dict = field(default_factory=dict)
    source_index: dict = field(default_factory=dict)
    oracle_base: np.ndarray | None = None     # (A,) the asset whose oracle price a derived one follows
    oracle_ratio: np.ndarray | None = None    # (A,) derived oracle price / its base's (1: not derived)

    def derive_oracles(self, source: np.ndarray, source_attr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Oracle prices (A,) and their attribution (A, S) with every derived price (a ratio
        adapter's: wstETH = stETH ratio × ETH / USD, ``meta["derived_prices"]`` of the snapshot)
        set to its ratio × its base's, as the chain's adapter computes it: a derived price never
        follows a venue of its own."""
        if self.oracle_base is None:
            return source, source_attr
        derived = np.flatnonzero(self.oracle_base != np.arange(len(self.assets)))
        if len(derived) == 0:
            return source, source_attr
        source, source_attr = source.copy(), source_attr.copy()
        assert self.oracle_ratio is not None
        base, ratio = self.oracle_base[derived], self.oracle_ratio[derived]
        source[derived] = ratio * source[base]
        source_attr[derived] = ratio[:, None] * source_attr[base]
        return source, source_attr

    def asset(self, name: str, where: str) -> int:
        """Index of the asset named by symbol or address; an error names ``where`` it was asked."""
        hits = np.flatnonzero((self.symbols == name) | (self.assets == name))
        if len(hits) == 0:
            aliases = {"ETH": "WETH", "BTC": "WBTC"}
            hits = np.flatnonzero(self.symbols == aliases.get(name, ""))
        if len(hits) == 0:
            known = ", ".join(sorted(self.symbols.tolist())[:12])
            raise ContagionError(f'{where}: asset "{name}" is not in the snapshot (known: {known})')
        return int(hits[0])


class _VenueView:
    """The snapshot as build_venues sees it, without receipt-token collateral: a seized receipt is
    redeemed and its underlying sold, so receipts need no venue of their own."""

    def __init__(self, snapshot, receipts: set[str]):
        self._snapshot = snapshot
        self.venues, self.hedgers, self.options = snapshot.venues, snapshot.hedgers, snapshot.options
        positions = snapshot.positions
        self.positions = positions.loc[~positions["asset"].isin(receipts)] if receipts else positions

    def price_of(self):
        return self._snapshot.price_of()

    def symbol_of(self):
        return self._snapshot.symbol_of()

    def address_of(self, symbol):
        return self._snapshot.address_of(symbol)


def venues_of(snapshot, redeemed: set[str], venue_models: dict | None = None) -> dict:
    """:func:`analyzer.engine.impact.build_venues` of ``snapshot`` where the ``redeemed`` assets
    (receipts, the native coin) need no venue of their own, with the models the snapshot declares
    for its assets without an on-chain venue (a devnet's synthetic assets), overridden by the
    caller's ``venue_models`` (a scenario's [venue_model] tables)."""
    from analyzer.engine.impact import build_venues

    declared = snapshot.meta.get("venue_models") or {}
    models = {**declared, **(venue_models or {})} or None
    return build_venues(_VenueView(snapshot, redeemed), models)


def redeemed_assets(snapshot) -> set[str]:
    """Assets a cascade redeems rather than sells: receipt tokens (their underlying is sold) and
    the native coin (sold as its wrapped token)."""
    assets = snapshot.assets
    receipts = {a for a, r in zip(assets["address"], assets["receipt_of"].fillna(""), strict=True)
                if r and receipt_claim(r) is not None}
    return receipts | set(snapshot.wrapped_native_of())


def default_rules() -> dict[str, Rules]:
    from protocols import plugins

    return {name: plugin.rules() for name, plugin in plugins().items() if plugin.rules is not None}


def books_of(name: str, rule: Rules, snapshot) -> list:
    """``rule``'s books of ``snapshot``; a snapshot whose rows lack what the protocol's rules read
    (params keys, numbers of the wrong kind: a hand-edited or foreign snapshot) is bad input."""
    try:
        return list(rule.books(snapshot))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ArithmeticError) as exc:
        raise ContagionError(f"snapshot: the {name} rows are not what its rules read "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None


def prepare(snapshot, *, rules: dict[str, Rules] | None = None, venues: dict | None = None,
            venue_models: dict | None = None) -> Prepared:
    """Arrays of ``snapshot`` for the engine. ``rules``: protocol name -> Rules instance (default:
    every registered plugin's); ``venues``: asset address -> AssetVenues (default: build_venues)."""
    rules = default_rules() if rules is None else rules
    assets_t = snapshot.assets
    assets = assets_t["address"].to_numpy(object)
    index = {a: i for i, a in enumerate(assets)}   # assets: tens to hundreds
    price_pre = assets_t["price_usd"].to_numpy(float)
    receipt_of = assets_t["receipt_of"].fillna("").to_numpy(object)
    slots: list[BookSlot] = []
    market_of: dict[tuple[str, str], int] = {}
    oracle_of = {(p, m, a): o for p, m, a, o in zip(snapshot.markets["protocol"], snapshot.markets["market"],
                                                     snapshot.markets["asset"], snapshot.markets["oracle_price_usd"],
                                                     strict=True)}
    for name, rule in rules.items():
        for book in books_of(name, rule, snapshot):
            if len(book.accounts) == 0:
                continue
            try:
                cols = np.array([index[a] for a in book.assets], dtype=np.int64)
            except KeyError as exc:
                raise ContagionError(f"{name} book {book.market}: asset {exc.args[0]} is not in the assets table") from None
            oracle = np.array([oracle_of.get((book.protocol, book.market, a), np.nan) for a in book.assets])
            oracle = np.where(np.isfinite(oracle) & (oracle > 0), oracle, price_pre[cols])
            scale = np.divide(oracle, price_pre[cols], out=np.ones(len(cols)), where=price_pre[cols] > 0)
            threshold = np.asarray(book.params.get("liquidation_threshold", np.ones(len(cols))), dtype=float)
            held = (book.collateral != 0) | (book.debt != 0)
            key = (name, str(book.market))
            if key not in market_of:
                market_of[key] = len(market_of)
            slots.append(BookSlot(name, rule, book, cols, scale, threshold,
                                  np.asarray(rule.liquidatable(book, oracle), dtype=bool),
                                  np.asarray(rule.bad_debt_usd(book, oracle), dtype=float),
                                  np.asarray(rule.health_factor(book, oracle), dtype=float),
                                  [np.flatnonzero(held[:, j]) for j in range(len(cols))], book.collateral.sum(0),
                                  market_of[key]))
    margin = {n for n, r in rules.items() if isinstance(r, OptionMarginRules)}
    option_protocols = sorted((set(snapshot.options["protocol"]) | set(snapshot.hedgers["protocol"]) | margin)
                              - (set(rules) - margin))
    lending = [n for n in rules if n not in option_protocols]
    protocols = lending + option_protocols
    protocol_index = {p: i for i, p in enumerate(protocols)}
    is_receipt = np.array([bool(r) for r in receipt_of])
    underlying = np.arange(len(assets))
    ratio = np.ones(len(assets))
    receipt_protocol = np.full(len(assets), -1, dtype=np.int64)
    claims = np.zeros((len(assets), len(market_of)))
    for i in np.flatnonzero(is_receipt):      # receipt tokens: a handful per protocol
        claim = receipt_claim(receipt_of[i])
        if claim is None or claim.underlying not in index or claim.protocol not in protocol_index:
            is_receipt[i] = False
            continue
        under = claim.underlying
        underlying[i], receipt_protocol[i] = index[under], protocol_index[claim.protocol]
        ratio[i] = price_pre[i] / price_pre[index[under]] if price_pre[index[under]] > 0 else 0.0
        if isinstance(rules.get(claim.protocol), ReceiptWritedownRules):
            # only an issuer whose share price takes losses writes its receipts down; an aToken or
            # a cToken redeems for as much underlying after its protocol's bad debt as before
            claims[i] = _claimed_markets(claim, market_of, slots)
    for native, wrapped in snapshot.wrapped_native_of().items():
        # the native coin moves and is sold as its wrapped token: a receipt that no protocol issues
        coin = index[native]
        is_receipt[coin], underlying[coin], ratio[coin] = True, index[wrapped], 1.0
        underlying[(underlying == coin) & is_receipt] = index[wrapped]    # cETH: redeemed for ETH, sold as WETH
    if venues is None:
        venues = venues_of(snapshot, set(assets[is_receipt]), venue_models)
    options = OptionBook.from_snapshot(snapshot, index)
    sources = attr.source_names(lending, option_protocols, options.hedging_protocols)
    oracle_base, oracle_ratio = np.arange(len(assets)), np.ones(len(assets))
    for asset, derived in (snapshot.meta.get("derived_prices") or {}).items():
        if asset in index and derived.get("base") in index:
            oracle_base[index[asset]], oracle_ratio[index[asset]] = index[derived["base"]], float(derived["ratio"])
    return Prepared(snapshot, assets, assets_t["symbol"].to_numpy(object), price_pre,
                    _option_ivs(assets_t["iv"].to_numpy(float), options), is_receipt, underlying, ratio, receipt_protocol,
                    claims, list(market_of), slots,
                    {index[a]: v for a, v in venues.items() if a in index}, options,
                    {n: rules[n] for n in sorted(margin)}, protocols, sources,
                    protocol_index, {s: i for i, s in enumerate(sources)}, oracle_base, oracle_ratio)


def _claimed_markets(claim, market_of: dict[tuple[str, str], int], slots: list[BookSlot]) -> np.ndarray:
    """(K,) 1 for the markets whose losses write the receipt down: the market it names, else every
    market of its protocol whose book lists the underlying."""
    out = np.zeros(len(market_of))
    if claim.market:
        k = market_of.get((claim.protocol, claim.market))
        if k is not None:
            out[k] = 1.0
        return out
    for slot in slots:
        if slot.protocol == claim.protocol and claim.underlying in set(slot.book.assets):
            out[slot.market_index] = 1.0
    return out


def _option_ivs(iv: np.ndarray, options: OptionBook) -> np.ndarray:
    """IV per asset; an option underlying without one takes the IV of its market's other collateral
    asset that has one (Lyra V1 quotes IV on its synth, sETH, while the market hedges WETH)."""
    iv = iv.copy()
    for u in np.unique(options.underlying):            # option underlyings: a handful
        if np.isfinite(iv[u]):
            continue
        markets = set(options.frame["market"][options.underlying == u])
        rows = options.frame["market"].isin(markets).to_numpy() & (options.collateral_asset >= 0)
        found = [iv[a] for a in np.unique(options.collateral_asset[rows]) if np.isfinite(iv[a])]
        if found:
            iv[u] = found[0]
    return iv


def sub_book(book: LendingBook, rows: np.ndarray) -> LendingBook:
    """The accounts ``rows`` of ``book`` as a book of their own (:meth:`LendingBook.take`), so that
    keeper steps cost what the liquidatable accounts cost, not the whole book."""
    return book.take(rows)


def start_state(prep: Prepared, scenario: ShockScenario):
    """Round 0: the shock applied to copies of the venues and books (``prep`` is not modified)."""
    from analyzer.engine.cascade import CascadeState
    from analyzer.engine.state_books import StateBooks

    n_assets, n_sources = len(prep.assets), len(prep.sources)
    venues = {a: v.copy() for a, v in prep.venues.items()}
    for asset_venues in venues.values():     # a routed order pays each swap's gas (analyzer/engine/routing.py)
        asset_venues.swap_gas_usd = scenario.swap_gas_usd
    mid_pre = {a: v.mid_price() for a, v in venues.items()}
    price, exogenous = prep.price_pre.copy(), prep.price_pre.copy()
    targets = {}
    for table, exogenous_too in (("price_shocks", True), ("venue_shocks", False)):
        for name, move in getattr(scenario, table).items():
            a = prep.asset(name, f"scenario {scenario.name}: {table}")
            targets[a] = prep.price_pre[a] * (1.0 + move)
            if exogenous_too:
                exogenous[a] = targets[a]
    # arbitrage takes every venue of a shocked asset to the target, each in its own quote valued at
    # the quote's shocked price: a joint WETH and wstETH move leaves the wstETH/WETH pool at the
    # ratio of the two targets, not moved twice (once itself, once through its WETH quote)
    shocked_usd = prep.price_pre.copy()
    shocked_usd[list(targets)] = list(targets.values())
    quote_usd = dict(zip(prep.assets, shocked_usd, strict=True))
    for a, target in targets.items():
        if a in venues and scenario.price_impact:
            venues[a].set_quote_prices(quote_usd)
            for venue in venues[a].venues:
                move_to_price(AssetVenues(venues[a].asset, [venue]), target)
        else:
            price[a] = target
    if scenario.price_impact:
        from analyzer.engine.impact import reprice

        reprice(venues, price, prep.price_pre, mid_pre, prep.assets)
        if scenario.cex_arbitrage:
            add_centralised_venues(venues, {a: str(prep.symbols[a]) for a in venues})
    receipts = np.flatnonzero(prep.is_receipt)
    price[receipts] = prep.receipt_ratio[receipts] * price[prep.receipt_underlying[receipts]]
    exogenous[receipts] = prep.receipt_ratio[receipts] * exogenous[prep.receipt_underlying[receipts]]
    oracle_from_venue = np.ones(n_assets, dtype=bool)
    for name, source in scenario.oracle_sources.items():
        oracle_from_venue[prep.asset(name, f"scenario {scenario.name}: oracle")] = source == "venue"
    shock = prep.source_index[attr.SOURCE_SHOCK]
    market_attr = np.zeros((n_assets, n_sources))
    exogenous_attr = np.zeros((n_assets, n_sources))
    market_attr[:, shock] = price - prep.price_pre
    exogenous_attr[:, shock] = exogenous - prep.price_pre
    iv = prep.iv_pre.copy()
    for name, points in scenario.iv_shocks.items():
        a = prep.asset(name, f"scenario {scenario.name}: iv")
        if np.isnan(iv[a]):
            raise ContagionError(f'scenario {scenario.name}: iv: asset "{name}" has no implied volatility in the snapshot')
        iv[a] += points
    iv = vol_spiral(iv, prep.price_pre, price, scenario.spot_vol_beta, np.zeros(n_assets), 0.0)
    books = [slot.book for slot in prep.slots]
    owned = [False] * len(books)
    pending = np.zeros((n_assets, n_sources))
    closed = _forced_sales(prep, scenario, books, owned, pending)
    source_price, source_attr = prep.derive_oracles(np.where(oracle_from_venue, price, exogenous),
                                                    np.where(oracle_from_venue[:, None], market_attr, exogenous_attr))
    n_options = len(prep.options.frame)
    state = CascadeState(
        round=0, price=price, exogenous=exogenous, iv=iv, writedown=np.zeros(n_assets),
        books=StateBooks(books, owned), venues=venues, venue_mid_pre=mid_pre, oracle_from_venue=oracle_from_venue,
        source_history=[source_price], source_attr_history=[source_attr], market_attr=market_attr,
        exogenous_attr=exogenous_attr, pending_flows=pending, option_alive=np.ones(n_options, dtype=bool), hedge_spot=prep.price_pre.copy(),
        hedge_iv=prep.iv_pre.copy(), hedge_alive=np.ones(n_options, dtype=bool),
        last_oracle=[prep.price_pre[slot.cols] * slot.oracle_scale for slot in prep.slots],
        watch=[slot.initially_liquidatable.copy() for slot in prep.slots],
        bad_debt=[slot.bad_debt_pre.copy() for slot in prep.slots],
        health_bound=[slot.health_pre.copy() for slot in prep.slots])
    for s, rows in closed:
        state.bad_debt[s][rows] = 0.0
        state.watch[s][rows] = False
        state.health_bound[s][rows] = np.inf
    return state


def add_centralised_venues(venues: dict, symbols: dict) -> dict[str, dict]:
    """A centralised venue (:func:`analyzer.engine.centralised.centralised_venue`) beside the pools
    of every asset that has pools and no centralised venue, placed at the pools' mid after the
    shock, in place (the scenario's ``cex_arbitrage``); ``symbols`` has the symbol of each key of
    ``venues`` (the engine's asset indices, the replay's addresses). Returns what was assumed, by
    symbol."""
    from analyzer.engine.centralised import centralised_venue

    assumed = {}
    for a, asset_venues in sorted(venues.items()):
        if any(v.centralised for v in asset_venues.venues):
            continue
        mid = asset_venues.mid_price()
        if not (mid > 0 and np.isfinite(mid)):
            continue
        symbol = symbols.get(a, asset_venues.asset)
        venue, assumed[symbol] = centralised_venue(asset_venues.asset, symbol, mid)
        asset_venues.venues.append(venue)
    return assumed


def _forced_sales(prep: Prepared, scenario: ShockScenario, books: list, owned: list,
                  pending: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """A named account's positions closed at round 0: its collateral sold, its debt bought back.
    Returns the (slot, rows) closed."""
    source = prep.source_index[attr.SOURCE_FORCED]
    closed = []
    for sale in scenario.forced_sales:
        found = False
        for s, slot in enumerate(prep.slots):
            if sale.protocol and slot.protocol != sale.protocol:
                continue
            rows = np.flatnonzero(books[s].accounts == sale.account)
            if len(rows) == 0:
                continue
            found = True
            if not owned[s]:
                books[s], owned[s] = books[s].copy(), True
            collateral, debt = books[s].collateral[rows].sum(0), books[s].debt[rows].sum(0)
            np.add.at(pending[:, source], prep.receipt_underlying[slot.cols], collateral * prep.receipt_ratio[slot.cols])
            np.add.at(pending[:, source], slot.cols, -debt)
            books[s].collateral[rows] = 0.0
            books[s].debt[rows] = 0.0
            closed.append((s, rows))
        if not found:
            where = f" in {sale.protocol}" if sale.protocol else ""
            raise ContagionError(f"scenario {scenario.name}: forced_sale: account {sale.account} has no position{where}")
    return closed
