"""The ``contagion`` command: thin over the library functions.

Every user-caused failure is a ContagionError: printed as one ``error: ...`` line on stderr, exit
status 2, no traceback and no partial output.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from analyzer import __version__
from analyzer.cli_options import options_app
from analyzer.console import configure_logging
from analyzer.errors import ContagionError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="On-chain DeFi contagion analysis: scan protocols, build the collateral graph, "
                       "propagate shocks, replay them on an anvil fork, report.")
devnet_app = typer.Typer(no_args_is_help=True, help="A local chain with the real protocol contracts.")
app.add_typer(devnet_app, name="devnet")
app.add_typer(options_app, name="options")
log = logging.getLogger("analyzer.cli")
# RPC URLs may come from the environment, out of every process's arguments (`ps` shows those)
RPC_ENV, FORK_ENV = "CONTAGION_RPC_URL", "CONTAGION_FORK_URL"
URL_OPTIONS = ("--rpc", "--fork-url")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"contagion {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More detail on stderr (repeatable).")] = 0,
    quiet: Annotated[int, typer.Option("--quiet", "-q", count=True,
                                       help="Only warnings and errors on stderr; no progress bars.")] = 0,
) -> None:
    """defi-contagion."""
    configure_logging(verbose - quiet)


def _devnet_scenario(devnet_scenario: str | None, scenario: str | None) -> str:
    """The devnet scenario of ``devnet up`` / ``demo``; ``--scenario`` there is a one-line error
    (it names a shock scenario everywhere else)."""
    if scenario is not None:
        raise ContagionError(f"--scenario names a shock scenario (simulate, replay); give the devnet's as "
                             f"--devnet-scenario {scenario}")
    return devnet_scenario or "mainnet-like"


@devnet_app.command("up")
def devnet_up(
    devnet_scenario: Annotated[str | None, typer.Option(
        "--devnet-scenario", help="Devnet scenario: a name (fixtures/scenarios) or a TOML path [default: mainnet-like].")] = None,
    scenario: Annotated[str | None, typer.Option(hidden=True)] = None,
    port: Annotated[int | None, typer.Option(help="Loopback port for the RPC (default: a free one).")] = None,
    protocols: Annotated[str | None, typer.Option(help="Comma list of protocols (default: all).")] = None,
    state_out: Annotated[Path | None, typer.Option("--state-out", help="Write the devnet's anvil state here on exit.")] = None,
    book_out: Annotated[Path | None, typer.Option("--book-out", help="Write the address book JSON here.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild instead of loading a cached devnet.")] = False,
    exit_after_start: Annotated[bool, typer.Option("--exit", help="Stop as soon as the devnet is up (for checks).")] = False,
) -> None:
    """Start a devnet, print its RPC URL and address book as JSON, run until interrupted."""
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet, write_address_book
    from protocols import parse_protocols

    if port is not None and not 1024 <= port <= 65535:
        raise ContagionError(f"--port must be within 1024..65535, got {port}")
    spec = scenario_mod.load(_devnet_scenario(devnet_scenario, scenario))
    plugins = parse_protocols(protocols)
    devnet = start_devnet(spec, plugins, port=port, use_cache=not no_cache, progress=log.info)
    with devnet:
        if state_out is not None:
            devnet.anvil.dump_state = state_out
        if book_out is not None:
            write_address_book(devnet.book, book_out)
        typer.echo(json.dumps({"rpc_url": devnet.url, "address_book": devnet.book}, indent=2, sort_keys=True))
        sys.stdout.flush()
        if exit_after_start:
            return
        log.info(f"devnet up at {devnet.url} (pid {devnet.anvil.pid}); Ctrl-C stops it")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if devnet.anvil.proc is None or devnet.anvil.proc.poll() is not None:
                    raise ContagionError(f"anvil exited: {devnet.anvil.log_tail()}")
        except KeyboardInterrupt:
            pass
    log.info("devnet stopped")


def _say_assumed_depth(snapshot_dir: Path) -> None:
    """Name, on stderr, the centralised depth the snapshot assumed for assets without a pool."""
    from analyzer.engine.centralised import describe

    meta_path = Path(snapshot_dir) / "meta.json"
    try:
        line = describe(json.loads(meta_path.read_text()).get("assumed_depth") or {})
    except (OSError, ValueError):
        return   # the command itself already read (and validated) the snapshot
    if line:
        log.info(line)


@app.command("scan")
def scan_command(
    rpc: Annotated[str | None, typer.Option("--rpc", envvar=RPC_ENV, show_envvar=False,
                                            help=f"An existing node to read (read-only); or ${RPC_ENV}.")] = None,
    fork_url: Annotated[str | None, typer.Option("--fork-url", envvar=FORK_ENV, show_envvar=False,
                                                 help=f"Start an anvil fork of this node and read it; or ${FORK_ENV}.")] = None,
    block: Annotated[int | None, typer.Option(help="Block to read (default: the latest).")] = None,
    protocols: Annotated[str | None, typer.Option(help="Comma list (default: all with an address book).")] = None,
    book: Annotated[Path | None, typer.Option(help="Address book JSON (a devnet's, from `devnet up --book-out`; "
                                                   "default: the built-in books of the chain).")] = None,
    markets: Annotated[str | None, typer.Option(help="Comma list of market names to read (default: every market "
                                                     "of the book; `contagion markets` lists them).")] = None,
    accounts: Annotated[Path | None, typer.Option(help="Account list (one address a line): skip event enumeration.")] = None,
    from_block: Annotated[int | None, typer.Option("--from-block", help="First block of event enumeration (default: each protocol's deployment block).")] = None,
    out: Annotated[Path, typer.Option(help="Snapshot folder to write.")] = Path("graphs/scan/snapshot"),
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read everything again.")] = False,
    no_venues: Annotated[bool, typer.Option("--no-venues", help="Read no venue plugin (pools) beyond --protocols: assets get the centralised-depth default.")] = False,
    since_block: Annotated[int | None, typer.Option("--since-block", help="An earlier block scanned with this cache: read only the accounts events touched since.")] = None,
) -> None:
    """Read protocols at one block into a snapshot (Parquet + meta.json), with the venues of its assets."""
    from analyzer.scanning import run_scan

    path = run_scan(rpc=rpc, fork_url=fork_url, block=block, protocols=protocols, book=book, accounts=accounts,
                    from_block=from_block, out=out, use_cache=not no_cache, venues=not no_venues,
                    since_block=since_block, markets=markets.split(",") if markets else None)
    typer.echo(str(path))


@app.command("markets")
def markets_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead of a table.")] = False,
) -> None:
    """List every built-in market: protocol, chain, market name, main address, source."""
    from analyzer.books import market_rows
    from protocols import plugins

    rows = market_rows(list(plugins().values()))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ("protocol", "chain_id", "chain", "market", "address", "source")
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns[:-1]]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(columns, widths, strict=False)), "source"])]
    lines += ["  ".join([*(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=False)), r["source"]])
              for r in rows]
    typer.echo("\n".join(lines))


@app.command("graph")
def graph_command(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot folder (from `contagion scan`).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: beside the snapshot).")] = None,
    fold_below_usd: Annotated[float | None, typer.Option(help="Fold accounts under this USD size into one node.")] = None,
) -> None:
    """Build the cross-protocol collateral graph: GraphML, GEXF, node-link JSON, Parquet, metrics."""
    from analyzer.graph import graph_to_dir

    if fold_below_usd is not None and fold_below_usd < 0:
        raise ContagionError(f"--fold-below-usd must be non-negative, got {fold_below_usd}")
    paths = graph_to_dir(snapshot, out or Path(snapshot).parent, fold_below_usd=fold_below_usd)
    typer.echo("\n".join(str(p) for p in paths.values()))
    _say_assumed_depth(snapshot)


@app.command("simulate")
def simulate_command(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot folder.")],
    shock: Annotated[list[str] | None, typer.Option(help="A price shock, e.g. WETH=-30% (repeatable).")] = None,
    iv: Annotated[list[str] | None, typer.Option(help="An IV shock in vol points, e.g. sETH=+25 (repeatable).")] = None,
    scenario: Annotated[Path | None, typer.Option(help="A shock scenario TOML (the shocks and the market's behaviour).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for cascade.json and Parquet.")] = Path("graphs/simulate"),
    report: Annotated[bool, typer.Option("--report", help="Also write report.html there.")] = False,
) -> None:
    """Propagate a shock through the snapshot to a fixed point; write cascade.json + Parquet."""
    from analyzer.engine import simulate_to_dir
    from analyzer.scenarios import scenario_from_cli

    if not shock and not iv and scenario is None:
        raise ContagionError("give a shock: --shock WETH=-30%, --iv ASSET=+25, or --scenario FILE")
    path = simulate_to_dir(snapshot, scenario_from_cli(shock, iv, scenario), out, report=report)
    _say_assumed_depth(snapshot)
    typer.echo(str(path))


@app.command("sweep")
def sweep_command(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot folder.")],
    out: Annotated[Path, typer.Option(help="Output folder (results.parquet, distance.parquet, summary.json).")] = Path("graphs/sweep"),
    spec: Annotated[Path | None, typer.Option(help="A sweep spec TOML (see analyzer/sweep/grid.py).")] = None,
    assets: Annotated[str | None, typer.Option(help="Comma list of assets to shock one at a time.")] = None,
    shocks: Annotated[str | None, typer.Option(help="START:STOP:STEP, e.g. --shocks=-10%:-50%:5%.")] = None,
    paths: Annotated[int | None, typer.Option(help="Monte Carlo paths.")] = None,
    seed: Annotated[int | None, typer.Option(help="Monte Carlo seed.")] = None,
    workers: Annotated[int | None, typer.Option(help="Run on a local Dask cluster of N worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Run on an existing Dask scheduler (tcp://HOST:PORT).")] = None,
) -> None:
    """Stress surface: grids, joint moves, Monte Carlo, systemic importance, distance to cascade."""
    from analyzer.sweep import sweep_to_dir
    from analyzer.sweep.grid import spec_from_cli

    if workers is not None and scheduler is not None:
        raise ContagionError("give --workers N or --scheduler ADDRESS, not both")
    if workers is not None and workers < 1:
        raise ContagionError(f"--workers must be at least 1, got {workers}")
    typer.echo(str(sweep_to_dir(snapshot, spec_from_cli(spec, assets, shocks, paths, seed), out,
                                workers=workers, scheduler=scheduler)))
    _say_assumed_depth(snapshot)


@app.command("recommend")
def recommend_command(
    snapshot: Annotated[Path, typer.Argument(help="A snapshot folder.")],
    scenarios: Annotated[str | None, typer.Option(help='Stress scenarios: a TOML of [[scenario]] tables, or "demo".')] = None,
    budget: Annotated[float | None, typer.Option(help="Bad debt allowed per scenario, USD.")] = None,
    markets: Annotated[str | None, typer.Option(help="Comma list of markets or assets to tune (default: all).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder (recommendations.json, recommend.html).")] = Path("graphs/recommend"),
    workers: Annotated[int | None, typer.Option(help="Run on a local Dask cluster of N worker processes.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Run on an existing Dask scheduler (tcp://HOST:PORT).")] = None,
    prove: Annotated[bool, typer.Option("--prove", help="Apply the changes on an anvil fork of --rpc through the "
                                                       "protocols' configuration calls and replay the scenarios.")] = False,
    rpc: Annotated[str | None, typer.Option("--rpc", "--fork-url", envvar=FORK_ENV, show_envvar=False,
                                            help=f"With --prove: the chain to fork (it is only read); or ${FORK_ENV}.")] = None,
    book: Annotated[Path | None, typer.Option(help="With --prove: the chain's address book JSON (a devnet's).")] = None,
    margin: Annotated[str | None, typer.Option(help="Comma list of assets: also their dynamic-margin schedule "
                                                   "(threshold by short-gamma concentration).")] = None,
    margin_target: Annotated[float | None, typer.Option(help="With --margin: the fall (0.3 = 30%) ignition must lie "
                                                           "beyond (default: the scenarios' largest fall of the asset).")] = None,
    caps: Annotated[bool, typer.Option("--caps", help="Stress the book grown to the supply/borrow caps "
                                                     "(pro rata) and search the caps too.")] = False,
    previous: Annotated[Path | None, typer.Option("--from", help="With --prove: no search; prove the changes of a "
                                                  "previous one's recommendations.json (on this snapshot; its "
                                                  "scenarios and budget).")] = None,
) -> None:
    """The smallest risk-parameter changes that keep every scenario's bad debt under the budget."""
    from analyzer.recommend import recommend_to_dir

    if previous is not None:
        if not prove:
            raise ContagionError("--from proves a previous search's changes: give --prove too")
        given = [name for name, value in (("--scenarios", scenarios), ("--budget", budget), ("--markets", markets),
                                          ("--margin", margin), ("--workers", workers), ("--scheduler", scheduler))
                 if value is not None] + (["--caps"] if caps else [])
        if given:
            raise ContagionError(f"--from takes the previous search's settings; drop {', '.join(given)}")
    elif scenarios is None or budget is None:
        raise ContagionError("recommend needs --scenarios SPEC and --budget USD (or --from a previous search's "
                             "recommendations.json, with --prove)")

    if workers is not None and scheduler is not None:
        raise ContagionError("give --workers N or --scheduler ADDRESS, not both")
    if workers is not None and workers < 1:
        raise ContagionError(f"--workers must be at least 1, got {workers}")
    if prove and (not rpc or book is None):
        raise ContagionError("--prove needs --rpc URL (the chain to fork) and --book FILE (its address book)")
    wanted = [m.strip() for m in markets.split(",") if m.strip()] if markets else None
    margin_assets = [m.strip() for m in margin.split(",") if m.strip()] if margin else []
    if margin_target is not None and not margin_assets:
        raise ContagionError("--margin-target needs --margin ASSET[,ASSET]")
    typer.echo(str(recommend_to_dir(snapshot, scenarios or "", budget or 0.0, out, markets=wanted, workers=workers,
                                    scheduler=scheduler, prove_on=(rpc, book) if prove and rpc and book else None,
                                    margin_assets=margin_assets, margin_target=margin_target, caps=caps,
                                    previous=previous, say=log.info)))


