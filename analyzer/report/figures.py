"""The report's figures as PNG (matplotlib, Agg backend), for slides and for the HTML page.

Every figure is drawn from the report data dict (analyzer.report.data), never from the raw
files, so the PNGs show the same numbers as the tables.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

DPI = 110
KIND_COLOURS = {"protocol": "#d95f02", "market": "#e6ab02", "asset": "#1b9e77", "receipt": "#7570b3",
                "account": "#999999", "folded-accounts": "#cccccc", "receipt-token": "#7570b3", "venue": "#66a61e", "option-market": "#e7298a"}
usd_axis = FuncFormatter(lambda v, _: f"${v / 1e6:,.1f}M" if abs(v) >= 1e6 else f"${v:,.0f}")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def graph_figure(elements: list[dict]) -> bytes | None:
    graph = nx.DiGraph()
    for el in elements:
        d = el["data"]
        if el["group"] == "nodes":
            graph.add_node(d["id"], **d)
        elif graph.has_edge(d["source"], d["target"]):
            graph[d["source"]][d["target"]]["usd"] += d["usd"]
        else:
            graph.add_edge(d["source"], d["target"], usd=d["usd"])
    if not graph.number_of_nodes():
        return None
    pos = nx.spring_layout(graph, seed=7, k=1.2 / np.sqrt(graph.number_of_nodes()))
    fig, ax = plt.subplots(layout="constrained", figsize=(9, 6.5))
    widths = [0.5 + np.log10(1 + graph[u][v]["usd"]) / 3 for u, v in graph.edges]
    nx.draw_networkx_edges(graph, pos, ax=ax, width=widths, alpha=0.45, arrowsize=8, edge_color="#555")
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=[graph.nodes[n]["size"] ** 2 / 2.5 for n in graph],
                           node_color=[KIND_COLOURS.get(graph.nodes[n]["kind"], "#444") for n in graph])
    nx.draw_networkx_labels(graph, pos, ax=ax, labels={n: graph.nodes[n]["label"] for n in graph}, font_size=8)
    ax.set_title("Cross-protocol collateral graph (protocol level; edge width ~ log USD)")
    ax.axis("off")
    return _png(fig)


def curves_figure(curves: dict[str, Any]) -> bytes | None:
    if not curves:
        return None
    # assets with cascaded points first: they carry the static-vs-cascaded comparison
    order = sorted(curves, key=lambda a: (not curves[a]["cascaded"], a))
    ncols = min(3, len(order))
    nrows = -(-len(order) // ncols)
    fig, axes = plt.subplots(nrows, ncols, layout="constrained", figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    for ax in axes.flat[len(order):]:
        ax.axis("off")
    for ax, asset in zip(axes.flat, order, strict=False):
        curve = curves[asset]
        protos = sorted(set(curve["static"]) | set(curve["cascaded"]))
        for i, proto in enumerate(protos):
            colour = f"C{i}"
            if proto in curve["static"]:
                ax.plot(np.multiply(curve["static_drops"], 100), curve["static"][proto], "--", color=colour,
                        label=f"{proto} static (seizable)")
            if proto in curve["first_round"]:
                ax.plot(np.multiply(curve["drops"], 100), curve["first_round"][proto], "s:", color=colour,
                        label=f"{proto} first round")
            if proto in curve["cascaded"]:
                ax.plot(np.multiply(curve["drops"], 100), curve["cascaded"][proto], "o-", color=colour,
                        label=f"{proto} cascaded")
        ax.set_title(f"Liquidated USD vs {asset} drop")
        ax.set_xlabel(f"{asset} price drop (%)")
        ax.yaxis.set_major_formatter(usd_axis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def timeline_figure(timeline: dict[str, Any]) -> bytes | None:
    if not timeline["rounds"]:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 4))
    x = np.arange(len(timeline["rounds"]))
    bottom = np.zeros(len(x))
    for i, proto in enumerate(timeline["protocols"]):
        vals = np.asarray(timeline["usd"][proto], dtype=float)
        ax.bar(x, vals, bottom=bottom, color=f"C{i}", label=proto)
        bottom += vals
    step = max(1, -(-len(x) // 15))
    ax.set_xticks(x[::step], [str(r) for r in timeline["rounds"]][::step])
    ax.set_xlabel("cascade round")
    ax.set_ylabel("liquidated USD")
    ax.yaxis.set_major_formatter(usd_axis)
    twin = ax.twinx()
    for asset, prices in timeline["prices"].items():
        p = np.array([np.nan if v is None else v for v in prices], dtype=float)
        before = timeline["price_before"].get(asset)
        if before:
            twin.plot(x, p / before * 100, ":", marker=".", label=f"{asset} price")
    twin.set_ylabel("price after the round (% of before the shock)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    ax.set_title("Cascade timeline: liquidations per round")
    return _png(fig)


def matrix_figure(matrix: dict[str, Any] | None) -> bytes | None:
    if not matrix or not matrix["sources"] or not matrix["targets"]:
        return None
    usd = np.nan_to_num(np.asarray(matrix["usd"], dtype=float))
    # sources that caused nothing and protocols that lost nothing only add blank cells to a slide
    rows, cols = np.flatnonzero(usd.any(axis=1)), np.flatnonzero(usd.any(axis=0))
    if not len(rows):
        return None
    usd = usd[np.ix_(rows, cols)]
    sources, targets = [matrix["sources"][i] for i in rows], [matrix["targets"][j] for j in cols]
    fig, ax = plt.subplots(layout="constrained", figsize=(1.4 * len(targets) + 3.5, 0.5 * len(sources) + 2))
    im = ax.imshow(usd, cmap="Reds", aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(sources)), sources)
    for (i, j), v in np.ndenumerate(usd):
        ax.text(j, i, usd_axis(v, None), ha="center", va="center", fontsize=7,
                color="white" if v > usd.max() / 2 else "black")
    ax.set_xlabel("liquidated in (target)")
    ax.set_ylabel("caused by (source)")
    fig.colorbar(im, ax=ax, format=usd_axis)
    ax.set_title("Contagion matrix: USD liquidated by cause")
    return _png(fig)


def gamma_figure(gamma: list[dict[str, Any]]) -> bytes | None:
    if not gamma:
        return None
    fig, axes = plt.subplots(1, len(gamma), layout="constrained", figsize=(6 * len(gamma), 4), squeeze=False)
    for ax, market in zip(axes[0], gamma, strict=True):
        x = np.arange(len(market["strikes"]))
        pool = np.asarray(market["pool_gamma"], dtype=float)
        ax.bar(x, pool, color=np.where(pool < 0, "#d95f02", "#1b9e77"))
        if market.get("spot_usd"):
            ax.axvline(np.interp(market["spot_usd"], market["strikes"], x), color="black", ls=":", label="spot")
            ax.legend(fontsize=7)
        ax.set_xticks(x, [f"{s:,.0f}" for s in market["strikes"]], rotation=45)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("strike (USD)")
        ax.set_ylabel("pool gamma (base per USD); < 0 = short")
        ax.set_title(f"Gamma by strike: {market['protocol']} {market.get('underlying', '')}")
    return _png(fig)


def gamma_map_figure(view: dict[str, Any] | None) -> bytes | None:
    """Per underlying: dealer gamma by strike (bars) and the whole book's gamma against spot (flip)."""
    if not view:
        return None
    rows = view["underlyings"]
    fig, axes = plt.subplots(2, len(rows), layout="constrained", figsize=(6 * len(rows), 7), squeeze=False)
    for k, row in enumerate(rows):
        gex = np.asarray(row["all_gex"], dtype=float) / 1e6
        ax = axes[0][k]
        ax.bar(row["all_strikes"], gex, width=np.diff(row["all_strikes"]).min() * 0.8 if len(gex) > 1 else 1.0,
               color=np.where(gex < 0, "#d95f02", "#1b9e77"))
        ax.axvline(row["spot_usd"], color="black", ls=":", label="spot")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlim(0.5 * row["spot_usd"], 1.6 * row["spot_usd"])
        ax.set_xlabel("strike (USD)")
        ax.set_ylabel("dealer gamma ($M per 1% move)")
        ax.set_title(f"{row['symbol']}: dealer gamma by strike")
        ax.legend(fontsize=7)
        ax = axes[1][k]
        ax.plot(row["profile_spot"], np.asarray(row["profile_gex"], dtype=float) / 1e6, color="#4c78a8")
        ax.axhline(0, color="black", lw=0.5)
        ax.axvline(row["spot_usd"], color="black", ls=":", label="spot")
        if row.get("flip_usd"):
            ax.axvline(row["flip_usd"], color="#d62728", ls="--", label=f"flip {row['flip_usd']:,.0f}")
        ax.set_xlabel("spot (USD)")
        ax.set_ylabel("total dealer gamma ($M per 1%)")
        ax.legend(fontsize=7)
    return _png(fig)


