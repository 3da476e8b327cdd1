"""The collateral graph, its exposure metrics and exports, on a small snapshot built by hand.

Protocol names are neutral ("lender-a" issues aWETH, "lender-b" issues caWETH on top of it, "lender-c"
takes caWETH, "options-x" issues an LP token) so that no registered plugin's rule reads these
hand-made rows; tests/test_graph_curves.py runs the real rules.

Expected figures are computed here from the rows with plain Python (or written out by hand),
never by calling the code under test.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import networkx as nx
import pandas as pd
import pytest

from analyzer.errors import ContagionError
from analyzer.graph import build_graph, exposure_metrics, graph_to_dir, write_graph_outputs
from analyzer.graph.metrics import (
    collateral_composition,
    multi_protocol_accounts,
    receipt_chains,
    shared_collateral_overlap,
)
from analyzer.model import Snapshot


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


WETH, WBTC, USDC, DAI, AWETH, CAWETH, LP = (addr(i) for i in range(1, 8))
POOL, COMPTROLLER, COMET, LYRA, UNIPOOL = (addr(0x100 + i) for i in range(5))
A, B, C, D, E, G, H = (addr(0x1000 + i) for i in range(7))
SYMBOLS = {WETH: "WETH", WBTC: "WBTC", USDC: "USDC", DAI: "DAI", AWETH: "aWETH", CAWETH: "caWETH", LP: "lyraLP"}
PRICES = {WETH: 3000.0, WBTC: 60000.0, USDC: 1.0, DAI: 1.0, AWETH: 3000.0, CAWETH: 30.0, LP: 1.1}
RECEIPT_OF = {AWETH: f"lender-a:{WETH}", CAWETH: f"lender-b:{AWETH}", LP: f"options-x:{USDC}"}
MARKET_OF = {"lender-a": POOL, "lender-b": COMPTROLLER, "lender-c": COMET}
# (protocol, account, asset, side, amount)
POSITIONS = [
    ("lender-a", A, WETH, "collateral", 10.0), ("lender-a", A, USDC, "debt", 20000.0),
    ("lender-a", B, WBTC, "collateral", 1.0), ("lender-a", B, WETH, "collateral", 5.0),
    ("lender-a", B, USDC, "debt", 50000.0),
    ("lender-a", C, WETH, "collateral", 2.0),                                     # a supplier, no debt
    ("lender-a", E, LP, "collateral", 1000.0), ("lender-a", E, DAI, "debt", 500.0),
    ("lender-b", A, AWETH, "collateral", 4.0), ("lender-b", A, DAI, "debt", 6000.0),
    ("lender-b", D, WBTC, "collateral", 0.5), ("lender-b", D, USDC, "debt", 10000.0),
    ("lender-b", D, DAI, "debt", 5000.0),
    ("lender-c", G, CAWETH, "collateral", 100.0), ("lender-c", G, USDC, "debt", 1500.0),
    ("lender-c", H, USDC, "debt", 10.0),                                             # debt with no collateral
]
THRESHOLDS = {("lender-a", WETH): 0.83, ("lender-a", WBTC): 0.78, ("lender-a", LP): 0.5, ("lender-b", AWETH): 0.75,
              ("lender-b", WBTC): 0.7, ("lender-c", CAWETH): 0.6}


def hand_snapshot() -> Snapshot:
    assets = [{"address": a, "symbol": s, "decimals": 18, "price_usd": PRICES[a], "receipt_of": RECEIPT_OF.get(a, "")}
              for a, s in SYMBOLS.items()]
    markets = [{"protocol": p, "market": MARKET_OF[p], "asset": a, "oracle_price_usd": PRICES[a],
                "liquidation_threshold": lt, "ltv": lt - 0.05, "liquidation_bonus": 0.05, "close_factor": 0.5,
                "collateral_enabled": True, "borrowable": True} for (p, a), lt in THRESHOLDS.items()]
    markets += [{"protocol": p, "market": MARKET_OF[p], "asset": a, "oracle_price_usd": PRICES[a], "borrowable": True}
                for p, a in (("lender-a", USDC), ("lender-a", DAI), ("lender-b", DAI), ("lender-b", USDC),
                             ("lender-c", USDC))]
    markets.append({"protocol": "options-x", "market": LYRA, "asset": USDC, "oracle_price_usd": 1.0})
    positions = [{"protocol": p, "market": MARKET_OF[p], "account": acct, "asset": a, "side": side, "amount": amount,
                  "raw": str(int(amount * 10**6))} for p, acct, a, side, amount in POSITIONS]
    options = [{"protocol": "options-x", "market": LYRA, "account": A, "position_id": 1, "kind": "call", "strike": 3500.0,
                "expiry": 1_900_000_000, "size": 2.0, "side": "short", "collateral_asset": WETH, "collateral": 2.0},
               {"protocol": "options-x", "market": LYRA, "account": H, "position_id": 2, "kind": "put", "strike": 2500.0,
                "expiry": 1_900_000_000, "size": 1.0, "side": "long", "collateral_asset": "", "collateral": 0.0}]
    hedgers = [{"protocol": "options-x", "market": LYRA, "asset": WETH, "net_delta": 1.5, "hedge_position": -1.5}]
    venues = [{"protocol": "amm", "venue": UNIPOOL, "asset": WETH, "quote_asset": USDC, "model": "constant_product",
               "params": json.dumps({"reserve_asset": 1000.0, "reserve_quote": 3_000_000.0, "fee": 0.003})}]
    return Snapshot(meta={"chain_id": 31337, "block_number": 12}, assets=assets, markets=markets,
                    positions=positions, options=options, hedgers=hedgers, venues=venues).validate()


def usd(asset: str, amount: float) -> float:
    return PRICES[asset] * amount


def root(asset: str) -> str:
    while asset in RECEIPT_OF:
        asset = RECEIPT_OF[asset].split(":")[1]
    return asset


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return hand_snapshot()


@pytest.fixture(scope="module")
def graph(snapshot) -> nx.MultiDiGraph:
    return build_graph(snapshot)


def test_every_position_is_one_edge_from_its_account_to_its_market(graph):
    for protocol, account, asset, side, amount in POSITIONS:
        kind = "supplies" if side == "collateral" else "borrows"
        data = graph.get_edge_data(f"account:{account}", f"market:{protocol}:{MARKET_OF[protocol]}", f"{kind}:{asset}")
        assert data is not None, (protocol, account, asset, side)
        assert data["kind"] == kind and data["amount"] == amount
        assert data["usd"] == pytest.approx(usd(asset, amount))
    assert graph.nodes[f"option-market:options-x:{LYRA}"]["kind"] == "option-market"
    assert graph.nodes[f"asset:{AWETH}"]["kind"] == "receipt-token"


def test_receipt_tokens_link_the_issuing_protocol_to_the_consuming_one(graph):
    receipt_edges = {(u, v, d["asset"]): d["usd"] for u, v, d in graph.edges(data=True)
                     if d["kind"] == "receipt-of" and not u.startswith("asset:")}
    assert receipt_edges == {
        (f"market:lender-a:{POOL}", f"market:lender-b:{COMPTROLLER}", AWETH): pytest.approx(4 * 3000.0),
        (f"market:lender-b:{COMPTROLLER}", f"market:lender-c:{COMET}", CAWETH): pytest.approx(100 * 30.0),
        (f"option-market:options-x:{LYRA}", f"market:lender-a:{POOL}", LP): pytest.approx(1000 * 1.1),
    }
    assert graph.has_edge(f"asset:{CAWETH}", f"asset:{AWETH}", "receipt-of")
    assert graph.has_edge(f"asset:{AWETH}", f"asset:{WETH}", "receipt-of")


def test_options_hedges_and_venues_are_edges(graph):
    short = graph.get_edge_data(f"account:{A}", f"option-market:options-x:{LYRA}", f"writes-option:{WETH}")  # underlying = hedged asset
    assert short["usd"] == pytest.approx(2 * 3000.0)         # collateral posted: 2 WETH
    assert graph.has_edge(f"account:{H}", f"option-market:options-x:{LYRA}", f"buys-option:{WETH}")
    hedge = graph.get_edge_data(f"option-market:options-x:{LYRA}", f"venue:{UNIPOOL}", f"hedges-on:{WETH}")
    assert hedge["usd"] == pytest.approx(1.5 * 3000.0)
    assert graph.has_edge(f"asset:{WETH}", f"venue:{UNIPOOL}", "trades-on")
    # x·y = k: the price falls 2 % when the pool's 1000 WETH grow to 1000 / sqrt(0.98)
    assert graph.nodes[f"venue:{UNIPOOL}"]["usd"] == pytest.approx(1000 * (0.98**-0.5 - 1) * 3000.0)


def test_market_and_protocol_totals_equal_the_sums_of_their_positions(graph):
    for protocol, market in MARKET_OF.items():
        coll = sum(usd(a, x) for p, _, a, s, x in POSITIONS if p == protocol and s == "collateral")
        debt = sum(usd(a, x) for p, _, a, s, x in POSITIONS if p == protocol and s == "debt")
        node = graph.nodes[f"market:{protocol}:{market}"]
        assert (node["collateral_usd"], node["debt_usd"]) == (pytest.approx(coll), pytest.approx(debt))
        assert graph.nodes[f"protocol:{protocol}"]["collateral_usd"] == pytest.approx(coll)


def test_small_accounts_fold_into_one_node_per_protocol_and_asset(snapshot):
    gross = defaultdict(float)
    for _, account, asset, _, amount in POSITIONS:
        gross[account] += usd(asset, amount)
    gross[A] += 2 * 3000.0                                      # option collateral
    threshold = 20000.0
    small = {a for a, v in gross.items() if v < threshold}
    assert small == {C, E, G, H}
    graph = build_graph(snapshot, fold_below_usd=threshold)
    for account in small:
        assert f"account:{account}" not in graph
    assert f"account:{A}" in graph and f"account:{B}" in graph
    assert graph.graph["folded_accounts"] == 4
    assert graph.nodes[f"folded:options-x:{WETH}"]["accounts"] == 1                 # H's long put
    folded = graph.nodes[f"folded:lender-c:{USDC}"]
    assert folded["kind"] == "folded-accounts" and folded["accounts"] == 2          # G and H both owe USDC
    assert folded["debt_usd"] == pytest.approx(1500.0 + 10.0)
    edge = graph.get_edge_data(f"folded:lender-c:{USDC}", f"market:lender-c:{COMET}", f"borrows:{USDC}")
    assert edge["usd"] == pytest.approx(1510.0)
    # totals do not change when accounts fold
    full = build_graph(snapshot)
    for node in (f"market:lender-c:{COMET}", f"market:lender-a:{POOL}", f"asset:{WETH}"):
        assert graph.nodes[node]["collateral_usd"] == pytest.approx(full.nodes[node]["collateral_usd"])
    assert build_graph(snapshot, fold_below_usd=None, max_accounts=3).graph["folded_accounts"] == len(gross) - 3


def test_collateral_composition_hhi_and_top10(snapshot):
    got = collateral_composition(snapshot)
    for protocol in MARKET_OF:
        by_asset, by_account = defaultdict(float), defaultdict(float)
        for p, account, asset, side, amount in POSITIONS:
            if p == protocol and side == "collateral":
                by_asset[asset] += usd(asset, amount)
                by_account[account] += usd(asset, amount)
        total = sum(by_asset.values())
        assert got[protocol]["collateral_usd"] == pytest.approx(total)
        assert got[protocol]["asset_hhi"] == pytest.approx(sum((v / total) ** 2 for v in by_asset.values()))
        assert got[protocol]["account_hhi"] == pytest.approx(sum((v / total) ** 2 for v in by_account.values()))
        top = sorted(by_account.values(), reverse=True)[:10]
        assert got[protocol]["top10_account_share"] == pytest.approx(sum(top) / total)
    # lender-a by hand: WETH 17 × 3000 = 51000, WBTC 60000, lyraLP 1100 -> 112100
    assert got["lender-a"]["asset_hhi"] == pytest.approx((51000**2 + 60000**2 + 1100**2) / 112100**2)
    assert [row["symbol"] for row in got["lender-a"]["by_asset"]] == ["WBTC", "WETH", "lyraLP"]


def independent_overlap():
    """Overlap matrix from the rows: collateral of borrowers per root asset, debt split pro rata."""
    debt = defaultdict(float)
    for p, account, asset, side, amount in POSITIONS:
        if side == "debt":
            debt[(p, account)] += usd(asset, amount)
    backing = defaultdict(lambda: defaultdict(float))
    coll_of = defaultdict(float)
    for p, account, asset, side, amount in POSITIONS:
        if side == "collateral" and debt[(p, account)] > 0:
            coll_of[(p, account)] += usd(asset, amount)
    attributed = defaultdict(lambda: defaultdict(float))
    for p, account, asset, side, amount in POSITIONS:
        if side == "collateral" and debt[(p, account)] > 0:
            backing[p][root(asset)] += usd(asset, amount)
            attributed[p][root(asset)] += debt[(p, account)] * usd(asset, amount) / coll_of[(p, account)]
    protocol_debt = defaultdict(float)
    for (p, _), v in debt.items():
        protocol_debt[p] += v
    return backing, attributed, protocol_debt


def test_shared_collateral_overlap_matrix(snapshot):
    got = shared_collateral_overlap(snapshot)
    assert got["protocols"] == ["lender-a", "lender-b", "lender-c"]
    backing, attributed, protocol_debt = independent_overlap()
    names = got["protocols"]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                assert got["shared_usd"][i][j] == pytest.approx(sum(backing[a].values()))
                continue
            shared_assets = set(backing[a]) & set(backing[b])
            assert got["shared_usd"][i][j] == pytest.approx(sum(min(backing[a][x], backing[b][x]) for x in shared_assets))
            expected_share = sum(attributed[a][x] for x in backing[a] if x in backing[b]) / protocol_debt[a]
            assert got["debt_share"][i][j] == pytest.approx(expected_share)
    # by hand: lender-a borrowers' WETH = 15 ETH (A 10, B 5) = 45000; lender-b's aWETH roots in WETH = 12000,
    # WBTC: lender-a 60000 (B), lender-b 30000 (D) -> shared 12000 + 30000
    i, j = names.index("lender-a"), names.index("lender-b")
    assert got["shared_usd"][i][j] == pytest.approx(42000.0)
    # lender-c's only backed debt (G, 1500) rests on caWETH -> aWETH -> WETH, which backs lender-a too; H's 10 is unbacked
    assert got["debt_share"][names.index("lender-c")][i] == pytest.approx(1500.0 / 1510.0)


def test_receipt_chains_reach_the_root_asset(snapshot, graph):
    got = {c["symbol"]: c for c in receipt_chains(snapshot, graph)["chains"]}
    assert got["caWETH"]["path"] == ["caWETH", "aWETH", "WETH"]
    assert got["caWETH"]["issuers"] == ["lender-b", "lender-a"] and got["caWETH"]["depth"] == 2
    assert got["caWETH"]["collateral_usd_by_protocol"] == {"lender-c": pytest.approx(3000.0)}
    assert got["lyraLP"]["path"] == ["lyraLP", "USDC"]
    deps = {(d["issuer"], d["consumer"]) for d in receipt_chains(snapshot, graph)["dependencies"]}
    assert deps == {("lender-a", "lender-b"), ("lender-b", "lender-c"), ("options-x", "lender-a")}


def test_receipt_cycles_are_refused():
    snap = hand_snapshot()
    snap.assets.loc[snap.assets["address"] == WETH, "receipt_of"] = f"lender-b:{CAWETH}"
    with pytest.raises(ContagionError, match="cycle"):
        shared_collateral_overlap(snap)


def test_accounts_in_several_protocols_and_their_combined_health(snapshot):
    got = {row["account"]: row for row in multi_protocol_accounts(snapshot)["accounts"]}
    assert set(got) == {A, H}                                   # A: lender-a, lender-b, options-x; H: lender-c, options-x
    a = got[A]
    a_weighted = 10 * 3000 * 0.83
    comp_weighted = 4 * 3000 * 0.75
    assert a["protocols"]["lender-a"]["health"] == pytest.approx(a_weighted / 20000)
    assert a["protocols"]["lender-b"]["health"] == pytest.approx(comp_weighted / 6000)
    assert a["protocols"]["options-x"]["collateral_usd"] == pytest.approx(6000.0)
    assert a["combined_health"] == pytest.approx((a_weighted + comp_weighted) / 26000)
    assert got[H]["protocols"]["lender-c"]["health"] == 0.0


def test_exports_round_trip(tmp_path, snapshot, graph):
    paths = write_graph_outputs(graph, tmp_path)
    back = nx.read_graphml(paths["graphml"], force_multigraph=True)
    assert isinstance(back, nx.MultiDiGraph)
    assert back.number_of_nodes() == graph.number_of_nodes() and back.number_of_edges() == graph.number_of_edges()
    receipt = [(u, v) for u, v, d in back.edges(data=True) if d["kind"] == "receipt-of" and not u.startswith("asset:")]
    assert (f"market:lender-a:{POOL}", f"market:lender-b:{COMPTROLLER}") in receipt
    assert back.nodes[f"asset:{AWETH}"]["receipt_of"] == f"lender-a:{WETH}"
    gexf = nx.read_gexf(paths["gexf"])
    assert gexf.number_of_edges() == graph.number_of_edges()
    data = json.loads(paths["json"].read_text())
    assert all({"kind", "label", "usd"} <= set(n) for n in data["nodes"])
    assert all({"kind", "usd", "source", "target"} <= set(e) for e in data["edges"])
    edges = pd.read_parquet(paths["edges"])
    assert len(edges) == graph.number_of_edges()
    supplies = edges[edges["kind"] == "supplies"]
    assert supplies["usd"].sum() == pytest.approx(sum(usd(a, x) for _, _, a, s, x in POSITIONS if s == "collateral"))


def test_graph_to_dir_writes_every_output_and_json_metrics(tmp_path, snapshot):
    snapshot.write(tmp_path / "snapshot")
    paths = graph_to_dir(tmp_path / "snapshot", tmp_path / "out")
    assert {p.name for p in paths.values()} == {"graph.graphml", "graph.gexf", "graph.json", "edges.parquet",
                                                "nodes.parquet", "exposure.json"}
    metrics = json.loads(paths["exposure"].read_text())
    assert metrics["block_number"] == 12
    assert metrics["graph"]["edges_by_kind"]["supplies"] == sum(1 for row in POSITIONS if row[3] == "collateral")
    assert math.isclose(metrics["composition"]["lender-c"]["collateral_usd"], 3000.0)


def test_exposure_metrics_is_json_serialisable(snapshot, graph):
    metrics = exposure_metrics(snapshot, graph)
    json.dumps(metrics, allow_nan=False)
    assert set(metrics) >= {"composition", "overlap", "receipt_chains", "multi_protocol_accounts",
                            "liquidation_curves", "graph"}
