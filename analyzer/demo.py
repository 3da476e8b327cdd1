"""``contagion demo``: the whole job on the embedded devnet, in one call.

Devnet (every plugin from real bytecode, the scenario seeded; cached state when it exists) ->
scan -> graph and exposure metrics -> the default shock set through the engine -> one shock
replayed on an anvil fork for fidelity -> the report. Layout of the run folder (what
:func:`analyzer.report.write_report` reads)::

    <out>/book.json                 the devnet's address book
    <out>/snapshot/                 the scan (Parquet + meta.json)
    <out>/graph.json|graphml|gexf   the collateral graph; exposure.json its metrics
    <out>/scenarios/<name>/         one cascade per shock (cascade.json + Parquet)
    <out>/cascade.json (+ Parquet)  the headline shock's cascade, copied up
    <out>/fidelity.json             engine vs replay for the replayed shock
    <out>/sweep/                    a small stress sweep (results.parquet, distance.parquet, summary.json)
    <out>/report.html, figures/, summary.md, run.json
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from analyzer.console import progress_bar, progress_bars
from analyzer.model import Snapshot
from analyzer.scenarios import ForcedSale, ShockScenario

HEADLINE = "weth-30"
# the demo's stress sweep: about 7 s on the devnet (grid, static grid, systemic, distance to cascade)
SWEEP_ASSETS = ("WETH", "WBTC", "wstETH")
SWEEP_SPEC = {"name": "demo", "shocks": "-10%:-40%:10%", "systemic": {"shock": "-30%", "accounts": 3},
              "distance": {"tolerance": 0.01}}
REPLAYED = "weth-20"
log = logging.getLogger(__name__)


def largest_receipt_holder(snapshot: Snapshot) -> tuple[str, str] | None:
    """(account, protocol) holding the most USD of receipt tokens as collateral, if anyone does."""
    receipts = snapshot.assets.loc[snapshot.assets["receipt_of"] != "", ["address", "price_usd"]]
    held = snapshot.positions.merge(receipts, left_on="asset", right_on="address")
    held = held[held["side"] == "collateral"]
    if held.empty:
        return None
    held = held.assign(usd=held["amount"] * held["price_usd"])
    top = held.groupby(["account", "protocol"])["usd"].sum().idxmax()
    return str(top[0]), str(top[1])


def default_scenarios(snapshot: Snapshot) -> list[ShockScenario]:
    """WETH -10/-20/-30/-40%, a joint ETH + WBTC shock, IV +50 vol points on every option
    underlying, and the forced unwind of the largest receipt-token holder."""
    symbols = set(snapshot.assets["symbol"])
    eth_family = [s for s in ("WETH", "wstETH") if s in symbols]
    scenarios = [ShockScenario(name=f"weth-{p}", price_shocks={"WETH": -p / 100}) for p in (10, 20, 30, 40)]
    joint = {s: -0.30 for s in eth_family}
    if "WBTC" in symbols:
        joint["WBTC"] = -0.25
    scenarios.append(ShockScenario(name="eth-wbtc", price_shocks=joint))
    underlyings = snapshot.assets.loc[snapshot.assets["iv"].notna() & (snapshot.assets["iv"] > 0), "symbol"]
    if len(underlyings):
        scenarios.append(ShockScenario(name="iv-up-50", iv_shocks={s: 0.50 for s in underlyings}))
    holder = largest_receipt_holder(snapshot)
    if holder is not None:
        scenarios.append(ShockScenario(name="receipt-holder-fails",
                                       forced_sales=[ForcedSale(account=holder[0], protocol=holder[1])]))
    return scenarios


def run_demo(out: str | Path = "graphs/demo", scenario: str = "mainnet-like", *, replay_shock: bool = True,
             progress: Callable[[str], None] = log.info) -> Path:
    """Run the whole job on the devnet into ``out``; return the path of report.html."""
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet, write_address_book
    from analyzer.engine import simulate
    from analyzer.graph import graph_to_dir
    from analyzer.report import write_report, write_run_index
    from analyzer.scan import scan
    from protocols import plugins

    out = Path(out)
    started = time.monotonic()
    spec = scenario_mod.load(scenario)
    chosen = list(plugins().values())
    out.mkdir(parents=True, exist_ok=True)
    with start_devnet(spec, chosen, progress=progress) as devnet:
        write_address_book(devnet.book, out / "book.json")
        progress(f"scan: reading {', '.join(p.name for p in chosen)} at block {devnet.w3.eth.block_number}")
        with progress_bars() as bars:
            snapshot = scan(devnet.url, chosen, book=devnet.book, cache_dir=None,
                            progress=lambda label, done, total: bars.update(f"scan {label}", done, total))
        snapshot.meta["devnet_scenario"] = spec.name
        # the devnet's pool-less assets (Lyra's synths) trade on the scan's centralised-depth default
        # (snapshot.meta["assumed_depth"]), which every later command (simulate, sweep) reads too
        snapshot.write(out / "snapshot")
        progress(f"scan: {len(snapshot.positions)} positions, {len(snapshot.options)} options")
        progress("graph: the collateral graph and its exposure metrics (graph.json, exposure.json)")
        graph_to_dir(out / "snapshot", out)
        names = []
        shocks = default_scenarios(snapshot)
        with progress_bar("engine: shocks", len(shocks)) as bar:
            for shock in shocks:
                result = simulate(snapshot, shock)
                result.write(out / "scenarios" / shock.name)
                names.append(shock.name)
                bar.advance()
                progress(f"engine: {shock.name}: ${result.total_liquidated_usd:,.0f} liquidated, "
                         f"{result.stop_reason} after {len(result.rounds)} rounds")
        headline = HEADLINE if HEADLINE in names else names[0]
        for item in (out / "scenarios" / headline).iterdir():
            shutil.copy2(item, out / item.name)
        write_run_index(out, headline=headline, scenarios=names)
        if replay_shock and REPLAYED in names:
            _replay_into(out, devnet, snapshot, REPLAYED, chosen, progress)
    _sweep_into(out, progress)  # offline, on the written snapshot: the devnet is already stopped
    progress("report: report.html, figures/ and summary.md")
    report = write_report(out)
    progress(f"demo finished in {time.monotonic() - started:.0f}s")
    return report


def _sweep_into(out: Path, progress: Callable[[str], None]) -> None:
    """The demo's sweep on the written snapshot (what `contagion sweep` would read) into ``out/sweep``;
    its batch cache is temporary, so a rerun never shows results of an older engine."""
    import tempfile

    from analyzer.sweep import spec_from_dict, sweep

    snapshot = Snapshot.read(out / "snapshot")
    assets = [a for a in SWEEP_ASSETS if a in set(snapshot.assets["symbol"])]
    if not assets:
        shutil.rmtree(out / "sweep", ignore_errors=True)  # the report must not show an older run's sweep
        return
    spec = spec_from_dict({**SWEEP_SPEC, "assets": assets})
    started = time.monotonic()
    progress(f"sweep: {spec.name}: {len(spec.shocks)} shocks of {', '.join(assets)}, systemic importance, distance "
             "to cascade")
    with tempfile.TemporaryDirectory(prefix="contagion-demo-sweep-") as cache:
        sweep(snapshot, spec, out / "sweep", cache_dir=cache)
    progress(f"sweep: {', '.join(assets)} × {len(spec.shocks)} shocks, systemic and distance to cascade "
             f"in {time.monotonic() - started:.1f}s (sweep/summary.json)")


def _replay_into(out: Path, devnet, snapshot: Snapshot, name: str, chosen, progress) -> None:
    from analyzer.fidelity import write_fidelity
    from analyzer.replay import replay_and_compare

    shock = next(s for s in default_scenarios(snapshot) if s.name == name)
    progress(f"replay: executing {name} on an anvil fork of the devnet")
    fidelity = replay_and_compare(devnet.url, devnet.book, shock, chosen, progress=progress).fidelity
    write_fidelity(fidelity, out / "fidelity.json")
    progress(f"replay: fidelity {'passed' if fidelity['passed'] else 'gaps recorded'} (fidelity.json)")
