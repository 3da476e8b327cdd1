"""The graph and exposure metrics of a real scan of the mainnet-like devnet.

Expectations come from the scenario file (fixtures/scenarios/mainnet-like.toml: explicit accounts,
Comet borrowers' healths) or from plain Python over the scanned rows, never from the code under
test. Runs on whichever protocols the devnet has (CONTAGION_TEST_PROTOCOLS restricts them).
"""

from __future__ import annotations

from collections import defaultdict

import networkx as nx
import pytest

from analyzer.devnet.scenario import account_address
from analyzer.graph import build_graph, exposure_metrics, write_graph_outputs
from analyzer.graph.curves import DEFAULT_DROPS
from tests.conftest import requires_anvil

pytestmark = requires_anvil


@pytest.fixture(scope="module")
def scanned(devnet):
    from analyzer.scan import scan
    from protocols import plugins

    present = [p for name, p in plugins().items() if name in devnet.book.get("protocols", {})]
    snapshot = scan(devnet.url, present, book=devnet.book, cache_dir=None)
    return snapshot, build_graph(snapshot)


def need(snapshot, *protocols):
    missing = set(protocols) - set(snapshot.positions["protocol"])
    if missing:
        pytest.skip(f"the devnet has no positions of {sorted(missing)}")


def test_explicit_accounts_are_edges_with_their_scenario_amounts(devnet, scanned):
    snapshot, graph = scanned
    need(snapshot, "aave-v3")
    scenario = devnet.scenario.protocol("aave-v3")
    tokens = devnet.book["tokens"]
    pool = snapshot.markets.loc[snapshot.markets["protocol"] == "aave-v3", "market"].iloc[0]
    for account in scenario["accounts"]:
        node = f"account:{account_address(account['label'])}"
        for side, kind in (("supply", "supplies"), ("borrow", "borrows")):
            for symbol, amount in account.get(side, {}).items():
                edge = graph.get_edge_data(node, f"market:aave-v3:{pool}", f"{kind}:{tokens[symbol]}")
                assert edge is not None, (account["label"], symbol)
                # interest accrues between seeding and the scan: a few blocks, far below 0.1 %
                assert edge["amount"] == pytest.approx(amount, rel=1e-3)
                assert edge["usd"] == pytest.approx(amount * devnet.scenario.assets[symbol].price_usd, rel=1e-3)


def test_overlap_matrix_equals_a_plain_recount_of_the_rows(scanned):
    snapshot, graph = scanned
    lending = sorted(set(snapshot.positions["protocol"]))
    if len(lending) < 2:
        pytest.skip("one lending protocol only")
    price = snapshot.price_of()
    root = {a: a for a in snapshot.assets["address"]}
    receipt = {a: r.split(":")[-1] for a, r in zip(snapshot.assets["address"], snapshot.assets["receipt_of"],
                                                  strict=True) if r}
    for a in root:
        while root[a] in receipt:
            root[a] = receipt[root[a]]
    debt, backing = defaultdict(float), defaultdict(lambda: defaultdict(float))
    rows = list(snapshot.positions.itertuples(index=False))
    for r in rows:
        if r.side == "debt":
            debt[(r.protocol, r.market, r.account)] += r.amount * price[r.asset]
    for r in rows:
        if r.side == "collateral" and debt[(r.protocol, r.market, r.account)] > 0:
            backing[r.protocol][root[r.asset]] += r.amount * price[r.asset]
    metrics = exposure_metrics(snapshot, graph)["overlap"]
    assert metrics["protocols"] == lending
    for i, a in enumerate(lending):
        for j, b in enumerate(lending):
            if i != j:
                expected = sum(min(v, backing[b][x]) for x, v in backing[a].items() if x in backing[b])
                assert metrics["shared_usd"][i][j] == pytest.approx(expected, rel=1e-9, abs=1e-6)


def _comet_markets(spec) -> list[dict]:
    """The scenario's Comet markets (a ``markets`` table of them, or one market at the top level)."""
    comet = spec.protocol("comet")
    return list(comet["markets"].values()) if "markets" in comet else [comet]


