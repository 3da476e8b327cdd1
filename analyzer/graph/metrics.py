"""Exposure metrics of a snapshot and its collateral graph (all USD at the snapshot's prices).

- :func:`collateral_composition`: per protocol, collateral by asset, Herfindahl–Hirschman index
  over assets and over accounts, top-10 account share.
- :func:`shared_collateral_overlap`: between every pair of protocols, the USD of the same asset
  backing debt in both, and the share of each one's debt backed by assets that also back the other.
- :func:`receipt_chains`: receipt-token dependency chains (an aToken posted in Compound, a cToken
  of an aToken, a Lyra LP token used as collateral) down to their root asset.
- :func:`multi_protocol_accounts`: accounts active in several protocols and their combined health.
- static liquidation curves live in :mod:`analyzer.graph.curves` (they need each protocol's rules).

"Root asset": a receipt token stands for its underlying (``assets.receipt_of`` =
"<protocol>:<underlying>"), followed until an asset that is no receipt token. Overlap is measured
on root assets, because aWETH posted in another protocol moves with WETH.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd

from analyzer.errors import ContagionError
from analyzer.graph.build import option_values, position_values
from analyzer.model import Snapshot, receipt_claim

TOP_N_ACCOUNTS = 10


def root_assets(snapshot: Snapshot) -> dict[str, str]:
    """Every asset address → its root asset (itself unless it is a receipt token)."""
    underlying = {a: claim.underlying for a, r in zip(snapshot.assets["address"], snapshot.assets["receipt_of"],
                                                      strict=True) if (claim := receipt_claim(r)) is not None}
    roots = {}
    for asset in snapshot.assets["address"]:
        seen, current = [asset], asset
        while current in underlying:
            current = underlying[current]
            if current in seen:
                raise ContagionError(f"assets: receipt_of forms a cycle through {' -> '.join(seen + [current])}")
            seen.append(current)
        roots[asset] = current
    return roots


def hhi(values: np.ndarray) -> float:
    """Herfindahl–Hirschman index of the shares of ``values``: Σ sᵢ², in [1/n, 1] (×10,000 for the
    US DoJ points scale); NaN when the total is 0. Hirschman (1945), Herfindahl (1950)."""
    total = float(np.sum(values))
    if total <= 0:
        return math.nan
    shares = np.asarray(values, dtype="float64") / total
    return float(np.sum(shares * shares))


def top_share(values: np.ndarray, n: int = TOP_N_ACCOUNTS) -> float:
    """Share of the total held by the ``n`` largest values (NaN when the total is 0)."""
    total = float(np.sum(values))
    if total <= 0:
        return math.nan
    return float(np.sum(np.sort(np.asarray(values, dtype="float64"))[::-1][:n]) / total)


def collateral_composition(snapshot: Snapshot) -> dict[str, dict]:
    """Per protocol: ``collateral_usd``, ``debt_usd``, ``by_asset`` (usd, share; largest first),
    ``asset_hhi`` (HHI of collateral over assets), ``account_hhi`` and ``top10_account_share``
    (concentration of collateral over accounts)."""
    pos = position_values(snapshot)
    out = {}
    for protocol, rows in pos.groupby("protocol", sort=True):
        coll = rows[rows["side"] == "collateral"]
        total = float(coll["usd"].sum())
        by_asset = coll.groupby("asset").agg(usd=("usd", "sum"), symbol=("symbol", "first")).sort_values(
            "usd", ascending=False)
        by_account = coll.groupby("account")["usd"].sum().to_numpy()
        out[str(protocol)] = {
            "collateral_usd": total,
            "debt_usd": float(rows.loc[rows["side"] == "debt", "usd"].sum()),
            "by_asset": [{"asset": str(a), "symbol": str(r.symbol), "usd": float(r.usd),
                          "share": float(r.usd / total) if total > 0 else math.nan}
                         for a, r in by_asset.iterrows()],
            "asset_hhi": hhi(by_asset["usd"].to_numpy()),
            "account_hhi": hhi(by_account),
            "top10_account_share": top_share(by_account),
            "accounts": int(rows["account"].nunique()),
        }
    return out


def backing_tables(snapshot: Snapshot) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """``(C, D, debt)``: C[protocol, root asset] = USD of collateral held by accounts that owe debt in
    the same (protocol, market); D[protocol, root asset] = that debt attributed to the collateral
    pro rata to each account's collateral value; ``debt`` = total debt USD per protocol."""
    pos = position_values(snapshot)
    roots = root_assets(snapshot)
    pos["root"] = pos["asset"].map(roots)
    keys = ["protocol", "market", "account"]
    account_debt = pos[pos["side"] == "debt"].groupby(keys)["usd"].sum().rename("account_debt_usd")
    coll = pos[pos["side"] == "collateral"].join(account_debt, on=keys)
    coll = coll[coll["account_debt_usd"] > 0]
    account_coll = coll.groupby(keys)["usd"].transform("sum")
    coll = coll.assign(attributed_debt_usd=np.where(account_coll > 0, coll["account_debt_usd"] * coll["usd"]
                                                    / account_coll.where(account_coll > 0, 1.0), 0.0))
    protocols = sorted(set(pos["protocol"]))
    c = coll.pivot_table(index="protocol", columns="root", values="usd", aggfunc="sum", fill_value=0.0)
    d = coll.pivot_table(index="protocol", columns="root", values="attributed_debt_usd", aggfunc="sum",
                         fill_value=0.0)
    columns = sorted(set(c.columns) | set(d.columns))
    c = c.reindex(index=protocols, columns=columns, fill_value=0.0).astype("float64")
    d = d.reindex(index=protocols, columns=columns, fill_value=0.0).astype("float64")
    debt = pos[pos["side"] == "debt"].groupby("protocol")["usd"].sum().reindex(protocols, fill_value=0.0)
    return c, d, debt