@app.command("replay")
def replay_command(
    scenario: Annotated[Path, typer.Option(help="The shock scenario TOML to execute.")],
    fork_url: Annotated[str, typer.Option("--fork-url", "--rpc", envvar=FORK_ENV, show_envvar=False,
                                          help=f"Start an anvil fork of this node and replay on it (the node is "
                                               f"only read; --rpc is the old spelling); or ${FORK_ENV}.")],
    book: Annotated[Path | None, typer.Option(help="Address book JSON (a devnet's).")] = None,
    protocols: Annotated[str | None, typer.Option(help="Comma list (default: all).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for fidelity.json and replay.json.")] = Path("graphs/replay"),
) -> None:
    """Execute the scenario with real liquidations and swaps on a fresh anvil fork; compare with the engine."""
    from analyzer.replaying import run_replay

    typer.echo(str(run_replay(fork_url, scenario, book=book, protocols=protocols, out=out)))


@app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (cascade.json, snapshot/, graph.json, ...).")],
    snapshot: Annotated[Path | None, typer.Option(help="Snapshot folder, when not run_dir/snapshot.")] = None,
    sweep: Annotated[Path | None, typer.Option(help="A `contagion sweep` output folder to include "
                                                    "(default: run_dir/sweep when it has a summary.json).")] = None,
) -> None:
    """Write report.html, figures/*.png and summary.md for a run folder."""
    from analyzer.report import write_report

    if not Path(run_dir).is_dir():
        raise ContagionError(f"{run_dir} is not a folder")
    if sweep is not None and not sweep.is_dir():
        raise ContagionError(f"--sweep {sweep}: not a folder (give the --out folder of contagion sweep)")
    typer.echo(str(write_report(run_dir, snapshot_dir=snapshot, sweep_dir=sweep)))


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("graphs/demo"),
    devnet_scenario: Annotated[str | None, typer.Option(
        "--devnet-scenario", help="Devnet scenario: a name or a TOML path [default: mainnet-like].")] = None,
    scenario: Annotated[str | None, typer.Option(hidden=True)] = None,
    no_replay: Annotated[bool, typer.Option("--no-replay", help="Skip the fork replay.")] = False,
) -> None:
    """The whole job on the embedded devnet: deploy, scan, graph, simulate, replay, report."""
    from analyzer.demo import run_demo

    report = run_demo(out, _devnet_scenario(devnet_scenario, scenario), replay_shock=not no_replay,
                      progress=log.info)
    typer.echo(f"report: {report}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    A usage error (click's: an unknown option, a value of the wrong type) and a ContagionError
    from a command are each one ``error: ...`` line and exit 2; anything else is a bug and keeps
    its traceback.
    """
    from analyzer.rpcurl import redact_secrets

    try:
        from typer._click import exceptions as click_errors  # the click typer vendors (0.2x)
    except ImportError:  # pragma: no cover - a typer on plain click
        from click import exceptions as click_errors  # type: ignore[no-redef]

    urls = _rpc_urls(sys.argv[1:] if argv is None else argv)
    try:
        status = app(args=argv, prog_name="contagion", standalone_mode=False)
        return status if isinstance(status, int) else 0   # --help, --version: click's Exit code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click_errors.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        return 2
    except click_errors.ClickException as exc:   # a usage error (an unknown option, a value of the wrong type)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
        print(f"error: {redact_secrets(message, *urls)}{hint}", file=sys.stderr)
        return 2
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except ContagionError as exc:
        # plain: one line, never wrapped; redacted again, whoever built the message
        print(f"error: {redact_secrets(str(exc), *urls)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: its traceback, without the RPC secrets a library put in it
        import traceback

        print(redact_secrets(traceback.format_exc(), *urls), file=sys.stderr, end="")
        return 1
    return 0


def _rpc_urls(argv: list[str]) -> list[str]:
    """The RPC URLs given on the command line or in the environment (to redact from errors)."""
    urls = [os.environ.get(name) for name in (RPC_ENV, FORK_ENV)]
    for i, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if name in URL_OPTIONS:
            urls.append(value if equals else (argv[i + 1] if i + 1 < len(argv) else None))
    return [url for url in urls if url]


def run() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