def feedback_figure(view: dict[str, Any] | None) -> bytes | None:
    """Forced flow over depth per 1% move against the fall, one line per asset; 1 = ignition."""
    if not view:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 4))
    falls = 100 * np.asarray(view["falls"], dtype=float)
    for curve in view["curves"]:
        ratio = np.array([np.nan if v is None else v for v in curve["ratio"]], dtype=float)
        ax.plot(falls, ratio, label=curve["symbol"])
    ax.axhline(1.0, color="#d62728", ls="--", lw=1, label="ignition (ratio 1)")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("fall of the asset's price (%)")
    ax.set_ylabel("forced sales / depth, per 1% move")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def accounts_figure(accounts: list[dict[str, Any]]) -> bytes | None:
    if not accounts:
        return None
    rows = accounts[:15][::-1]
    fig, ax = plt.subplots(layout="constrained", figsize=(8, 0.35 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["debt_usd"] for r in rows], height=0.4, color="#7570b3", label="debt")
    ax.barh(y + 0.2, [r["liquidated_usd"] for r in rows], height=0.4, color="#d95f02", label="liquidated")
    ax.set_yticks(y, [f"{r['protocol']} {r['account'][:10]}…" for r in rows], fontsize=7)
    ax.xaxis.set_major_formatter(usd_axis)
    ax.legend(fontsize=7)
    ax.set_title("Top accounts at risk")
    return _png(fig)


