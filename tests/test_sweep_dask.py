"""Acceptance: the same sweep gives identical results in-process, on a local Dask cluster of 2 worker
processes, and through a separately started ``dask scheduler`` + ``dask worker`` on loopback; an
interrupted sweep resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analyzer.sweep import spec_from_dict, sweep
from analyzer.sweep.run import snapshot_key
from benchmarks.synthetic import synthetic_snapshot

REPO = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).parent / "dask"


def _spec():
    return spec_from_dict({
        "name": "acceptance", "assets": ["TKN1", "TKN2", "TKN3"], "shocks": "-10%:-50%:20%", "joint": True,
        "batch_size": 4,
        "montecarlo": {"paths": 6, "seed": 11, "assets": ["TKN1", "TKN2"], "covariance": [[0.04, 0.01], [0.01, 0.09]]},
        "systemic": {"shock": "-30%", "accounts": 3},
        "distance": {"assets": ["TKN1"], "tolerance": 0.05}})


@pytest.fixture(scope="module")
def snapshot():
    return synthetic_snapshot(1500, n_assets=5, seed=4, receipt=True)


@pytest.fixture(scope="module")
def reference(snapshot, tmp_path_factory):
    out = tmp_path_factory.mktemp("inprocess")
    sweep(snapshot, _spec(), out, progress=False)
    return out


def _same(out_a: Path, out_b: Path) -> None:
    a, b = pd.read_parquet(out_a / "results.parquet"), pd.read_parquet(out_b / "results.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(out_a / "distance.parquet"),
                                  pd.read_parquet(out_b / "distance.parquet"), check_exact=True)
    assert json.loads((out_a / "summary.json").read_text()) == json.loads((out_b / "summary.json").read_text())


def test_reference_sweep_has_every_kind(reference):
    table = pd.read_parquet(reference / "results.parquet")
    assert table["scenario_id"].tolist() == list(range(len(table)))
    assert {"baseline", "grid", "static", "joint", "montecarlo", "systemic_asset", "systemic_protocol"} \
        <= set(table["kind"])
    assert table["liquidated_usd"].max() > 0      # the sweep reaches the liquidation tail


def test_two_local_workers_give_identical_results(snapshot, reference, tmp_path):
    sweep(snapshot, _spec(), tmp_path, workers=2, progress=False)
    _same(reference, tmp_path)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_separately_started_scheduler_and_worker_give_identical_results(snapshot, reference, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), DASK_DISTRIBUTED__WORKER__DAEMON="False")
    common = {"cwd": REPO, "env": env, "start_new_session": True, "stdout": subprocess.DEVNULL,
              "stderr": subprocess.DEVNULL}
    processes = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file)], **common)]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            assert processes[0].poll() is None, "dask scheduler exited"
            assert time.monotonic() < deadline, "dask scheduler did not start in 30 s"
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        processes.append(subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--host", "127.0.0.1", "--no-dashboard",
                                           "--local-directory", str(tmp_path / "worker")], **common))
        from distributed import Client

        with Client(address, timeout="20s") as client:
            client.wait_for_workers(1, timeout=30)
        out = tmp_path / "out"
        sweep(snapshot, _spec(), out, scheduler=address, progress=False)
        _same(reference, out)
        with Client(address, timeout="20s") as client:
            # the worker prepared the shipped snapshot once and kept it for every batch
            prepared = client.run(_prepared_keys)
        # one prepared snapshot per worker, keyed by the snapshot (and the venue models it was built with)
        assert [[key.split("|")[0] for key in keys] for keys in prepared.values()] == [[snapshot_key(snapshot)]]
    finally:
        for process in reversed(processes):
            _stop(process)


def _prepared_keys() -> list[str]:
    from analyzer.sweep import run

    return sorted(run._PREPARED)


class _Interrupt(Exception):
    pass


def test_interrupted_sweep_resumes_where_it_stopped(snapshot, reference, tmp_path):
    cache = tmp_path / "cache"

    def stop_after_three(stored: int) -> None:
        if stored == 3:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        sweep(snapshot, _spec(), tmp_path / "out", cache_dir=cache, progress=False, on_batch=stop_after_three)
    assert not (tmp_path / "out" / "results.parquet").exists()
    kept = sorted(p.name for p in next(cache.iterdir()).iterdir() if p.name.startswith(("batch-", "distance-")))
    assert len(kept) == 3
    ran = []
    sweep(snapshot, _spec(), tmp_path / "out", cache_dir=cache, progress=False, on_batch=ran.append)
    table = pd.read_parquet(reference / "results.parquet")
    total_tasks = -(-len(table) // 4) + 1          # batches of 4 + one distance task
    assert len(ran) == total_tasks - 3             # the three stored tasks were not run again
    _same(reference, tmp_path / "out")
    ran.clear()
    sweep(snapshot, _spec(), tmp_path / "again", cache_dir=cache, progress=False, on_batch=ran.append)
    assert ran == []                               # a finished sweep reruns from its cache alone


def test_a_changed_spec_does_not_reuse_the_cache(snapshot, tmp_path):
    cache = tmp_path / "cache"
    small = spec_from_dict({"assets": ["TKN1"], "shocks": [-0.2], "static": False})
    other = spec_from_dict({"assets": ["TKN1"], "shocks": [-0.3], "static": False})
    sweep(snapshot, small, tmp_path / "a", cache_dir=cache, progress=False)
    ran = []
    sweep(snapshot, other, tmp_path / "b", cache_dir=cache, progress=False, on_batch=ran.append)
    assert ran == [1]
    assert len(list(cache.iterdir())) == 2
