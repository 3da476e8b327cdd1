"""The contagion report on a run directory built here the way ``contagion demo`` builds one: a small
snapshot written with Snapshot.write, the graph outputs of analyzer.graph, one cascade per scenario
of the demo's set from the real engine (analyzer.engine.simulate_to_dir), and a fidelity.json.

Expected numbers are read back from the files (cascade.json, accounts.parquet, fidelity.json) with
json and pandas, or computed here with plain Python, never taken from the report's own data.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analyzer.engine import simulate_to_dir
from analyzer.errors import ContagionError
from analyzer.fidelity import compare, write_fidelity
from analyzer.graph import graph_to_dir
from analyzer.model import Snapshot
from analyzer.report import write_report, write_run_index
from analyzer.scenarios import ForcedSale, ShockScenario


def addr(n: int) -> str:
    return "0x" + f"{n:040x}"


WETH, WBTC, USDC, AWETH = (addr(i) for i in range(1, 5))
POOL, MORPHO, LYRA = (addr(0x100 + i) for i in range(3))
A, B, C, D = (addr(0x1000 + i) for i in range(4))
PRICES = {WETH: 3000.0, WBTC: 60000.0, USDC: 1.0, AWETH: 3000.0}
SYMBOLS = {WETH: "WETH", WBTC: "WBTC", USDC: "USDC", AWETH: "aWETH"}
# Lyra's reader records per-strike users' net gamma in the market's params (two boards share 3000)
STRIKES = [{"strike": 2500.0, "expiry": 1_700_600_000, "net_gamma": 0.0021, "call_exposure": 10.0, "put_exposure": 5.0},
           {"strike": 3000.0, "expiry": 1_700_600_000, "net_gamma": 0.0042, "call_exposure": 20.0, "put_exposure": 0.0},
           {"strike": 3000.0, "expiry": 1_701_200_000, "net_gamma": 0.0011, "call_exposure": 4.0, "put_exposure": 1.0},
           {"strike": 3500.0, "expiry": 1_700_600_000, "net_gamma": -0.0007, "call_exposure": -3.0, "put_exposure": 0.0}]
# the demo's scenario set: WETH -10..-40%, a joint shock, an IV shock, the largest holder's forced sale
SCENARIOS = {f"weth-{d}": ShockScenario(name=f"weth-{d}", price_shocks={"WETH": -d / 100}) for d in (10, 20, 30, 40)}
SCENARIOS["eth-wbtc"] = ShockScenario(name="eth-wbtc", price_shocks={"WETH": -0.3, "WBTC": -0.3})
SCENARIOS["iv-50"] = ShockScenario(name="iv-50", iv_shocks={"WETH": 0.5})
SCENARIOS["forced-sale"] = ShockScenario(name="forced-sale", forced_sales=[ForcedSale(account=D)])
HEADLINE = "weth-30"



def replay_like(cascade: dict, accounts: pd.DataFrame) -> dict:
    """What ReplayResult.to_json would hold for a replay that matched the engine but liquidated 2% less
    in Aave and left one more dollar of bad debt (the replay itself needs an anvil fork)."""
    liquidated = accounts[accounts["liquidated_usd"] > 0]
    return {"liquidated_usd": {p: row["liquidated_usd"] * (0.98 if p == "aave-v3" else 1.0)
                               for p, row in cascade["protocols"].items()},
            "bad_debt_usd": {p: row["bad_debt_usd"] + 1.0 for p, row in cascade["protocols"].items()},
            "accounts_liquidated": {p: sorted(g["account"]) for p, g in liquidated.groupby("protocol")},
            "final_prices": {a["address"]: a["price_final_usd"] * 1.001 for a in cascade["assets"]},
            "rounds": [], "source_block": 42, "reached_fixed_point": True, "source_unchanged": True}


def hand_snapshot() -> Snapshot:
    """Aave V3 (real rule; params as its reader writes them), a lending protocol without a plugin
    (euler-v2: shown, not simulated), a Lyra option market with per-strike greeks, two pools."""
    assets = [{"address": a, "symbol": s, "decimals": 18, "price_usd": PRICES[a],
               "receipt_of": f"aave-v3:{WETH}" if a == AWETH else "", "iv": 0.65 if a == WETH else math.nan}
              for a, s in SYMBOLS.items()]
    lend = [("aave-v3", POOL, WETH, 0.83), ("aave-v3", POOL, WBTC, 0.78), ("euler-v2", MORPHO, AWETH, 0.75),
            ("aave-v3", POOL, USDC, 0.0), ("euler-v2", MORPHO, USDC, 0.0)]
    markets = [{"protocol": p, "market": m, "asset": a, "oracle_price_usd": PRICES[a], "liquidation_threshold": lt,
                "ltv": max(lt - 0.05, 0.0), "liquidation_bonus": 0.05, "close_factor": 0.5, "collateral_enabled": lt > 0,
                "borrowable": lt == 0, "params": json.dumps({"reserve_id": i, "liquidation_protocol_fee_bps": 1000,
                                                             "emode_categories": {}, "version": "3.0"})}
               for i, (p, m, a, lt) in enumerate(lend)]
    markets.append({"protocol": "lyra-v1", "market": LYRA, "asset": WETH, "oracle_price_usd": 3000.0,
                    "params": json.dumps({"spot": 3000.0, "strikes": STRIKES})})
    rows = [("aave-v3", POOL, A, WETH, "collateral", 10.0), ("aave-v3", POOL, A, USDC, "debt", 20000.0),
            ("aave-v3", POOL, B, WBTC, "collateral", 1.0), ("aave-v3", POOL, B, USDC, "debt", 40000.0),
            ("euler-v2", MORPHO, C, AWETH, "collateral", 5.0), ("euler-v2", MORPHO, C, USDC, "debt", 9000.0),
            ("aave-v3", POOL, D, WETH, "collateral", 100.0), ("aave-v3", POOL, D, USDC, "debt", 200000.0)]
    positions = [{"protocol": p, "market": m, "account": acct, "asset": a, "side": side, "amount": amount,
                  "raw": str(int(amount) * 10**18)} for p, m, acct, a, side, amount in rows]
    accounts = [{"protocol": p, "market": m, "account": acct, "params": json.dumps({"collateral_off": []})}
                for p, m, acct in sorted({r[:3] for r in rows})]
    options = [{"protocol": "lyra-v1", "market": LYRA, "account": A, "position_id": 1, "kind": "call", "strike": 3000.0,
                "expiry": 1_700_600_000, "size": 2.0, "side": "short", "collateral_asset": WETH, "collateral": 2.0}]
    venues = [{"protocol": "uniswap-v2", "venue": addr(0x200 + i), "asset": a, "quote_asset": USDC,
               "model": "constant_product", "params": json.dumps({"reserve_asset": r, "reserve_quote": r * PRICES[a]})}
              for i, (a, r) in enumerate(((WETH, 300.0), (WBTC, 20.0)))]
    meta = {"chain_id": 31337, "block_number": 42, "block_timestamp": 1_700_000_000, "tool_version": "0.1.0",
            "protocols": {"aave-v3": {"pool": POOL}, "euler-v2": {"evc": MORPHO}, "lyra-v1": {"optionMarket": LYRA}}}
    return Snapshot(meta=meta, assets=assets, markets=markets, accounts=accounts, positions=positions,
                    options=options, venues=venues).validate()


def build_run(run_dir: Path, *, fidelity: bool = True) -> Path:
    """The run directory layout the report reads (analyzer/report/inputs.py): snapshot/, graph
    outputs, scenarios/<name>/ (cascade.json + Parquet), the headline's files at the top, run.json."""
    hand_snapshot().write(run_dir / "snapshot")
    graph_to_dir(run_dir / "snapshot", run_dir)
    for name, scenario in SCENARIOS.items():
        simulate_to_dir(run_dir / "snapshot", scenario, run_dir / "scenarios" / name)
    for file in (run_dir / "scenarios" / HEADLINE).iterdir():
        shutil.copy(file, run_dir / file.name)
    write_run_index(run_dir, headline=HEADLINE, scenarios=list(SCENARIOS), title="Test contagion report")
    if fidelity:
        cascade = json.loads((run_dir / "cascade.json").read_text())
        accounts = pd.read_parquet(run_dir / "accounts.parquet")
        engine_accounts = {p: set(g.loc[g["liquidated_usd"] > 0, "account"]) for p, g in accounts.groupby("protocol")}
        write_fidelity(compare(cascade, engine_accounts, replay_like(cascade, accounts)), run_dir / "fidelity.json")
    return run_dir