def test_comet_weth_curve_matches_the_scenario_healths(devnet, scanned):
    snapshot, _ = scanned
    need(snapshot, "comet")
    expected_accounts = [0] * len(DEFAULT_DROPS)
    expected_usd = [0.0] * len(DEFAULT_DROPS)
    for market in _comet_markets(devnet.scenario):
        # a receipt collateral (aWETH, receipt_of = "aave-v3:WETH") is priced, and shocked, as its underlying
        underlying = {s: (c.get("receipt_of") or s).split(":")[-1] for s, c in market["collaterals"].items()}
        prices = {s: devnet.scenario.assets[u].price_usd for s, u in underlying.items()}
        factor = {s: c["liquidate_collateral_factor"] for s, c in market["collaterals"].items()}
        base = market.get("base", "USDC")
        for k, drop in enumerate(DEFAULT_DROPS):
            base_move = 1 - drop if base == "WETH" else 1.0      # a WETH-base market's debt falls too
            for b in market.get("borrowers", []):
                shocked = {s: prices[s] * (1 - drop if underlying[s] == "WETH" else 1) for s in b["collateral"]}
                weighted_now = sum(x * prices[s] * factor[s] for s, x in b["collateral"].items())
                debt = weighted_now / b["health"]
                health = sum(x * shocked[s] * factor[s] for s, x in b["collateral"].items()) / (debt * base_move)
                assert abs(health - 1) > 1e-3, (b["label"], drop)
                if health < 1:
                    expected_accounts[k] += 1
                    expected_usd[k] += sum(x * shocked[s] for s, x in b["collateral"].items())
    curves = exposure_metrics(snapshot, build_graph(snapshot))["liquidation_curves"]["curves"]
    curve = next(c for c in curves if c["protocol"] == "comet" and c["symbol"] == "WETH")
    assert curve["accounts"] == expected_accounts
    # collateral_usd also counts base supplied by a liquidatable borrower (none here)
    assert curve["collateral_usd"] == pytest.approx(expected_usd, rel=1e-9)


def test_graphml_of_the_devnet_loads_back_with_its_receipt_edges(tmp_path, scanned):
    snapshot, graph = scanned
    paths = write_graph_outputs(graph, tmp_path)
    back = nx.read_graphml(paths["graphml"], force_multigraph=True)
    assert back.number_of_edges() == graph.number_of_edges()
    receipts = snapshot.assets[snapshot.assets["receipt_of"] != ""]
    # every receipt token of the snapshot links to its underlying
    for token, receipt_of in zip(receipts["address"], receipts["receipt_of"], strict=True):
        assert back.has_edge(f"asset:{token}", f"asset:{receipt_of.split(':')[-1]}")
    # and every receipt token posted as collateral in another protocol links the two protocols
    issuer = dict(zip(receipts["address"], receipts["receipt_of"].str.split(":").str[0], strict=True))
    expected = {(issuer[r.asset], r.protocol) for r in snapshot.positions.itertuples(index=False)
                if r.side == "collateral" and r.asset in issuer}
    got = {(back.nodes[u]["protocol"], back.nodes[v]["protocol"]) for u, v, d in back.edges(data=True)
           if d["kind"] == "receipt-of" and not u.startswith("asset:")}
    assert got == expected


def test_option_curve_counts_the_shorts_the_lyra_rule_liquidates(scanned):
    snapshot, graph = scanned
    if not (snapshot.options["side"] == "short").any():
        pytest.skip("the devnet has no short options")
    from protocols import plugins

    curves = exposure_metrics(snapshot, graph)["liquidation_curves"]
    (curve,) = [c for c in curves["option_curves"] if c["protocol"] == "lyra-v1"]
    # the scenario opens every short above its minimum collateral (short_collateral_margins >= 1.03)
    assert curve["positions"][0] == 0
    rule = plugins()["lyra-v1"].rules.from_snapshot(snapshot)
    shorts = snapshot.options[(snapshot.options["side"] == "short")
                              & (snapshot.options["market"] == curve["market"])].reset_index(drop=True)
    spot = snapshot.markets.set_index(["protocol", "market"]).loc[("lyra-v1", curve["market"]), "oracle_price_usd"]
    now = int(snapshot.meta["block_timestamp"])
    price = snapshot.price_of()
    for k, drop in enumerate(DEFAULT_DROPS):
        hit = rule.liquidatable_rows(shorts, float(spot) * (1 - drop), now)
        assert curve["positions"][k] == int(hit.sum())
        value = sum(c * price[a] * (1 - drop if a == curve["asset"] else 1)
                    for c, a in zip(shorts["collateral"][hit], shorts["collateral_asset"][hit], strict=True))
        assert curve["collateral_usd"][k] == pytest.approx(value)
    assert curve["positions"][-1] > 0