def shared_collateral_overlap(snapshot: Snapshot) -> dict:
    """Shared collateral between every pair of protocols (rows and columns in ``protocols`` order).

    ``shared_usd[i][j]`` (i ≠ j) = Σ over root assets a of min(C_i[a], C_j[a]): the USD of the same
    asset backing debt in both (C as in :func:`backing_tables`); the diagonal holds Σ_a C_i[a].
    ``debt_share[i][j]`` = Σ over assets a with C_j[a] > 0 of D_i[a] / debt_i: the share of protocol
    i's debt backed by assets that also back debt in j (the diagonal: share backed by any collateral;
    debt of accounts without collateral is backed by nothing). ``by_asset`` lists, per pair, the
    assets backing debt in both with the USD in each.
    """
    c, d, debt = backing_tables(snapshot)
    cm, dm = c.to_numpy(), d.to_numpy()
    shared = np.minimum(cm[:, None, :], cm[None, :, :]).sum(axis=2)
    np.fill_diagonal(shared, cm.sum(axis=1))
    backs = (cm > 0).astype("float64")
    backed = dm @ backs.T
    np.fill_diagonal(backed, dm.sum(axis=1))
    debt_usd = debt.to_numpy()
    share = np.divide(backed, debt_usd[:, None], out=np.full_like(backed, np.nan), where=debt_usd[:, None] > 0)
    symbols = snapshot.symbol_of()
    protocols = list(c.index)
    pairs = []
    for i, a in enumerate(protocols):
        for j in range(i + 1, len(protocols)):
            both = (cm[i] > 0) & (cm[j] > 0)
            pairs.append({"a": a, "b": protocols[j], "shared_usd": float(shared[i, j]),
                          "assets": [{"asset": str(asset), "symbol": symbols.get(asset, ""), "usd_a": float(cm[i, k]),
                                      "usd_b": float(cm[j, k])} for k, asset in enumerate(c.columns) if both[k]]})
    return {"protocols": protocols, "shared_usd": shared.tolist(), "debt_share": share.tolist(),
            "debt_usd": debt_usd.tolist(), "backing_collateral_usd": cm.sum(axis=1).tolist(), "pairs": pairs}