class Cells(HTMLParser):
    """Every element with data-key: key -> (data-value, visible text); the script blocks by id;
    every src and href."""

    def __init__(self):
        super().__init__()
        self.cells: dict[str, tuple[str, str]] = {}
        self.scripts: dict[str, str] = {}
        self.srcs: list[str] = []
        self._open: list[tuple[str, str | None, str | None, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.srcs += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag in ("td", "span", "script"):
            self._open.append((tag, attrs.get("data-key"), attrs.get("data-value") or attrs.get("id"), []))

    def handle_data(self, data):
        for entry in self._open:
            entry[3].append(data)

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            _, key, value, text = self._open.pop()
            if tag == "script" and value:
                self.scripts[value] = "".join(text)
            elif key:
                assert key not in self.cells, f"data-key {key} appears twice"
                self.cells[key] = (value, "".join(text).strip())


def parse(html: str) -> Cells:
    cells = Cells()
    cells.feed(html)
    return cells


def usd_text(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = build_run(tmp_path_factory.mktemp("run"))
    write_report(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def page(run) -> Cells:
    return parse((run / "report.html").read_text())


def test_write_report_writes_html_figures_and_summary(run):
    assert (run / "report.html").stat().st_size > 100_000  # cytoscape is inlined
    names = sorted(p.name for p in (run / "figures").glob("*.png"))
    assert names == sorted(["contagion_graph.png", "liquidation_curves.png", "cascade_timeline.png",
                            "contagion_matrix.png", "gamma_by_strike.png", "gamma_map.png", "top_accounts.png", "bad_debt.png",
                            "fidelity.png", "feedback_curve.png"])
    for name in names:
        head = (run / "figures" / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", head[16:24])
        assert width > 300 and height > 150
    assert not list(run.glob(".*.tmp-*")), "no temporary file may be left behind"


def test_numbers_in_the_report_equal_cascade_json(run, page):
    cascade = json.loads((run / "cascade.json").read_text())
    embedded = json.loads(page.scripts["report-data"])
    assert cascade["totals"]["liquidated_usd"] > 0, "the headline scenario must liquidate something"

    def check(key: str, expected: float):
        value, text = page.cells[key]
        assert float(value) == expected, key
        assert text == usd_text(expected), key

    for proto, row in cascade["protocols"].items():
        for field in ("liquidated_usd", "bad_debt_usd", "receipt_writedown_usd"):
            check(f"protocols.{proto}.{field}", row[field])
    assert {p["protocol"]: p["liquidated_usd"] for p in embedded["protocols"]} == \
        {p: row["liquidated_usd"] for p, row in cascade["protocols"].items()}
    for field in ("liquidated_usd", "bad_debt_usd"):
        assert float(page.cells[f"totals.{field}"][0]) == pytest.approx(cascade["totals"][field], rel=1e-12)
    # every non-zero cell of the matrix and of the timeline is shown; what is left out is zero
    m = cascade["contagion"]
    shown = 0
    for i, source in enumerate(m["sources"]):
        for j, target in enumerate(m["protocols"]):
            key = f"matrix.{source}.{target}"
            if key in page.cells:
                check(key, m["usd"][i][j])
                shown += m["usd"][i][j] != 0
            else:
                assert m["usd"][i][j] == 0 and (not any(m["usd"][i]) or not any(r[j] for r in m["usd"])), key
    assert shown == sum(v != 0 for row in m["usd"] for v in row) > 0
    assert embedded["matrix"] == {"sources": m["sources"], "targets": m["protocols"], "usd": m["usd"]}
    for i, rnd in enumerate(cascade["rounds"]):
        for proto, usd in rnd["liquidated_usd"].items():
            if f"rounds.{i}.{proto}.usd" in page.cells:
                check(f"rounds.{i}.{proto}.usd", usd)
                assert int(page.cells[f"rounds.{i}.{proto}.count"][1]) == rnd["liquidations"][proto]
            else:
                assert not any(r["liquidated_usd"][proto] or r["liquidations"][proto] for r in cascade["rounds"])
    assert "rounds.0.aave-v3.usd" in page.cells
    amplified = [a for a in cascade["assets"] if a["amplification"] is not None]
    assert amplified
    for asset in amplified:
        assert float(page.cells[f"amplification.{asset['symbol']}"][0]) == asset["amplification"]


def test_accounts_at_risk_equal_accounts_parquet(run, page):
    accounts = pd.read_parquet(run / "accounts.parquet")
    liquidated = accounts[accounts["liquidated_usd"] > 0]
    assert len(liquidated)
    for row in liquidated.itertuples():
        value, text = page.cells[f"accounts.{row.protocol}.{row.account}.liquidated_usd"]
        assert float(value) == row.liquidated_usd and text == usd_text(row.liquidated_usd)
    html = (run / "report.html").read_text()
    # the Aave rule's health factor of A, by hand: 10 WETH × 3000 × 0.83 / 20000 USDC
    assert f"{A}</td><td>$30,000.00</td><td>$20,000.00</td>\n    <td>{10 * 3000 * 0.83 / 20000:.4f}</td>" in html


def test_every_scenario_of_the_set_is_in_the_scenario_table(run, page):
    for name in SCENARIOS:
        cascade = json.loads((run / "scenarios" / name / "cascade.json").read_text())
        for field in ("liquidated_usd", "bad_debt_usd"):
            value, text = page.cells[f"scenarios.{name}.{field}"]
            assert float(value) == pytest.approx(cascade["totals"][field], rel=1e-12, abs=1e-9)
            assert text == usd_text(float(value))


def test_liquidation_curves_are_the_single_asset_scenarios(run, page):
    liquidated: dict[str, list[float]] = {}
    for depth in (10, 20, 30, 40):
        cascade = json.loads((run / "scenarios" / f"weth-{depth}" / "cascade.json").read_text())
        for proto, row in cascade["protocols"].items():
            liquidated.setdefault(proto, []).append(row["liquidated_usd"])
            key = f"curves.WETH.{proto}.{depth / 100}"
            if key in page.cells:
                assert float(page.cells[key][0]) == row["liquidated_usd"]
    for proto, values in liquidated.items():  # a protocol is drawn exactly when it liquidated something
        assert (f"curves.WETH.{proto}.0.1" in page.cells) == any(values), proto
    aave = [float(page.cells[f"curves.WETH.aave-v3.{d / 100}"][0]) for d in (10, 20, 30, 40)]
    assert max(aave) > 0


def test_fidelity_rows_come_from_fidelity_json(run, page):
    fidelity = json.loads((run / "fidelity.json").read_text())
    aave = fidelity["protocols"]["aave-v3"]
    assert aave["engine_liquidated_usd"] > 0 and not aave["value_ok"]  # the 2% gap is outside the 1% tolerance
    for metric, engine, replay in (("aave-v3 liquidated USD", "engine_liquidated_usd", "replay_liquidated_usd"),
                                   ("aave-v3 bad debt USD", "engine_bad_debt_usd", "replay_bad_debt_usd")):
        assert float(page.cells[f"fidelity.{metric}.engine"][0]) == aave[engine]
        assert float(page.cells[f"fidelity.{metric}.replay"][0]) == aave[replay]
    weth = fidelity["final_prices"]["WETH"]
    assert float(page.cells["fidelity.WETH final price.replay"][0]) == weth["replay_usd"]
    assert "Outside the published tolerances" in (run / "report.html").read_text()


def test_gamma_by_strike_sums_the_option_plugins_strikes(run, page):
    expected: dict[float, float] = {}
    for k in STRIKES:
        expected[k["strike"]] = expected.get(k["strike"], 0.0) - k["net_gamma"]  # the pool is the users' negative
    for strike, pool in expected.items():
        assert float(page.cells[f"gamma.{LYRA}.{strike}"][0]) == pytest.approx(pool, rel=1e-12)
    html = (run / "report.html").read_text()
    assert html.count('class="short-gamma"') == sum(1 for pool in expected.values() if pool < 0) == 2


def test_the_page_is_self_contained_and_every_section_has_content(run, page):
    html = (run / "report.html").read_text()
    assert all(src.startswith(("data:", "#")) for src in page.srcs), [s for s in page.srcs if not s.startswith("data:")]
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    for section in ("graph", "scenarios", "curves", "timeline", "matrix", "gamma", "accounts", "bad-debt",
                    "fidelity", "provenance"):
        start = html.index(f'<section id="{section}">')
        body = html[start:html.index("</section>", start)]
        assert 'class="empty"' not in body, f"section {section} is empty"
    graph = json.loads(page.scripts["graph-data"])
    kinds = {el["data"]["kind"] for el in graph["protocol"] if el["group"] == "nodes"}
    assert {"protocol", "market", "asset", "receipt-token", "option-market", "venue"} <= kinds
    assert "account" not in kinds
    accounts = {el["data"]["id"] for el in graph["accounts"] if el["group"] == "nodes"}
    assert accounts == {f"account:{a}" for a in (A, B, C, D)}
    assert graph["details"][f"account:{D}"]["positions"][0]["usd"] == 100 * PRICES[WETH]
    assert "chain id</th><td>31337" in html and "42 (timestamp 1700000000)" in html and POOL in html


def test_summary_has_the_headline_numbers(run):
    summary = (run / "summary.md").read_text()
    cascade = json.loads((run / "cascade.json").read_text())
    for proto, row in cascade["protocols"].items():
        assert f"| {proto} | {usd_text(row['liquidated_usd'])} | {usd_text(row['bad_debt_usd'])} |" in summary
    assert "Chain 31337, block 42" in summary and "figures/contagion_matrix.png" in summary


def test_a_lone_cascade_without_optional_parts_still_reports(run, tmp_path):
    lone = json.loads((run / "cascade.json").read_text())
    lone["snapshot"].pop("path", None)      # a cascade that does not say which snapshot it read
    (tmp_path / "cascade.json").write_text(json.dumps(lone))
    html = write_report(tmp_path).read_text()
    assert "No option markets in this snapshot." in html
    assert "No replay in this run (no fidelity.json)." in html
    cascade = json.loads((run / "cascade.json").read_text())
    assert float(parse(html).cells["protocols.aave-v3.liquidated_usd"][0]) == cascade["protocols"]["aave-v3"]["liquidated_usd"]
    again = write_report(tmp_path, title="Second title").read_text()  # replaces the page whole
    assert "<title>Second title</title>" in again and "<title>Second title</title>" not in html


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["protocols"]["aave-v3"].update(bad_debt_usd="lots"),
     r"cascade.json: protocols.aave-v3.bad_debt_usd must be a number"),
    (lambda c: c.pop("rounds"), r"cascade.json: missing field rounds"),
    (lambda c: c["contagion"]["usd"].pop(), r"cascade.json: contagion.usd must be \d+ rows of \d+ numbers"),
    (lambda c: c["rounds"][0]["liquidated_usd"].update({"aave-v3": "x"}),
     r"cascade.json: rounds\[0\].liquidated_usd.aave-v3 must be a number"),
    (lambda c: c.update(schema_version=99), r"cascade.json: schema .* version 99"),
])
def test_a_malformed_cascade_names_the_file_and_field(run, tmp_path, mutate, message):
    cascade = json.loads((run / "cascade.json").read_text())
    mutate(cascade)
    (tmp_path / "cascade.json").write_text(json.dumps(cascade))
    with pytest.raises(ContagionError, match=message):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_a_run_without_any_cascade_is_refused(tmp_path):
    with pytest.raises(ContagionError, match="no cascade.json"):
        write_report(tmp_path)


def test_a_fidelity_file_of_another_schema_is_refused(run, tmp_path):
    shutil.copy(run / "cascade.json", tmp_path / "cascade.json")
    fidelity = json.loads((run / "fidelity.json").read_text())
    fidelity["protocols"]["aave-v3"]["replay_bad_debt_usd"] = "n/a"
    (tmp_path / "fidelity.json").write_text(json.dumps(fidelity))
    with pytest.raises(ContagionError, match="fidelity.json: aave-v3 bad debt USD: replay value must be a number"):
        write_report(tmp_path)