def test_aave_comet_overlap_follows_from_the_scenario_file(devnet, scanned):
    """Comet's borrowers are all explicit in the scenario; Aave's explicit whales alone hold more of
    every asset Comet's borrowers post except LINK, which no Aave borrower posts (the population's
    collateral is WETH, wstETH, WBTC). So the overlap is Comet's borrowed-against collateral in those
    three assets, and Comet's debt share backed by them is all but what LINK backs."""
    snapshot, graph = scanned
    need(snapshot, "aave-v3", "comet")
    spec = devnet.scenario
    price = {s: a.price_usd for s, a in spec.assets.items()}
    comet_usd, debt_total, debt_on_link = defaultdict(float), 0.0, 0.0
    for market in _comet_markets(spec):
        # overlap is by root asset: Comet's aWETH (receipt_of = "aave-v3:WETH") is WETH there
        root = {s: (c.get("receipt_of") or s).split(":")[-1] for s, c in market["collaterals"].items()}
        factor = {s: c["liquidate_collateral_factor"] for s, c in market["collaterals"].items()}
        for b in market.get("borrowers", []):
            value = {s: x * price[root[s]] for s, x in b["collateral"].items()}
            debt = sum(v * factor[s] for s, v in value.items()) / b["health"]
            debt_total += debt
            debt_on_link += debt * value.get("LINK", 0.0) / sum(value.values())
            for s, v in value.items():
                comet_usd[root[s]] += v
    aave_whales = defaultdict(float)
    for account in spec.protocol("aave-v3")["accounts"]:
        if account.get("borrow"):
            for s, x in account["supply"].items():
                aave_whales[s] += x * price[s]
    # on Aave 3.6 LINK is collateral inside the LINK e-modes: their planned holdings count too
    from protocols.aave_v3.seeding import emode_population
    aave_link_usd = sum(p.supply.get("LINK", 0.0) for p in emode_population(spec)) * price["LINK"]
    shared = [s for s in comet_usd if s != "LINK" or aave_link_usd >= comet_usd["LINK"]]
    assert all(aave_whales[s] >= comet_usd[s] for s in shared if s != "LINK")
    if "LINK" not in shared:
        assert aave_link_usd == 0.0
    debt_on_link = 0.0 if "LINK" in shared else debt_on_link
    overlap = exposure_metrics(snapshot, graph)["overlap"]
    i, j = overlap["protocols"].index("aave-v3"), overlap["protocols"].index("comet")
    # comet's debt accrues interest for a few blocks after seeding
    assert overlap["shared_usd"][i][j] == pytest.approx(sum(comet_usd[s] for s in shared), rel=1e-9)
    assert overlap["debt_share"][j][i] == pytest.approx(1 - debt_on_link / debt_total, rel=1e-4)


def test_folding_the_devnet_keeps_market_totals(scanned):
    snapshot, full = scanned
    price = snapshot.price_of()
    gross = defaultdict(float)
    for r in snapshot.positions.itertuples(index=False):
        gross[r.account] += r.amount * price[r.asset]
    for r in snapshot.options.itertuples(index=False):
        gross[r.account] += r.collateral * price.get(r.collateral_asset, 0.0)
    threshold = sorted(gross.values())[len(gross) // 2]         # fold the smaller half
    folded = build_graph(snapshot, fold_below_usd=threshold)
    assert folded.graph["folded_accounts"] == sum(1 for v in gross.values() if v < threshold)
    accounts = [n for n, d in folded.nodes(data=True) if d["kind"] == "account"]
    assert len(accounts) == sum(1 for v in gross.values() if v >= threshold)
    for node, data in full.nodes(data=True):
        if data["kind"] in ("market", "option-market", "protocol", "asset", "receipt-token"):
            assert folded.nodes[node]["collateral_usd"] == pytest.approx(data["collateral_usd"])
            assert folded.nodes[node]["debt_usd"] == pytest.approx(data["debt_usd"])
    assert folded.number_of_edges() < full.number_of_edges()


def test_whale_in_aave_and_compound_has_the_scenario_combined_health(devnet, scanned):
    snapshot, graph = scanned
    need(snapshot, "aave-v3", "compound-v2")
    from protocols.aave_v3.params import RESERVES  # the thresholds the devnet configures

    spec = devnet.scenario
    price = {s: a.price_usd for s, a in spec.assets.items()}
    (aave,) = [a for a in spec.protocol("aave-v3")["accounts"] if a["label"] == "whale-1"]
    (comp,) = [a for a in spec.protocol("compound-v2")["accounts"] if a["label"] == "whale-1"]
    weighted = sum(x * price[s] * RESERVES[s].liquidation_threshold / 1e4 for s, x in aave["supply"].items())
    weighted += sum(x * price[s] * spec.protocol("compound-v2")["markets"][s] for s, x in comp["supply"].items())
    debt = sum(x * price[s] for a in (aave, comp) for s, x in a["borrow"].items())
    rows = exposure_metrics(snapshot, graph)["multi_protocol_accounts"]["accounts"]
    (whale,) = [r for r in rows if r["account"] == account_address("whale-1")]
    assert set(whale["protocols"]) >= {"aave-v3", "compound-v2"}
    assert whale["combined_health"] == pytest.approx(weighted / debt, rel=1e-4)   # interest since seeding


def test_every_collateral_asset_with_a_pool_has_a_feedback_curve(scanned):
    """The report's "where the loop ignites" curves exist for a scanned devnet: the devnet's
    receipts (aWETH) and native coin (ETH) are redeemed, not sold, and need no venue of their own."""
    from analyzer.engine.prepare import default_rules
    from analyzer.graph.feedback import feedback_curves

    snapshot, _ = scanned
    collateral = set(snapshot.positions.loc[snapshot.positions["side"] == "collateral", "asset"])
    pooled = collateral & set(snapshot.venues.loc[snapshot.venues["model"] != "", "asset"])
    assert pooled, "the devnet has pools for its collateral"
    result = feedback_curves(snapshot, default_rules())
    assert "skipped" not in result, result.get("skipped")
    by_asset = {c["asset"]: c for c in result["curves"]}
    assert pooled <= set(by_asset)
    for asset in pooled:
        assert by_asset[asset]["depth_usd"][0] > 0
