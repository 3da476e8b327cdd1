"""The feedback curve (where the loop ignites) against a hand computation, and the report's
gamma map and feedback sections."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from eth_utils import to_checksum_address

from analyzer.graph.feedback import feedback_curves
from analyzer.model import Snapshot
from tests.optionsbook import write_weth_book

USDC, X = to_checksum_address("0x" + "01" * 20), to_checksum_address("0x" + "02" * 20)
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "options" / "samples"


def test_one_short_call_on_a_linear_venue_matches_the_hand_computation():
    p0, depth_1pct, strike, years, iv, q = 2000.0, 50.0, 2000.0, 30 / 365, 0.8, 400.0
    full = 100 * depth_1pct
    assets = pd.DataFrame({"address": [USDC, X], "symbol": ["USDC", "X"], "decimals": 18,
                           "price_usd": [1.0, p0], "receipt_of": "", "iv": [math.nan, iv]})
    venues = pd.DataFrame({"protocol": "test", "venue": "lin", "asset": [X], "quote_asset": USDC, "model": "linear",
                           "params": json.dumps({"depth_1pct": depth_1pct, "price_usd": p0})})
    as_of = 1_800_000_000
    inst = pd.DataFrame({"venue": "v", "instrument": ["X-C"], "currency": "X", "asset": X, "kind": "call",
                         "strike": strike, "expiry": as_of + int(years * 365 * 86400), "as_of": as_of,
                         "open_interest": q, "mark_iv": iv, "underlying_price": p0, "dealer_position": -q,
                         "positioning": "file:test"})
    snapshot = Snapshot(meta={"chain_id": 1, "block_number": 1, "block_timestamp": as_of}, assets=assets,
                        venues=venues, option_instruments=inst)
    result = feedback_curves(snapshot, rules={}, max_fall=0.3)
    (curve,) = result["curves"]
    for k, fall in enumerate(result["falls"][:-1]):
        f = p0 * (1 - fall)
        d1 = (math.log(f / strike) + iv * iv * years / 2) / (iv * math.sqrt(years))
        gamma = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) / (f * iv * math.sqrt(years))
        hedging = q * gamma * f * f / 100                      # short gamma: dealers sell this per 1%
        # linear venue: from Q = fall·D to (fall + 1%)·D, proceeds p0 ∫ (1 − Q/D) dQ
        q0, q1 = fall * full, (fall + 0.01) * full
        depth = p0 * ((q1 - q1 * q1 / (2 * full)) - (q0 - q0 * q0 / (2 * full)))
        assert curve["hedging_usd"][k] == pytest.approx(hedging, rel=1e-9)
        assert curve["depth_usd"][k] == pytest.approx(depth, rel=1e-8)
        assert curve["ratio"][k] == pytest.approx(hedging / depth, rel=1e-8)
    ratios = np.array(curve["ratio"][:-1])
    first = int(np.flatnonzero(ratios >= 1)[0]) if (ratios >= 1).any() else None
    assert curve["ignition_fall"] == (result["falls"][first] if first is not None else None)


@pytest.mark.parametrize("net_gamma", [-40.0, 15.0])
def test_a_hedger_known_only_by_its_gamma_sells_its_linear_hedge(net_gamma):
    """A ``hedgers`` row with no option rows (the engine hedges it as ``sold = net_gamma × ΔS``) sells
    ``−net_gamma × S² / 100`` per 1% move at the level S: short gamma sells into the fall, long buys."""
    p0, depth_1pct = 1500.0, 80.0
    full = 100 * depth_1pct
    assets = pd.DataFrame({"address": [USDC, X], "symbol": ["USDC", "X"], "decimals": 18,
                           "price_usd": [1.0, p0], "receipt_of": "", "iv": [math.nan, 0.6]})
    venues = pd.DataFrame({"protocol": "test", "venue": "lin", "asset": [X], "quote_asset": USDC, "model": "linear",
                           "params": json.dumps({"depth_1pct": depth_1pct, "price_usd": p0})})
    hedgers = pd.DataFrame({"protocol": "dealers", "market": "m", "asset": [X], "net_delta": 0.0,
                            "net_gamma": net_gamma, "net_vega": 0.0, "hedge_position": 0.0})
    snapshot = Snapshot(meta={"chain_id": 1, "block_number": 1, "block_timestamp": 1}, assets=assets,
                        venues=venues, hedgers=hedgers)
    result = feedback_curves(snapshot, rules={}, max_fall=0.2)
    (curve,) = result["curves"]
    for k, fall in enumerate(result["falls"][:-1]):
        level = p0 * (1 - fall)
        q0, q1 = fall * full, (fall + 0.01) * full
        depth = p0 * ((q1 - q1 * q1 / (2 * full)) - (q0 - q0 * q0 / (2 * full)))
        assert curve["hedging_usd"][k] == pytest.approx(-net_gamma * level * level / 100, rel=1e-12)
        assert curve["ratio"][k] == pytest.approx(-net_gamma * level * level / 100 / depth, rel=1e-8)


def test_the_report_shows_the_gamma_map_and_where_the_loop_ignites(tmp_path):
    from analyzer.options.imports import import_options
    snap = write_weth_book(tmp_path / "snap", 300, seed=11)
    files = [SAMPLES / "deribit-ETH-get_instruments.json", SAMPLES / "deribit-ETH-get_book_summary_by_currency.json"]
    import_options(files, snap)
    cli = [sys.executable, "-m", "analyzer.cli"]
    for args in (["simulate", str(snap), "--shock", "WETH=-10%", "--out", str(tmp_path / "run")],
                 ["graph", str(snap), "--out", str(tmp_path / "run")],
                 ["report", str(tmp_path / "run"), "--snapshot", str(snap)]):
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="gamma-map"' in html and "convention:calls-long-puts-short" in html
    # the deribit total equals an independent Black-76 sum over the sample (dealers long calls, short puts)
    spec = {r["instrument_name"]: r for r in json.loads(files[0].read_text())["result"]}
    total = 0.0
    for r in json.loads(files[1].read_text())["result"]:
        s = spec[r["instrument_name"]]
        t = (s["expiration_timestamp"] - r["creation_timestamp"]) / 1000 / (365 * 86400)
        f, v, k = r["underlying_price"], r["mark_iv"] / 100, s["strike"]
        d1 = (math.log(f / k) + v * v * t / 2) / (v * math.sqrt(t))
        gamma = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) / (f * v * math.sqrt(t))
        total += (1 if s["option_type"] == "call" else -1) * r["open_interest"] * gamma * f * f / 100
    shown = float(html.split('data-key="gex.WETH.deribit" data-value="')[1].split('"')[0])
    assert shown == pytest.approx(total, rel=1e-9)
    assert 'id="feedback"' in html and 'data-key="ignition.WETH"' in html
    assert (tmp_path / "run" / "figures" / "gamma_map.png").is_file()
    assert (tmp_path / "run" / "figures" / "feedback_curve.png").is_file()
    exposure = json.loads((tmp_path / "run" / "exposure.json").read_text())
    assert {c["symbol"] for c in exposure["feedback"]["curves"]} >= {"WETH"}
