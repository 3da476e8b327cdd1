"""`contagion report RUN` after `simulate --out RUN` finds the snapshot simulate read, or stops."""

from __future__ import annotations

import shutil

import pytest

from analyzer.cli import main
from benchmarks.synthetic import synthetic_snapshot


def test_report_finds_the_snapshot_simulate_used_or_stops_with_one_line(tmp_path, capsys):
    snap = synthetic_snapshot(200, n_markets=1, n_assets=3, seed=2).write(tmp_path / "elsewhere" / "snap")
    run = tmp_path / "run"
    assert main(["simulate", str(snap), "--shock", "TKN1=-30%", "--out", str(run)]) == 0
    assert not (run / "snapshot").exists()
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "not recorded" not in html and "TKN1" in html
    shutil.rmtree(snap)
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "is gone" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args", [["--snapshot"]])
def test_an_explicit_snapshot_still_wins(tmp_path, args):
    snap = synthetic_snapshot(200, n_markets=1, n_assets=3, seed=2).write(tmp_path / "snap")
    run = tmp_path / "run"
    assert main(["simulate", str(snap), "--shock", "TKN1=-30%", "--out", str(run)]) == 0
    moved = shutil.move(str(snap), str(tmp_path / "moved"))
    assert main(["report", str(run), *args, moved]) == 0