def receipt_chains(snapshot: Snapshot, graph: nx.MultiDiGraph) -> dict:
    """Receipt-token dependency chains and the protocol-to-protocol edges they create.

    ``chains``: per receipt token, ``path`` (symbols from the token down to its root asset),
    ``issuers`` (the protocol issuing each link), ``depth``, ``collateral_usd_by_protocol`` (where
    it is posted as collateral). ``dependencies``: the graph's ``receipt-of`` edges between markets:
    issuer protocol → consumer protocol with the USD of receipt tokens posted.
    """
    receipt_of = dict(zip(snapshot.assets["address"], snapshot.assets["receipt_of"], strict=True))
    symbols = snapshot.symbol_of()
    pos = position_values(snapshot)
    coll = pos[pos["side"] == "collateral"]
    posted = coll.groupby(["asset", "protocol"])["usd"].sum()
    chains = []
    for token in sorted(a for a, r in receipt_of.items() if r):
        path, issuers, current = [token], [], token
        while receipt_of.get(current):
            claim = receipt_claim(receipt_of[current])
            assert claim is not None
            current = claim.underlying
            issuers.append(claim.protocol)
            if current in path:
                raise ContagionError(f"assets: receipt_of forms a cycle through {current}")
            path.append(current)
        used = posted[token] if token in posted.index.get_level_values(0) else pd.Series(dtype="float64")
        chains.append({"receipt_token": token, "symbol": symbols.get(token, ""),
                       "path": [symbols.get(a, a) for a in path], "addresses": path, "issuers": issuers,
                       "root_asset": path[-1], "depth": len(issuers),
                       "collateral_usd_by_protocol": {str(p): float(v) for p, v in used.items()}})
    dependencies = []
    for source, target, data in graph.edges(data=True):
        if data["kind"] == "receipt-of" and not source.startswith("asset:"):
            dependencies.append({"issuer": graph.nodes[source]["protocol"], "issuer_node": source,
                                 "consumer": graph.nodes[target]["protocol"], "consumer_node": target,
                                 "receipt_token": data["asset"], "symbol": data["symbol"], "usd": data["usd"]})
    return {"chains": chains, "dependencies": dependencies}


def loss_reach(graph: nx.MultiDiGraph) -> list[dict]:
    """Where a market's loss travels beyond its own suppliers: per market that vaults supply
    (``allocates`` edges into it), each vault with the USD it has there, the markets that take the
    vault's share as collateral (its ``receipt-of`` edges) and the holders posting it (``supplies``
    edges of the share token). Markets with the most vault money first.

    A loss of L in a market whose suppliers hold S takes L × (vault's supply / S) from each vault,
    which lowers its share price at once (MetaMorpho v1.0 realises it); a position posting that
    share elsewhere loses the same fraction of that collateral.
    """
    holders: dict[str, set[str]] = {}
    for source, _, data in graph.edges(data=True):
        if data["kind"] == "supplies":
            holders.setdefault(data["asset"], set()).add(source)
    out = []
    for market in sorted(n for n, d in graph.nodes(data=True) if d["kind"] == "market"):
        vaults = []
        for vault, _, data in graph.in_edges(market, data=True):
            if data["kind"] != "allocates":
                continue
            address = graph.nodes[vault]["address"]
            share = graph.nodes.get(f"asset:{address}", {})
            consumers = [{"market": target, "protocol": graph.nodes[target]["protocol"], "usd": d["usd"]}
                         for _, target, d in graph.out_edges(vault, data=True) if d["kind"] == "receipt-of"]
            vaults.append({"vault": vault, "address": address, "symbol": share.get("symbol", ""), "usd": data["usd"],
                           "label": graph.nodes[vault]["label"],
                           "consumers": consumers, "holders": sorted(holders.get(address, set()))})
        if vaults:
            vaults.sort(key=lambda v: -v["usd"])
            out.append({"market": market, "label": graph.nodes[market]["label"],
                        "protocol": graph.nodes[market]["protocol"], "vaults": vaults,
                        "vault_usd": float(sum(v["usd"] for v in vaults))})
    return sorted(out, key=lambda m: -m["vault_usd"])