def bad_debt_figure(protocols: list[dict[str, Any]]) -> bytes | None:
    if not protocols:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 4))
    x = np.arange(len(protocols))
    for k, (key, label) in enumerate((("liquidated_usd", "liquidated"), ("bad_debt_usd", "bad debt"),
                                      ("receipt_writedown_usd", "receipt write-down"))):
        ax.bar(x + (k - 1) * 0.27, [p[key] for p in protocols], width=0.27, label=label)
    ax.set_xticks(x, [p["protocol"] for p in protocols])
    ax.yaxis.set_major_formatter(usd_axis)
    ax.legend(fontsize=7)
    ax.set_title("Liquidated value and bad debt per protocol")
    return _png(fig)


def fidelity_figure(rows: list[dict[str, Any]]) -> bytes | None:
    # sub-dollar amounts (and counts of zero) make huge relative gaps that mean nothing on a slide
    rows = [r for r in rows if r["relative_gap"] is not None and max(abs(r["engine"]), abs(r["replay"])) >= 1.0]
    if not rows:
        return None
    fig, ax = plt.subplots(layout="constrained", figsize=(7, 0.4 * len(rows) + 1.8))
    gaps = np.array([100 * r["relative_gap"] for r in rows])
    y = np.arange(len(rows))
    ax.barh(y, gaps, color=["#d95f02" if r["ok"] is False else "#1b9e77" for r in rows])
    ax.set_yticks(y, [r["metric"] for r in rows])
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("(replay − engine) / the larger, %   (orange: outside tolerance)")
    ax.set_title("Fidelity: engine against real replay on an anvil fork")
    return _png(fig)


def sweep_curves_figure(sweep: dict[str, Any] | None) -> bytes | None:
    """Per swept asset: liquidated USD against its fall, static (no price impact) and cascaded."""
    curves = (sweep or {}).get("curves") or []
    if not curves:
        return None
    ncols = min(3, len(curves))
    nrows = -(-len(curves) // ncols)
    fig, axes = plt.subplots(nrows, ncols, layout="constrained", figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(curves):]:
        ax.axis("off")
    for ax, curve in zip(axes.flat, curves, strict=False):
        drops = -100 * np.asarray(curve["shocks"], dtype=float)
        order = np.argsort(drops, kind="stable")
        cascaded = np.asarray(curve["cascaded_liquidated_usd"], dtype=float)
        ax.plot(drops[order], cascaded[order], "o-", color="#d95f02", label="cascaded")
        if curve["static_liquidated_usd"] is not None:
            static = np.asarray(curve["static_liquidated_usd"], dtype=float)
            ax.plot(drops[order], static[order], "s--", color="#7570b3", label="static (no price impact)")
        ax.set_title(f"Sweep: liquidated USD vs {curve['asset']} drop")
        ax.set_xlabel(f"{curve['asset']} price drop (%)")
        ax.yaxis.set_major_formatter(usd_axis)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def all_figures(data: dict[str, Any], elements: dict[str, Any]) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for every figure that has something to show."""
    figures = {"contagion_graph.png": graph_figure(elements["protocol"]),
               "liquidation_curves.png": curves_figure(data["curves"]),
               "cascade_timeline.png": timeline_figure(data["timeline"]),
               "contagion_matrix.png": matrix_figure(data["matrix_view"]),
               "gamma_by_strike.png": gamma_figure(data["gamma"]),
               "gamma_map.png": gamma_map_figure(data.get("gamma_map")),
               "feedback_curve.png": feedback_figure(data.get("feedback")),
               "top_accounts.png": accounts_figure(data["accounts"]),
               "bad_debt.png": bad_debt_figure(data["protocols"]),
               "fidelity.png": fidelity_figure(data["fidelity_rows"]),
               "sweep_curves.png": sweep_curves_figure(data["sweep"])}
    return {name: png for name, png in figures.items() if png is not None}
