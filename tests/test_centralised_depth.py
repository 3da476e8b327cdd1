"""Every scanned snapshot can be simulated: assets with no on-chain venue get the documented
centralised-depth default (square-root law), named in the snapshot's meta and by every command."""

from __future__ import annotations

import json
import math
import tomllib

import pytest

from analyzer.engine.centralised import PARAMETER_FILE, PROTOCOL, load_parameters, with_default_depth
from analyzer.engine.impact import make_venue
from analyzer.errors import ContagionError
from analyzer.model import Snapshot
from tests.conftest import requires_anvil
from tests.test_cli import contagion

WETH, USDC, AWETH, FOO = (f"0x{n:040x}" for n in (1, 2, 3, 4))


def small_snapshot() -> Snapshot:
    assets = [{"address": WETH, "symbol": "WETH", "decimals": 18, "price_usd": 2000.0, "receipt_of": ""},
              {"address": USDC, "symbol": "USDC", "decimals": 6, "price_usd": 1.0, "receipt_of": ""},
              {"address": AWETH, "symbol": "aWETH", "decimals": 18, "price_usd": 2000.0,
               "receipt_of": f"lender:{WETH}"},
              {"address": FOO, "symbol": "FOO", "decimals": 18, "price_usd": 4.0, "receipt_of": ""}]
    positions = [{"protocol": "lender", "market": "m", "account": "0xa", "asset": asset, "side": side,
                  "amount": 1.0, "raw": "1"}
                 for asset, side in ((WETH, "collateral"), (FOO, "collateral"), (AWETH, "collateral"),
                                     (USDC, "debt"))]
    return Snapshot(meta={"chain_id": 1}, assets=assets, positions=positions)


def test_pool_less_collateral_gets_the_parameter_files_square_root_law():
    file = tomllib.loads(PARAMETER_FILE.read_text())
    snapshot = with_default_depth(small_snapshot())
    rows = snapshot.venues.set_index("asset")
    # the collateral a cascade sells gets a venue; the receipt (redeemed) and the debt asset do not
    assert sorted(rows.index) == sorted([WETH, FOO])
    assert set(rows["protocol"]) == {PROTOCOL}
    assumed = snapshot.meta["assumed_depth"]
    assert assumed["WETH"]["source"] == file["assets"]["WETH"]["source"] and not assumed["WETH"]["generic"]
    assert assumed["FOO"]["generic"] and assumed["FOO"]["sigma"] == file["default"]["sigma"]
    for asset, symbol, price, entry in ((WETH, "WETH", 2000.0, file["assets"]["WETH"]), (FOO, "FOO", 4.0, file["default"])):
        sold = 0.01 * entry["daily_volume_usd"] / price   # 1% of a day's volume
        row = rows.loc[asset]
        result = make_venue(row["model"], asset, row["quote_asset"], json.loads(row["params"]),
                            asset_price_usd=price).trade(sold)
        # square-root law from rest: p = p0 (1 - Y σ sqrt(Q/V)), average p0 (1 - 2/3 Y σ sqrt(Q/V))
        impact = entry["y"] * entry["sigma"] * math.sqrt(0.01)
        assert result.price_after == pytest.approx(price * (1 - impact), rel=1e-12), symbol
        assert result.amount_out == pytest.approx(sold * price * (1 - 2 / 3 * impact), rel=1e-12), symbol


def test_a_snapshot_with_venues_for_everything_is_left_as_it_was():
    snapshot = with_default_depth(with_default_depth(small_snapshot()))
    assert len(snapshot.venues) == 2


def test_every_parameter_entry_names_its_source(tmp_path):
    by_symbol, default = load_parameters()
    assert {"WETH", "WBTC", "wstETH", "USDC"} <= set(by_symbol)
    assert all(entry.source for entry in [*by_symbol.values(), default])
    bad = tmp_path / "depth.toml"
    bad.write_text('[default]\nsigma = 0.04\ndaily_volume_usd = 1e6\n')
    with pytest.raises(ContagionError, match="names its source"):
        load_parameters(bad)
    bad.write_text('[default]\nsigma = -1\ndaily_volume_usd = 1e6\nsource = "x"\n')
    with pytest.raises(ContagionError, match="sigma must be a positive number"):
        load_parameters(bad)


