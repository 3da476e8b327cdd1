"""The cross-protocol collateral graph: a networkx ``MultiDiGraph`` built from a :class:`Snapshot`.

Every amount is valued in USD at the snapshot's prices (``assets.price_usd``, USD per whole token).

Nodes (id → ``kind``); every node has ``kind``, ``label``, ``usd`` and the same other attributes
(``protocol``, ``address``, ``symbol``, ``collateral_usd``, ``debt_usd``, ``accounts``), so GraphML
and GEXF declare one type per attribute:

=====================================  ==================  ==========================================
``protocol:<name>``                    protocol            usd = collateral held by all its markets
``market:<protocol>:<market>``         market              a lending market contract (Aave pool,
                                                           comptroller, comet); usd = its collateral
``option-market:<protocol>:<market>``  option-market       usd = collateral posted by option writers
``asset:<address>``                    asset / receipt-    usd = collateral of this asset, all protocols
                                       token               (receipt-token: ``receipt_of`` is set)
``account:<address>``                  account             usd = its collateral, all protocols
``folded:<protocol>:<asset>``          folded-accounts     accounts under the fold threshold, see below
``venue:<address>``                    venue               usd = USD of the asset a seller must sell to
                                                           move the venue's mid price down 2 % (the
                                                           engine's venue model, analyzer/engine/impact)
=====================================  ==================  ==========================================

Edges (``kind``: source → target); every edge has ``kind``, ``usd``, ``asset``, ``symbol``, ``amount``
(token units of ``asset``, NaN where not one asset) and ``protocol``:

- ``runs``: protocol → market / option-market
- ``supplies``: account → market, one per collateral position (``usd`` = amount × price)
- ``borrows``: account → market, one per debt position
- ``backed-by``: market → asset, the market's total collateral in that asset
- ``lends``: market → asset, the market's total debt in that asset
- ``receipt-of``: receipt-token asset → its underlying asset (``usd`` = the receipt token posted as
  collateral anywhere), and issuing market → consuming market (``usd`` = the issuer's receipt
  tokens posted as collateral in the consumer). This is the composability channel: an aToken,
  cToken or LP token used as collateral elsewhere links the two protocols.
- ``allocates``: vault market → market, where a market of a protocol is itself a supplier of its
  protocol's other markets (an ERC-4626 vault over lending markets: a MetaMorpho vault over Morpho
  Blue markets), ``usd`` = its supply there. A loss in the supplied market reaches the vault's
  share price, and through its ``receipt-of`` edges every market that takes the share as collateral.
- ``writes-option``: account → option-market for short options (``usd`` = collateral posted,
  ``amount`` = contracts, ``asset`` = the underlying)
- ``buys-option``: account → option-market for long options (``usd`` = size × underlying spot)
- ``hedges-on``: option-market → the deepest venue trading the hedged asset (or → the asset when
  no venue does), ``usd`` = |hedge_position| × price
- ``trades-on``: asset → venue, for the venue's base and quote assets (``usd`` = the venue's depth)

Folding small accounts: an account whose gross size (collateral + debt of every position, plus
option collateral, all protocols, in USD) is below ``fold_below_usd`` does not get a node. Each of
its positions is added to the node ``folded:<protocol>:<asset>`` of the position's protocol and
asset (option positions: the option market's underlying), whose ``accounts`` counts the accounts folded
into it; its edges to a market are summed per (market, asset, kind). Totals per market, asset and
protocol are unchanged by folding; only the per-account detail below the threshold is merged.
With ``fold_below_usd=None`` the threshold is chosen so that at most ``max_accounts`` accounts
keep their own node (the largest by gross size).
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.model import Snapshot, receipt_claim

NODE_DEFAULTS = {"kind": "", "label": "", "usd": 0.0, "protocol": "", "address": "", "symbol": "",
                 "receipt_of": "", "collateral_usd": 0.0, "debt_usd": 0.0, "accounts": 0}
EDGE_DEFAULTS = {"kind": "", "usd": 0.0, "asset": "", "symbol": "", "amount": float("nan"), "protocol": ""}
DEFAULT_MAX_ACCOUNTS = 2000
VENUE_DEPTH_FRACTION = 0.02  # a venue's size: what moves its price 2 %


def short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}" if len(address) > 12 else address


def market_node(protocol: str, market: str, option_protocols: set[str]) -> str:
    prefix = "option-market" if protocol in option_protocols else "market"
    return f"{prefix}:{protocol}:{market}"


def market_nodes(frame: pd.DataFrame, option_protocols: set[str]) -> pd.Series:
    """:func:`market_node` of every row of a frame with ``protocol`` and ``market`` columns (vectorised)."""
    prefix = pd.Series(np.where(frame["protocol"].isin(list(option_protocols)), "option-market:", "market:"),
                       index=frame.index, dtype="string")
    return prefix + frame["protocol"] + ":" + frame["market"]


def option_protocols(snapshot: Snapshot) -> set[str]:
    """Protocols whose markets are option markets: those with options or hedger rows."""
    return set(snapshot.options["protocol"]) | set(snapshot.hedgers["protocol"])


def position_values(snapshot: Snapshot) -> pd.DataFrame:
    """The positions table with ``price_usd``, ``usd`` (amount × price) and ``symbol`` columns."""
    prices = snapshot.assets.set_index("address")
    pos = snapshot.positions.copy()
    pos["price_usd"] = pos["asset"].map(prices["price_usd"]).astype("float64")
    pos["symbol"] = pos["asset"].map(prices["symbol"]).fillna("").astype("string")
    pos["usd"] = pos["amount"] * pos["price_usd"]
    return pos


def option_values(snapshot: Snapshot) -> pd.DataFrame:
    """The options table with ``collateral_usd`` and ``notional_usd`` (size × spot of the underlying).

    The underlying of an option market is its hedger's asset, else the asset of its markets row with
    an implied volatility, else its first markets row.
    """
    opts = snapshot.options.copy()
    price = snapshot.assets.set_index("address")["price_usd"]
    iv = snapshot.assets.set_index("address")["iv"]
    underlying: dict[tuple[str, str], str] = {}
    rows = snapshot.markets.assign(has_iv=snapshot.markets["asset"].map(iv).notna())
    for row in rows.sort_values("has_iv", ascending=False).itertuples():
        underlying.setdefault((row.protocol, row.market), row.asset)
    for row in snapshot.hedgers.itertuples():
        underlying[(row.protocol, row.market)] = row.asset
    keys = list(zip(opts["protocol"], opts["market"], strict=True))
    opts["underlying"] = pd.Series([underlying.get(k, "") for k in keys], index=opts.index, dtype="string")
    opts["collateral_usd"] = (opts["collateral"] * opts["collateral_asset"].map(price).astype("float64")).fillna(0.0)
    opts["notional_usd"] = (opts["size"] * opts["underlying"].map(price).astype("float64")).fillna(0.0)
    return opts


def account_gross_usd(snapshot: Snapshot) -> pd.Series:
    """Gross USD size per account over all protocols: collateral + debt + option collateral."""
    pos = position_values(snapshot)
    opts = option_values(snapshot)
    sizes = pd.concat([pos[["account", "usd"]],
                       opts[["account", "collateral_usd"]].rename(columns={"collateral_usd": "usd"})])
    return sizes.groupby("account")["usd"].sum().sort_values(ascending=False)


def fold_threshold(gross_usd: pd.Series, fold_below_usd: float | None, max_accounts: int) -> float:
    """The USD threshold below which accounts fold (see the module docstring)."""
    if fold_below_usd is not None:
        return float(fold_below_usd)
    if len(gross_usd) <= max_accounts:
        return 0.0
    # keep the max_accounts largest (accounts tied with the last one kept keep their node too)
    return float(gross_usd.sort_values(ascending=False).iloc[max_accounts - 1])


def _node(graph: nx.MultiDiGraph, node_id: str, **attrs) -> None:
    if node_id in graph:
        graph.nodes[node_id].update({k: v for k, v in attrs.items() if k not in ("usd", "collateral_usd",
                                                                                  "debt_usd", "accounts")})
        for key in ("usd", "collateral_usd", "debt_usd", "accounts"):
            graph.nodes[node_id][key] += attrs.get(key, 0)
        return
    graph.add_node(node_id, **{**NODE_DEFAULTS, **attrs})


def _edge(graph: nx.MultiDiGraph, source: str, target: str, key: str, **attrs) -> None:
    graph.add_edge(source, target, key=key, **{**EDGE_DEFAULTS, **attrs})


def build_graph(snapshot: Snapshot, fold_below_usd: float | None = 0.0,
                max_accounts: int = DEFAULT_MAX_ACCOUNTS) -> nx.MultiDiGraph:
    """The collateral graph of ``snapshot`` (node and edge kinds in the module docstring).

    ``fold_below_usd``: accounts smaller than this (gross USD) fold into one node per (protocol,
    asset); 0 keeps every account; None picks the threshold that keeps ``max_accounts`` accounts.
    """
    graph = nx.MultiDiGraph(chain_id=int(snapshot.meta.get("chain_id", 0)),
                            block_number=int(snapshot.meta.get("block_number", 0)))
    opt_protocols = option_protocols(snapshot)
    assets = snapshot.assets.set_index("address")
    pos = position_values(snapshot)
    opts = option_values(snapshot)
    gross = account_gross_usd(snapshot)
    threshold = fold_threshold(gross, fold_below_usd, max_accounts)
    small = gross < threshold  # (threshold 0 folds nothing: sizes are never negative)
    graph.graph["fold_below_usd"] = threshold
    graph.graph["folded_accounts"] = int(small.sum())

    for address, row in assets.iterrows():
        kind = "receipt-token" if row["receipt_of"] else "asset"
        _node(graph, f"asset:{address}", kind=kind, label=str(row["symbol"]), address=str(address),
              symbol=str(row["symbol"]), receipt_of=str(row["receipt_of"]))

    markets = pd.concat([snapshot.markets[["protocol", "market"]], pos[["protocol", "market"]],
                         opts[["protocol", "market"]], snapshot.hedgers[["protocol", "market"]]]).drop_duplicates()
    names = market_names(snapshot)
    for protocol, market in markets.itertuples(index=False):
        _node(graph, f"protocol:{protocol}", kind="protocol", label=str(protocol), protocol=str(protocol))
        node = market_node(protocol, market, opt_protocols)
        kind = "option-market" if protocol in opt_protocols else "market"
        _node(graph, node, kind=kind, label=f"{protocol} {names.get((protocol, market)) or short(market)}",
              protocol=str(protocol), address=str(market))
        _edge(graph, f"protocol:{protocol}", node, "runs", kind="runs", protocol=str(protocol))

    _add_positions(graph, pos, small, opt_protocols)
    _add_receipt_edges(graph, snapshot, pos, opt_protocols)
    _add_allocations(graph, snapshot, pos, opt_protocols)
    _add_options(graph, opts, small, opt_protocols)
    _add_venues(graph, snapshot, opt_protocols)
    return graph


def market_names(snapshot: Snapshot) -> dict[tuple[str, str], str]:
    """A market's human name where its reader gives one (``"name"`` in the markets rows' params,
    e.g. Morpho's "wstETH/USDC 0.86": its markets are hashes, not contracts)."""
    rows = snapshot.markets[snapshot.markets["params"].str.contains('"name"', regex=False, na=False)]
    out = {}
    for protocol, market, text in zip(rows["protocol"], rows["market"], rows["params"], strict=True):
        try:
            name = json.loads(text).get("name")
        except (ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            out[(str(protocol), str(market))] = name
    return out


def _is_small(accounts: pd.Series, small: pd.Series) -> np.ndarray:
    return accounts.map(small).fillna(False).to_numpy(dtype=bool)


def _add_positions(graph: nx.MultiDiGraph, pos: pd.DataFrame, small: pd.Series, opt_protocols: set[str]) -> None:
    pos = pos.assign(market_node=market_nodes(pos, opt_protocols))
    is_folded = _is_small(pos["account"], small)
    pos["holder"] = np.where(is_folded, "folded:" + pos["protocol"] + ":" + pos["asset"], "account:" + pos["account"])
    pos["edge_kind"] = np.where(pos["side"] == "collateral", "supplies", "borrows")
    pos["collateral_usd"] = np.where(pos["side"] == "collateral", pos["usd"], 0.0)
    pos["debt_usd"] = np.where(pos["side"] == "debt", pos["usd"], 0.0)

    holders = pos.groupby(["holder"], sort=False).agg(
        collateral_usd=("collateral_usd", "sum"), debt_usd=("debt_usd", "sum"), accounts=("account", "nunique"),
        protocol=("protocol", "first"), account=("account", "first"), asset=("asset", "first"),
        symbol=("symbol", "first")).reset_index()
    for row in holders.itertuples(index=False):
        if row.holder.startswith("folded:"):
            _node(graph, row.holder, kind="folded-accounts", label=f"{row.accounts} small accounts {row.symbol}",
                  protocol=str(row.protocol), address=str(row.asset), symbol=str(row.symbol),
                  usd=row.collateral_usd, collateral_usd=row.collateral_usd, debt_usd=row.debt_usd,
                  accounts=int(row.accounts))
        else:
            _node(graph, row.holder, kind="account", label=short(row.account), address=str(row.account),
                  usd=row.collateral_usd, collateral_usd=row.collateral_usd, debt_usd=row.debt_usd, accounts=1)

    edges = pos.groupby(["holder", "market_node", "asset", "edge_kind"], sort=False).agg(
        usd=("usd", "sum"), amount=("amount", "sum"), symbol=("symbol", "first"),
        protocol=("protocol", "first")).reset_index()
    for row in edges.itertuples(index=False):
        _edge(graph, row.holder, row.market_node, f"{row.edge_kind}:{row.asset}", kind=row.edge_kind,
              usd=float(row.usd), asset=str(row.asset), symbol=str(row.symbol), amount=float(row.amount),
              protocol=str(row.protocol))

    totals = pos.groupby(["market_node", "asset", "side"], sort=False).agg(
        usd=("usd", "sum"), amount=("amount", "sum"), symbol=("symbol", "first"),
        protocol=("protocol", "first")).reset_index()
    for row in totals.itertuples(index=False):
        kind = "backed-by" if row.side == "collateral" else "lends"
        _edge(graph, row.market_node, f"asset:{row.asset}", kind, kind=kind, usd=float(row.usd),
              asset=str(row.asset), symbol=str(row.symbol), amount=float(row.amount), protocol=str(row.protocol))
        usd_key = "collateral_usd" if row.side == "collateral" else "debt_usd"
        for node in (row.market_node, f"protocol:{row.protocol}", f"asset:{row.asset}"):
            graph.nodes[node][usd_key] += float(row.usd)
            if row.side == "collateral":
                graph.nodes[node]["usd"] += float(row.usd)


def receipt_issuer_node(graph: nx.MultiDiGraph, snapshot: Snapshot, receipt_of: str, opt_protocols: set[str],
                        receipt: str | None = None) -> str:
    """The node of the market that issues a receipt token (``receipt_of``, :func:`receipt_claim`): the
    market it names, else the issuing protocol's market at the token's own address (a vault), else
    its market listing the underlying, else its only market, else the protocol node."""
    claim = receipt_claim(receipt_of)
    assert claim is not None
    protocol, underlying = claim.protocol, claim.underlying
    if claim.market:
        return market_node(protocol, claim.market, opt_protocols)
    own = snapshot.markets[snapshot.markets["protocol"] == protocol]
    if receipt is not None and (own["market"] == receipt).any():   # a vault is its own share token
        return market_node(protocol, receipt, opt_protocols)
    rows = own[own["asset"] == underlying]
    if len(rows):
        return market_node(protocol, str(rows["market"].iloc[0]), opt_protocols)
    if own["market"].nunique() == 1:  # e.g. a Lyra LP token: its market lists the base asset, not the quote
        return market_node(protocol, str(own["market"].iloc[0]), opt_protocols)
    _node(graph, f"protocol:{protocol}", kind="protocol", label=protocol, protocol=protocol)
    return f"protocol:{protocol}"


def _add_receipt_edges(graph: nx.MultiDiGraph, snapshot: Snapshot, pos: pd.DataFrame, opt_protocols: set[str]) -> None:
    receipts = snapshot.assets[snapshot.assets["receipt_of"] != ""]
    collateral = pos[pos["side"] == "collateral"]
    for receipt in receipts.itertuples(index=False):
        claim = receipt_claim(receipt.receipt_of)
        assert claim is not None
        issuer_protocol, underlying = claim.protocol, claim.underlying
        used = collateral[collateral["asset"] == receipt.address]
        underlying_node = f"asset:{underlying}"
        if underlying_node not in graph:
            _node(graph, underlying_node, kind="asset", label=short(underlying), address=underlying)
        _edge(graph, f"asset:{receipt.address}", underlying_node, "receipt-of", kind="receipt-of",
              usd=float(used["usd"].sum()), asset=str(receipt.address), symbol=str(receipt.symbol),
              amount=float(used["amount"].sum()), protocol=issuer_protocol)
        issuer = receipt_issuer_node(graph, snapshot, receipt.receipt_of, opt_protocols, str(receipt.address))
        for (protocol, market), rows in used.groupby(["protocol", "market"], sort=False):
            consumer = market_node(protocol, market, opt_protocols)
            _edge(graph, issuer, consumer, f"receipt-of:{receipt.address}", kind="receipt-of",
                  usd=float(rows["usd"].sum()), asset=str(receipt.address), symbol=str(receipt.symbol),
                  amount=float(rows["amount"].sum()), protocol=issuer_protocol)


def _add_allocations(graph: nx.MultiDiGraph, snapshot: Snapshot, pos: pd.DataFrame, opt_protocols: set[str]) -> None:
    """``allocates`` edges: a market that supplies its own protocol's other markets (a vault)."""
    own_markets = set(zip(snapshot.markets["protocol"], snapshot.markets["market"], strict=True))
    supplies = pos[(pos["side"] == "collateral") & (pos["account"] != pos["market"])]
    vaults = supplies[[(p, a) in own_markets for p, a in zip(supplies["protocol"], supplies["account"], strict=True)]]
    for (protocol, vault, market, asset), rows in vaults.groupby(["protocol", "account", "market", "asset"], sort=False):
        _edge(graph, market_node(protocol, vault, opt_protocols), market_node(protocol, market, opt_protocols),
              f"allocates:{asset}", kind="allocates", usd=float(rows["usd"].sum()), asset=str(asset),
              symbol=str(rows["symbol"].iloc[0]), amount=float(rows["amount"].sum()), protocol=str(protocol))


def _add_options(graph: nx.MultiDiGraph, opts: pd.DataFrame, small: pd.Series, opt_protocols: set[str]) -> None:
    if opts.empty:
        return
    opts = opts.assign(
        market_node=market_nodes(opts, opt_protocols),
        holder=np.where(_is_small(opts["account"], small), "folded:" + opts["protocol"] + ":" + opts["underlying"],
                        "account:" + opts["account"]),
        edge_kind=np.where(opts["side"] == "short", "writes-option", "buys-option"))
    opts["usd"] = np.where(opts["side"] == "short", opts["collateral_usd"], opts["notional_usd"])
    for holder, rows in opts.groupby("holder", sort=False):
        if holder not in graph:
            is_folded = holder.startswith("folded:")
            _node(graph, holder, kind="folded-accounts" if is_folded else "account",
                  label=f"{rows['account'].nunique()} small option accounts" if is_folded else short(rows["account"].iloc[0]),
                  address=str(rows["underlying"].iloc[0] if is_folded else rows["account"].iloc[0]),
                  protocol=str(rows["protocol"].iloc[0]) if is_folded else "",
                  accounts=int(rows["account"].nunique()) if is_folded else 1)
        collateral_usd = float(rows["collateral_usd"].sum())
        graph.nodes[holder]["collateral_usd"] += collateral_usd
        graph.nodes[holder]["usd"] += collateral_usd
    edges = opts.groupby(["holder", "market_node", "edge_kind", "underlying"], sort=False).agg(
        usd=("usd", "sum"), size=("size", "sum"), protocol=("protocol", "first"),
        collateral_usd=("collateral_usd", "sum")).reset_index()
    for row in edges.itertuples(index=False):
        _edge(graph, row.holder, row.market_node, f"{row.edge_kind}:{row.underlying}", kind=row.edge_kind,
              usd=float(row.usd), asset=str(row.underlying), amount=float(row.size), protocol=str(row.protocol))
        graph.nodes[row.market_node]["collateral_usd"] += float(row.collateral_usd)
        graph.nodes[row.market_node]["usd"] += float(row.collateral_usd)
        for key in ("usd", "collateral_usd"):
            graph.nodes[f"protocol:{row.protocol}"][key] += float(row.collateral_usd)


def venue_depth_usd(row, prices: dict[str, float]) -> float:
    """USD (at the snapshot price) of the asset that moves the venue's mid price down
    ``VENUE_DEPTH_FRACTION``, from the engine's model of the venue (``VenueModel.depth``); 0 when
    the venue's params do not make a model (a broken venue is the engine's error to report)."""
    from analyzer.engine.impact import make_venue

    price = prices.get(row.asset, np.nan)
    try:
        params = json.loads(row.params) if row.params else {}
        venue = make_venue(row.model, row.asset, row.quote_asset, params, asset_price_usd=price,
                           quote_price_usd=prices.get(row.quote_asset, 1.0), venue=row.venue)
        depth_usd = float(venue.depth(VENUE_DEPTH_FRACTION)) * price
    except (ContagionError, json.JSONDecodeError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return 0.0
    return depth_usd if np.isfinite(depth_usd) else 0.0


def _add_venues(graph: nx.MultiDiGraph, snapshot: Snapshot, opt_protocols: set[str]) -> None:
    price = snapshot.assets.set_index("address")["price_usd"]
    prices, symbols = snapshot.price_of(), snapshot.symbol_of()
    venues_of: dict[str, list[str]] = {}
    for row in snapshot.venues.itertuples(index=False):
        node = f"venue:{row.venue}"
        if node not in graph:
            pair = f"{symbols.get(row.asset, short(row.asset))}/{symbols.get(row.quote_asset, short(row.quote_asset))}"
            _node(graph, node, kind="venue", label=f"{row.protocol} {pair}", protocol=str(row.protocol),
                  address=str(row.venue), usd=venue_depth_usd(row, prices))
        for asset in (row.asset, row.quote_asset):
            if asset and f"asset:{asset}" in graph and not graph.has_edge(f"asset:{asset}", node, "trades-on"):
                _edge(graph, f"asset:{asset}", node, "trades-on", kind="trades-on", asset=str(asset),
                      symbol=str(graph.nodes[f"asset:{asset}"]["symbol"]), protocol=str(row.protocol),
                      usd=graph.nodes[node]["usd"])
                venues_of.setdefault(asset, []).append(node)
    for row in snapshot.hedgers.itertuples(index=False):
        source = market_node(row.protocol, row.market, opt_protocols)
        usd = abs(float(row.hedge_position)) * float(price.get(row.asset, np.nan))
        venues = venues_of.get(row.asset, [])
        target = max(venues, key=lambda v: graph.nodes[v]["usd"]) if venues else f"asset:{row.asset}"
        _edge(graph, source, target, f"hedges-on:{row.asset}", kind="hedges-on", usd=usd if np.isfinite(usd) else 0.0,
              asset=str(row.asset), amount=float(row.hedge_position), protocol=str(row.protocol))
