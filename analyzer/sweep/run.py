"""Running a sweep: in-process, on a local Dask cluster we start and stop, or on an existing one.

The snapshot goes to the workers once (``client.scatter(..., broadcast=True)``); each worker process
prepares it once (:func:`analyzer.engine.prepare.prepare`, cached by the snapshot's content key)
and then runs batches of scenarios against that :class:`Prepared`. A batch is the unit of work, of
caching and of resumption: each finished batch is written atomically to
``<cache>/<snapshot key>-<spec key>/batch-NNNNNN.parquet`` as it arrives, and a rerun of the same
sweep on the same snapshot, by the same model code, skips the batches already there (the spec key
includes :func:`code_key`: after a change to the engine or a rule, nothing old is reused). Rows are sorted by ``scenario_id`` at
the end, so the table does not depend on which worker finished first.

Outputs in ``out_dir`` (each atomic): ``results.parquet`` (analyzer/sweep/results.py),
``distance.parquet``, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analyzer.atomic import atomic_write_bytes, atomic_write_text, check_output_dir, final_path, staged_folder
from analyzer.console import progress_bar
from analyzer.errors import ContagionError
from analyzer.paths import plugin_packages, source_digest
from analyzer.scenarios import ForcedSale, ShockScenario, scenario_from_dict
from analyzer.sweep import grid, results, systemic

_PREPARED: dict[str, Any] = {}   # per process: snapshot key -> Prepared (a worker prepares a snapshot once)


def snapshot_key(snapshot) -> str:
    """SHA-256 of a snapshot's content (meta and every table), the same in every process."""
    from analyzer.model import TABLES

    digest = hashlib.sha256(json.dumps(snapshot.meta, sort_keys=True, default=str).encode())
    for name in TABLES:
        table = snapshot.table(name)
        digest.update(name.encode() + b"|" + ",".join(map(str, table.columns)).encode())
        digest.update(pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def code_key() -> str:
    """SHA-256 of everything a sweep result depends on besides its inputs: the tool version and the
    source of the engine, the sweep, the scenarios, the snapshot model, the plugin contract and the
    whole package of every registered plugin (its rules and every module they import: exact
    integer math, profiles, parameters, pricing)."""
    from protocols import plugins

    return source_digest(["analyzer.engine", "analyzer.sweep", "analyzer.scenarios", "analyzer.model",
                          "protocols.base", *plugin_packages(plugins().values())])


def _prepared(snapshot, key: str, base: dict):
    """The engine's arrays of ``snapshot``, with the venue models of the spec's ``[scenario.venues.*]``."""
    from analyzer.engine.prepare import prepare

    venue_models = scenario_from_dict(base, "sweep spec: [scenario]").venue_models
    key = f"{key}|{json.dumps(venue_models, sort_keys=True, default=str)}"
    if key not in _PREPARED:
        _PREPARED.clear()       # one snapshot per worker at a time: a Prepared of 100k positions is ~60 MB
        _PREPARED[key] = prepare(snapshot, venue_models=venue_models or None)
    return _PREPARED[key]


def build_scenario(base: dict, row: dict) -> ShockScenario:
    """The ShockScenario of an expanded row: the spec's base scenario plus the row's moves."""
    scenario = scenario_from_dict(base, "sweep spec: [scenario]")
    return replace(scenario, name=row["label"], price_shocks=dict(row["price_shocks"]),
                   forced_sales=[ForcedSale(a, p) for a, p in row["forced_sales"]],
                   price_impact=bool(row["price_impact"]) and scenario.price_impact)


def run_batch(snapshot, key: str, base: dict, rows: list[dict]) -> tuple[list[str], list[dict]]:
    """Run ``rows`` on this process's Prepared; returns (protocols, result rows)."""
    from analyzer.engine import simulate

    prep = _prepared(snapshot, key, base)
    return list(prep.protocols), [results.result_row(r, simulate(prep, build_scenario(base, r)), prep.protocols)
                                  for r in rows]


def run_distance(snapshot, key: str, base: dict, asset: str, config: dict) -> dict:
    """Distance to cascade of one asset (bisection on the engine, :mod:`analyzer.sweep.systemic`)."""
    from analyzer.engine import simulate

    prep = _prepared(snapshot, key, base)
    scenario = scenario_from_dict(base, "sweep spec: [scenario]")

    def bad_debt_at(move: float) -> float:
        shocks = {asset: move} if move else {}
        return sum(simulate(prep, replace(scenario, name=f"distance {asset}", price_shocks=shocks)).bad_debt_usd.values())

    return systemic.distance_to_cascade(bad_debt_at, asset, config)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """None (in-process), a client of a LocalCluster we own, or a client of ``scheduler``."""
    if not workers and not scheduler:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        if not scheduler.startswith(("tcp://", "tls://", "inproc://")):
            raise ContagionError(f'--scheduler "{scheduler}": expected an address like tcp://127.0.0.1:8786')
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ContagionError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None
        with client:
            yield client
        return
    # loopback only, no dashboard: a sweep must not open ports beyond this machine. The scheduler
    # serves its HTTP routes even without a dashboard, on 8787 unless told otherwise: a free
    # loopback port instead, so that two clusters on one machine do not warn about the port. A
    # failed task is raised here, on the client, as one error line: the workers' own logging of it
    # (a traceback per task), their teardown heartbeats and the cluster's start-up lines (which
    # reach our console through the root logger) are silenced
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=logging.CRITICAL,
                          scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"}
                          ) as cluster, Client(cluster) as client:
            yield client
    finally:
        quiet.setLevel(level)