def test_an_order_book_snapshot_gives_its_asset_the_depth_of_its_levels(tmp_path):
    """fixtures/order_books/example.toml: FOO's bids walked level by level, as a market sell order."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "fixtures" / "order_books" / "example.toml"
    snapshot = with_default_depth(small_snapshot(), path)
    row = snapshot.venues.set_index("asset").loc[FOO]
    assert row["model"] == "order_book" and snapshot.meta["assumed_depth"]["FOO"]["model"] == "order_book"
    venue = make_venue(row["model"], FOO, "", json.loads(row["params"]), asset_price_usd=4.0)
    assert venue.mid_price() == pytest.approx(4.0)
    sold = venue.trade(100_000.0)       # the first two levels, then 40,000 of the third
    assert sold.amount_out == pytest.approx(3.99 * 10_000 + 3.95 * 50_000 + 3.80 * 40_000, rel=1e-15)
    assert sold.price_after == 3.80
    assert venue.trade(-160_000.0).amount_in == pytest.approx(3.80 * 40_000 + 3.95 * 50_000 + 3.99 * 10_000
                                                               + 4.01 * 10_000 + 4.05 * 50_000, rel=1e-15)
    with pytest.raises(ContagionError, match="cannot buy"):
        venue.trade(-10_000_000.0)
    bad = tmp_path / "book.toml"
    bad.write_text(path.read_text().replace("[3.95, 50000.0]", "[4.5, 50000.0]"))
    with pytest.raises(ContagionError, match="strictly decreasing"):
        with_default_depth(small_snapshot(), bad)


@requires_anvil
@pytest.mark.slow
def test_scanned_snapshots_simulate_sweep_and_graph_naming_the_assumed_depth(devnet, tmp_path):
    """The README's workflow on the devnet: a lending-only scan, a scan without venues and a full
    scan each simulate; the full scan also sweeps and graphs; each command names the assumed depth."""
    from analyzer.devnet.build import write_address_book

    book = tmp_path / "book.json"
    write_address_book(devnet.book, book)
    for name, extra in (("aave", ["--protocols", "aave-v3"]), ("bare", ["--protocols", "aave-v3", "--no-venues"]),
                        ("full", [])):
        snap = tmp_path / name / "snapshot"
        proc = contagion("scan", "--rpc", devnet.url, "--book", str(book), "--no-cache", "--out", str(snap), *extra)
        assert proc.returncode == 0, proc.stderr
        meta = json.loads((snap / "meta.json").read_text())
        snapshot = Snapshot.read(snap)
        if name == "aave":   # the venue plugin ran although only aave-v3 was asked for
            assert "uniswap-v3" in meta["protocols"] and (snapshot.venues["protocol"] == "uniswap-v3").any()
        if name == "bare":   # no pools read: every collateral asset trades on the centralised default
            assert set(snapshot.venues["protocol"]) == {PROTOCOL} and "WETH" in meta["assumed_depth"]
        proc = contagion("simulate", str(snap), "--shock", "WETH=-30%", "--out", str(tmp_path / name / "sim"))
        assert proc.returncode == 0, proc.stderr
        cascade = json.loads((tmp_path / name / "sim" / "cascade.json").read_text())
        assert cascade["snapshot"]["assumed_depth"] == meta.get("assumed_depth")
        for symbol in meta.get("assumed_depth") or {}:
            assert symbol in proc.stderr
    assumed = json.loads((tmp_path / "full" / "snapshot" / "meta.json").read_text())["assumed_depth"]
    assert {"sETH", "sUSD"} <= set(assumed)   # Lyra's synths: no pool on the devnet
    snap = str(tmp_path / "full" / "snapshot")
    for args in (("graph", snap), ("sweep", snap, "--assets", "WETH", "--shocks=-20%:-30%:10%",
                                   "--out", str(tmp_path / "full" / "sweep"))):
        proc = contagion(*args)
        assert proc.returncode == 0, proc.stderr
        assert "centralised depth assumed" in proc.stderr and "sETH" in proc.stderr
