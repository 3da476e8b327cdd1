"""report.html in a real browser: Debian's headless Chromium driven by Playwright (no browser is
downloaded; ``.ci/run`` installs ``chromium``). Fails on any console error, page error or failed
request; checks that the graph drew its nodes and that clicking a node shows its detail.

Outside CI (``CI`` unset) the test skips when /usr/bin/chromium is absent; in CI it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analyzer.report import write_report
from tests.test_report import A, D, build_run, usd_text

CHROMIUM = Path(os.environ.get("CONTAGION_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_or_skip() -> Path:
    if CHROMIUM.is_file():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} not found (install Debian's chromium); this test never skips in CI")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    chromium_or_skip()
    run_dir = build_run(tmp_path_factory.mktemp("browser-run"))
    return write_report(run_dir)


@contextlib.contextmanager
def open_in_chromium(path: Path, profile: Path):
    """``(tab, problems)``: ``path`` loaded in headless Chromium, offline; ``problems`` collects
    console errors, page errors, failed requests and any request that is not file: or data:."""
    chromium = chromium_or_skip()
    from playwright import sync_api  # a dev dependency (pyproject [dev]); never downloads a browser

    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, offline=True)
        try:
            tab = context.new_page()
            tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                   if msg.type == "error" else None)
            tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            tab.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}"))
            tab.on("request", lambda req: None if req.url.startswith(("file:", "data:"))
                   else problems.append(f"network request: {req.url}"))
            tab.goto(path.as_uri(), wait_until="load")
            yield tab, problems
        finally:
            context.close()


@pytest.fixture
def page(report, tmp_path):
    with open_in_chromium(report, tmp_path / "profile") as (tab, problems):
        tab.wait_for_selector("body[data-graph-ready]", timeout=30_000)
        yield tab, problems


def node_on_screen(tab, node_id: str) -> tuple[float, float]:
    tab.locator("#cy").scroll_into_view_if_needed()
    box = tab.locator("#cy").bounding_box()
    pos = tab.evaluate("id => window.contagionGraph.getElementById(id).renderedPosition()", node_id)
    return box["x"] + pos["x"], box["y"] + pos["y"]


def click_node(tab, node_id: str) -> None:
    """A real mouse click at the node's position on screen."""
    tab.mouse.click(*node_on_screen(tab, node_id))


def test_report_renders_in_chromium_and_a_click_shows_a_node(page, report, tmp_path):
    tab, problems = page
    nodes = tab.evaluate("window.contagionGraph.nodes().length")
    assert nodes >= 5, "the protocol-level graph drew too few nodes"
    assert tab.evaluate("window.contagionGraph.nodes('[kind = \"account\"]').length") == 0
    # nodes were laid out inside the canvas, not piled at the origin
    spread = tab.evaluate("(() => { const b = window.contagionGraph.nodes().renderedBoundingBox(); return b.w * b.h; })()")
    assert spread > 10_000

    tab.mouse.move(*node_on_screen(tab, "protocol:aave-v3"))
    tip = tab.locator("#graph-tooltip")
    tip.wait_for(state="visible")
    usd = tab.evaluate("window.contagionGraph.getElementById('protocol:aave-v3').data('usd')")
    assert tip.inner_text() == f"aave-v3 (protocol): {usd_text(usd)}" and usd > 0

    click_node(tab, "protocol:aave-v3")
    detail = tab.locator("#node-detail")
    assert detail.locator("h3").inner_text() == "aave-v3"
    assert "What liquidated it" in detail.inner_text() and "liquidation:aave-v3" in detail.inner_text()

    tab.check("#show-accounts")
    tab.wait_for_function("window.contagionGraph.nodes('[kind = \"account\"]').length === 4")
    click_node(tab, f"account:{D}")
    text = detail.inner_text()
    assert "Positions" in text and "WETH" in text and "$300,000.00" in text
    outcome = pd.read_parquet(report.parent / "accounts.parquet").set_index("account").loc[D]
    assert outcome["liquidated_usd"] > 0
    assert f"aave-v3: {usd_text(outcome['liquidated_usd'])} liquidated from round {outcome['first_round']}" in text
    assert f"caused by {outcome['cause']}" in text
    tab.hover("#cy", position={"x": 5, "y": 5})
    click_node(tab, f"account:{A}")
    assert "USDC" in detail.inner_text()

    for section in ("graph", "curves", "timeline", "matrix", "gamma", "accounts", "bad-debt", "fidelity", "provenance"):
        assert tab.locator(f"#{section}").is_visible()
    assert tab.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shot = tab.screenshot(path=str(report.parent / "report.png"), full_page=False)
    assert len(shot) > 10_000
    out = os.environ.get("CONTAGION_SCREENSHOT_DIR")
    if out:
        shutil.copy(report.parent / "report.png", Path(out) / "report.png")
    assert problems == []