def multi_protocol_accounts(snapshot: Snapshot, rule_health: dict[tuple[str, str], float] | None = None,
                            top: int = 100) -> dict:
    """Accounts with positions in two or more protocols, largest combined debt first (``top`` of them).

    Per protocol: ``collateral_usd``, ``debt_usd`` and ``health`` = Σ collateral × liquidation
    threshold / Σ debt (the snapshot's markets thresholds at snapshot prices; null without debt), and
    ``rule_health`` = the protocol's own rule's health factor when its plugin has rules (lowest over
    its markets). ``combined_health`` is the same ratio over all lending protocols together: what
    the account would have if one protocol held everything (null without debt). Option positions
    count as activity with their collateral; they have no health ratio here.
    """
    pos = position_values(snapshot)
    key = ["protocol", "market", "asset", "reserve"]
    thresholds = snapshot.markets.set_index(key)["liquidation_threshold"]
    lt = pd.Series(thresholds.reindex(pd.MultiIndex.from_frame(pos[key])).to_numpy(),
                   index=pos.index).fillna(0.0)
    is_coll = pos["side"] == "collateral"
    pos = pos.assign(collateral_usd=np.where(is_coll, pos["usd"], 0.0), debt_usd=np.where(is_coll, 0.0, pos["usd"]),
                     weighted_usd=np.where(is_coll, pos["usd"] * lt, 0.0))
    opts = option_values(snapshot)
    opt_rows = opts.assign(debt_usd=0.0, weighted_usd=0.0)[["account", "protocol", "collateral_usd", "debt_usd",
                                                             "weighted_usd"]]
    rows = pd.concat([pos[["account", "protocol", "collateral_usd", "debt_usd", "weighted_usd"]], opt_rows])
    per = rows.groupby(["account", "protocol"]).sum()
    counts = per.groupby(level="account").size()
    multi = counts[counts >= 2].index
    per = per[per.index.get_level_values("account").isin(multi)]
    total = per.groupby(level="account").sum().sort_values("debt_usd", ascending=False)
    lending = set(pos["protocol"])
    total = total.head(top)
    by_account: dict[str, dict] = {str(a): {} for a in total.index}
    detail = per[per.index.get_level_values("account").isin(total.index)].reset_index()
    for r in detail.itertuples(index=False):
        health = r.weighted_usd / r.debt_usd if r.debt_usd > 0 and r.protocol in lending else None
        by_account[str(r.account)][str(r.protocol)] = {
            "collateral_usd": float(r.collateral_usd), "debt_usd": float(r.debt_usd), "health": health,
            "rule_health": _finite((rule_health or {}).get((r.protocol, r.account)))}
    out = [{"account": str(account), "protocols": by_account[str(account)], "collateral_usd": float(tot.collateral_usd),
            "debt_usd": float(tot.debt_usd),
            "combined_health": float(tot.weighted_usd / tot.debt_usd) if tot.debt_usd > 0 else None}
           for account, tot in total.iterrows()]
    return {"count": int(len(multi)), "accounts": out}


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def graph_summary(graph: nx.MultiDiGraph) -> dict:
    """Node and edge counts by kind, and the fold threshold used."""
    nodes = pd.Series([d["kind"] for _, d in graph.nodes(data=True)], dtype="object").value_counts()
    edges = pd.Series([d["kind"] for _, _, d in graph.edges(data=True)], dtype="object").value_counts()
    return {"nodes": int(graph.number_of_nodes()), "edges": int(graph.number_of_edges()),
            "nodes_by_kind": {str(k): int(v) for k, v in nodes.items()},
            "edges_by_kind": {str(k): int(v) for k, v in edges.items()},
            "fold_below_usd": float(graph.graph.get("fold_below_usd", 0.0)),
            "folded_accounts": int(graph.graph.get("folded_accounts", 0))}