def _execute(client, snapshot, key: str, tasks: list[tuple]) -> Iterator[tuple[int, Any]]:
    """Yield (task index, result) as tasks finish. ``tasks``: (function, *arguments after the key)."""
    if client is None:
        for i, (fn, *args) in enumerate(tasks):
            yield i, fn(snapshot, key, *args)
        return
    from distributed import as_completed

    shipped = client.scatter(snapshot, broadcast=True, hash=False)   # once, not per batch
    futures = {client.submit(fn, shipped, key, *args, pure=False): i for i, (fn, *args) in enumerate(tasks)}
    try:
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        client.cancel(list(futures))


def sweep(snapshot, spec: grid.SweepSpec, out_dir: str | Path, *, workers: int | None = None,
          scheduler: str | None = None, cache_dir: str | Path | None = None, progress: bool = True,
          on_batch: Callable[[int], None] | None = None) -> Path:
    """Run a stress sweep on ``snapshot`` and write its results.

    Parameters
    ----------
    snapshot : Snapshot
        The scan to stress.
    spec : SweepSpec
        Grids, joint moves, Monte Carlo paths, systemic importance and distance to cascade
        (:mod:`analyzer.sweep.grid`).
    out_dir
        Folder for ``results.parquet``, ``distance.parquet`` and ``summary.json`` (written at once).
    workers
        A local Dask cluster of that many single-threaded worker processes (started and stopped
        here); with neither this nor ``scheduler``: in-process.
    scheduler
        The address of a running Dask scheduler (``tcp://HOST:PORT``).
    cache_dir
        Root of the batch cache (default ``.<out_dir name>.sweep-cache`` beside ``out_dir``, so
        that the run folder itself appears complete or not at all); an interrupted sweep resumes.
    progress
        Show a progress bar (on a terminal, or forced: :mod:`analyzer.console`).
    on_batch
        Called with ``n`` (tasks stored so far in this run) after each task is stored.

    Returns
    -------
    Path
        The path of ``summary.json``.

    Raises
    ------
    ContagionError
        The spec names an asset the snapshot does not hold, or the Dask scheduler does not answer.
    """
    out_dir = Path(out_dir)
    rows = grid.expand(spec, snapshot)
    assets = spec.assets or grid.default_assets(snapshot)
    dconf = systemic.distance_config(spec.distance, assets, f"{spec.where}: [distance]") if spec.distance else None
    skey = snapshot_key(snapshot)
    spec_key = hashlib.sha256(f"v{results.RESULTS_VERSION}|{code_key()}|{grid.spec_fingerprint(spec, rows)}"
                              .encode()).hexdigest()
    check_output_dir(out_dir)
    cache_root = Path(cache_dir or out_dir.parent / f".{out_dir.name}.sweep-cache")
    cache = cache_root / f"{skey[:16]}-{spec_key[:16]}"
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return _run_and_write(snapshot, spec, rows, dconf, skey, spec_key, cache, out_dir, workers, scheduler,
                              progress, on_batch)
    except BaseException:
        # a refused or failed sweep leaves no empty cache behind (a partial one is kept: it resumes)
        for folder in (cache, cache_root):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _run_and_write(snapshot, spec, rows, dconf, skey, spec_key, cache: Path, out_dir: Path, workers, scheduler,
                   progress, on_batch) -> Path:
    batches = [rows[i:i + spec.batch_size] for i in range(0, len(rows), spec.batch_size)]
    files = [cache / f"batch-{i:06d}.parquet" for i in range(len(batches))]
    tasks: list[tuple] = []
    targets: list[Path] = []
    distance_assets = dconf["assets"] if dconf else []
    distance_files = [cache / f"distance-{j:04d}.json" for j in range(len(distance_assets))]
    # bisections first: each is a dozen sequential engine runs, the longest tasks of a sweep
    for j, asset in enumerate(distance_assets):
        if not distance_files[j].is_file():
            tasks.append((run_distance, spec.base, asset, dconf))
            targets.append(distance_files[j])
    for i, batch in enumerate(batches):
        if not files[i].is_file():
            tasks.append((run_batch, spec.base, batch))
            targets.append(files[i])
    protocols_file = cache / "protocols.json"
    total = len(batches) + len(distance_assets)
    with progress_bar(f"sweep {spec.name}", total, enabled=progress) as bar:
        bar.update(total - len(tasks))
        if tasks:
            with _client(workers, scheduler) as client:
                for stored, (i, value) in enumerate(_execute(client, snapshot, skey, tasks), start=1):
                    if targets[i].suffix == ".json":
                        atomic_write_text(targets[i], json.dumps(value, sort_keys=True) + "\n")
                    else:
                        protocols, batch_rows = value
                        if not protocols_file.is_file():
                            atomic_write_text(protocols_file, json.dumps(protocols) + "\n")
                        atomic_write_bytes(targets[i], _parquet_bytes(results.results_frame(batch_rows, protocols)))
                    bar.advance()
                    if on_batch is not None:
                        on_batch(stored)
    protocols = json.loads(protocols_file.read_text())
    table = results.results_frame(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).to_dict("records"),
                                  protocols)
    distance = [json.loads(f.read_text()) for f in distance_files]
    dist_frame = systemic.distance_table(distance)
    dist_frame["bracket"] = dist_frame["bracket"].map(json.dumps)
    doc = results.summary(table, distance, name=spec.name, snapshot_key=skey, spec_key=spec_key, protocols=protocols)
    with staged_folder(out_dir) as stage:   # the three files of this sweep, all at once
        atomic_write_bytes(stage / "results.parquet", _parquet_bytes(table))
        atomic_write_bytes(stage / "distance.parquet", _parquet_bytes(dist_frame))
        written = atomic_write_text(stage / "summary.json",
                                    json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return final_path(written, stage, out_dir)


def sweep_to_dir(snapshot_dir: str | Path, spec: grid.SweepSpec | str | Path | dict, out_dir: str | Path,
                 workers: int | None = None, scheduler: str | None = None) -> Path:
    """``contagion sweep SNAPSHOT``: read the snapshot, run the sweep ``spec`` (a SweepSpec, a TOML
    path, or a TOML-shaped dict), write results.parquet, distance.parquet and summary.json into
    ``out_dir``; returns the path of summary.json."""
    from analyzer.model import Snapshot

    if workers is not None and workers < 1:
        raise ContagionError(f"--workers {workers}: expected a positive number of worker processes")
    if workers and scheduler:
        raise ContagionError("--workers and --scheduler: give one (local cluster) or the other (existing cluster)")
    check_output_dir(out_dir)
    if isinstance(spec, dict):
        spec = grid.spec_from_dict(spec)
    elif not isinstance(spec, grid.SweepSpec):
        spec = grid.load_spec(spec)
    return sweep(Snapshot.read(snapshot_dir), spec, out_dir, workers=workers, scheduler=scheduler)
