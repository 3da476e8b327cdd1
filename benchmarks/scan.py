"""Scan throughput on a devnet: a full scan with discovery, the naive loop, Multicall3, and an
incremental rescan, in one run, as one JSON object.

- ``accounts`` / ``seconds`` / ``accounts_per_second``: Aave V3 + Compound V2 + Comet, every
  account found by discovery (cold cache: every log range is read from the node) and read through
  the lens, derived oracle prices included: the scan a user runs (``account_reads`` counts an
  account once per protocol market it was discovered in). ``rpc_calls`` is every JSON-RPC request
  of that scan.
- ``naive_accounts_per_second``: one ``getUserAccountData`` ``eth_call`` per account, on a sample of
  the discovered Aave accounts spread over the book, in the same run, one request after the other
  (``naive_concurrent_requests``: 1, the loop the issue defines), over requests as a script's loop
  would be (web3.py's provider is several times slower still); ``ratio_to_naive``.
  ``naive_loopback_accounts_per_second`` / ``ratio_to_naive_loopback``: the same loop over the
  scan's own transport for a node on this machine (http.client on a kept-alive connection,
  :func:`analyzer.rpc.loopback_target`), where the node's own work per call is most of its cost. The scan
  reads ``scan_concurrent_markets`` markets at once, as ``contagion scan`` does, each with up to
  ``scan_concurrent_requests`` lens calls in flight (its ``workers``): at most their product.
- ``multicall_accounts_per_second``: the Multicall3 path (a node without state overrides) on that sample.
- ``incremental_*``: Aave V3 alone, from the full scan's
  cache: 1% of its accounts act (a supply each), a month passes, then the rescan with
  ``since_block`` against a full Aave scan of the same block; ``incremental_identical`` compares
  them table for table. ``incremental_all_*``: then 1% of the Compound V2 and of each Comet's
  accounts act too (a supply each, spread over every Compound market so that each accrues
  interest), and the rescan over all three lenders from the full scan's block is measured against
  a full scan of all three (``incremental_all_accounts_read``: accounts read in full per protocol
  market; ``incremental_all_accounts_computed``: accounts computed from the kept state;
  ``incremental_all_cpu_seconds`` / ``incremental_all_full_cpu_seconds``: the CPU seconds of the
  rescan and of the full scan in this process and in the node, ``incremental_all_cpu_speedup`` their
  ratio: the speed-up on a machine shared with other work).
- ``peak_rss_mb``: the benchmark process's peak resident memory (every phase).
- ``scan_cpu_seconds`` / ``node_cpu_seconds`` / ``accounts_per_cpu_second``: the CPU time the full
  scan took in this process and in the node, and the accounts per second of both together: on a
  machine shared with other work (``load_average``), wall-clock seconds mostly measure the others.

- ``state_mb`` / ``devnet_start_seconds``: the devnet's state file and the time anvil took to load it.

    .venv/bin/python -m benchmarks.scan [--scenario mainnet-scale] [--naive-sample 1000]
    .venv/bin/python -m benchmarks.scan --state DIR   # a devnet built beforehand: DIR/state.json, DIR/book.json
    .venv/bin/python -m benchmarks.scan --state DIR --full-only
        # the full scan and the naive loop only (``ratio_to_naive``; no Multicall3 sample, no rescans)
    .venv/bin/python -m benchmarks.scan --state DIR --incremental-only --profile rescan.prof
        # the full scan (the cache the rescan starts from), then only the all-lenders rescan and the
        # full scan it is compared with; cProfile of the rescan (every thread's calls) in rescan.prof
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from analyzer.books import market_of
from analyzer.chain import Anvil, rpc
from analyzer.devnet import scenario as scenario_mod
from analyzer.devnet.build import CACHE_DIR, CHAIN_ID, CODE_SIZE_LIMIT, RunningDevnet, cache_key, start_devnet
from analyzer.model import TABLES
from analyzer.multicall import Call
from analyzer.rpc import RpcClient
from analyzer.scan import MARKET_WORKERS, ScanStats, scan
from protocols import parse_protocols

LENDERS = "aave-v3,compound-v2,comet"
NATIVE = "0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE"   # Compound's CEther market (no ERC20 to mint)
USER_ACCOUNT_DATA = "getUserAccountData(address)(uint256,uint256,uint256,uint256,uint256,uint256)"
WORKERS = 4     # the scan's concurrent requests (scan()'s default)
AS_THE_CLI = {"workers": WORKERS, "market_workers": MARKET_WORKERS}   # every timed scan: as `contagion scan` runs


def identical(a, b) -> bool:
    for name in TABLES:
        left = a.table(name).sort_values(list(a.table(name).columns)).reset_index(drop=True)
        right = b.table(name).sort_values(list(b.table(name).columns)).reset_index(drop=True)
        if not left.equals(right):
            return False
    return True


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def node_cpu_seconds(pid: int) -> float:
    """The node's CPU time so far (user + system, every thread), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, fn):
    """``fn()`` and the CPU seconds it took in this process (``scan``) and in the node (``node``)."""
    cpu, node = time.process_time(), node_cpu_seconds(pid)
    result = fn()
    return result, {"scan": round(time.process_time() - cpu, 3), "node": round(node_cpu_seconds(pid) - node, 3)}


def naive_rate(url: str, pool: str, accounts: list[str], block: int, loopback: bool = False) -> float:
    """Accounts per second of one ``getUserAccountData`` ``eth_call`` per account, one after the
    other, over a plain HTTP client (requests: what a script's loop uses; ``loopback``: our own
    http.client transport for a node on this machine, :func:`analyzer.rpc.loopback_target`)."""
    client = RpcClient(url, loopback=loopback)
    started = time.perf_counter()
    for account in accounts:
        call = Call(pool, USER_ACCOUNT_DATA, (account,))
        client.eth_call({"to": pool, "data": "0x" + call.calldata.hex()}, block)
    return len(accounts) / (time.perf_counter() - started)


def act(w3, book: dict, accounts: list[str]) -> None:
    """Each account supplies 1 WETH more to Aave (impersonated: the devnet is anvil), then a month
    passes."""
    pool, weth = market_of(book, "aave-v3")["pool"], book["tokens"]["WETH"]
    send_all(w3, [(who, [Call(weth, "mint(address,uint256)(bool)", (who, 10**19)),    # the devnet's tokens mint openly
                         Call(weth, "approve(address,uint256)(bool)", (pool, 10**19)),
                         Call(pool, "supply(address,uint256,address,uint16)", (weth, 10**18, who, 0))])
                  for who in accounts])
    rpc(w3, "evm_increaseTime", [30 * 86400])
    rpc(w3, "anvil_mine", ["0x3"])


def act_lenders(w3, book: dict, compound: list[str], comet: dict[str, list[str]]) -> None:
    """Compound V2 and Comet accounts act too (impersonated): each Compound account supplies a
    little of one market, taken in turn over every ERC20 market (so every such market accrues
    interest, as on mainnet between two scans, and every untouched borrower's stored balance there
    moves); each Comet account supplies a little base to its Comet (a borrower repays)."""
    markets = [m for m in market_of(book, "compound-v2")["markets"].values() if m["underlying"] != NATIVE]
    plans = []
    for i, who in enumerate(compound):
        m = markets[i % len(markets)]
        amount = 10 ** int(m["decimals"]) // 100
        plans.append((who, [Call(m["underlying"], "mint(address,uint256)(bool)", (who, amount)),
                            Call(m["underlying"], "approve(address,uint256)(bool)", (m["cToken"], amount)),
                            Call(m["cToken"], "mint(uint256)(uint256)", (amount,))]))
    decimals = {address.lower(): book["decimals"][symbol] for symbol, address in book["tokens"].items()}
    for market in book["protocols"]["comet"].values():
        base, address = market["base"], market["comet"]
        amount = 10 ** int(decimals[base.lower()])     # one whole base token
        for who in comet.get(address, []):
            plans.append((who, [Call(base, "mint(address,uint256)(bool)", (who, amount)),
                                Call(base, "approve(address,uint256)(bool)", (address, amount)),
                                Call(address, "supply(address,uint256)", (base, amount))]))
    send_all(w3, plans)


def send_all(w3, plans: list[tuple[str, list[Call]]]) -> None:
    """Each account's calls as impersonated transactions, sent without waiting and mined together,
    a few blocks in all (a block each made anvil keep a copy of a mainnet-scale state per block in
    memory, past 20 GB), their receipts checked at the end."""
    rpc(w3, "evm_setAutomine", [False])
    sent = []
    for who, calls in plans:
        rpc(w3, "anvil_impersonateAccount", [who])
        rpc(w3, "anvil_setBalance", [who, hex(10**20)])
        for call in calls:
            sent.append(rpc(w3, "eth_sendTransaction", [{"from": who, "to": call.target, "gas": hex(1_000_000),
                                                         "data": "0x" + call.calldata.hex()}]))
    for tx in sent:
        while (receipt := rpc(w3, "eth_getTransactionReceipt", [tx])) is None:
            rpc(w3, "evm_mine")
        if int(receipt["status"], 16) != 1:
            raise SystemExit(f"benchmark: an account's action failed (tx {tx})")
    rpc(w3, "evm_setAutomine", [True])


def naive_vs_multicall(url: str, lenders, book: dict, aave: list[str], block: int, naive_sample: int, accounts: int,
                       seconds: float, with_multicall: bool = True) -> dict:
    """The naive loop's and (``with_multicall``) the Multicall3 path's rates on a sample of the Aave
    accounts (the full scan took ``seconds`` for ``accounts``)."""
    sample = aave[::max(1, len(aave) // naive_sample)][:naive_sample]
    pool = market_of(book, "aave-v3")["pool"]
    naive, lean = naive_rate(url, pool, sample, block), naive_rate(url, pool, sample, block, loopback=True)
    out = {"naive_concurrent_requests": 1, "naive_accounts_per_second": round(naive, 1),
           "ratio_to_naive": round(accounts / seconds / naive, 1),
           "naive_loopback_accounts_per_second": round(lean, 1),
           "ratio_to_naive_loopback": round(accounts / seconds / lean, 1)}
    if with_multicall:
        _, multicall_seconds = timed(lambda: scan(url, lenders, book=book, block=block, accounts=sample,
                                                  cache_dir=None, use_lens=False, oracle_paths=False))
        out["multicall_accounts_per_second"] = round(len(sample) / multicall_seconds, 1)
    return out


def aave_rescan(url: str, book: dict, cache: Path, block: int, later: int, accounts: int, changed: int) -> dict:
    """The Aave-only rescan from ``block`` to ``later`` against a full Aave scan at ``later``."""
    only_aave = parse_protocols("aave-v3")
    stats = ScanStats()
    rescan, incremental = timed(lambda: scan(url, only_aave, book=book, block=later, cache_dir=cache,
                                             since_block=block, stats=stats, **AS_THE_CLI))
    full, full_seconds = timed(lambda: scan(url, only_aave, book=book, block=later, cache_dir=None, **AS_THE_CLI))
    return {"incremental_protocols": ["aave-v3"], "incremental_accounts": accounts,
            "incremental_changed_accounts": changed, "incremental_seconds": round(incremental, 3),
            "incremental_full_seconds": round(full_seconds, 3),
            "incremental_speedup": round(full_seconds / incremental, 1),
            "incremental_accounts_read": stats.accounts["aave-v3"],
            "incremental_accounts_computed": stats.accounts_refreshed.get("aave-v3", 0),
            "incremental_identical": identical(rescan, full)}


def profile_rescan(path: Path, url: str, lenders, book: dict, cache: Path, block: int, later: int) -> None:
    """cProfile of the rescan from ``block`` to ``later`` (from ``cache``, a copy of the cache it
    started from), its markets read one after the other (one market at a time: cProfile sees only
    the thread it runs in; the oracle paths, followed beside them, are left out), written to ``path``."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        scan(url, lenders, book=book, block=later, cache_dir=cache, since_block=block, workers=WORKERS, market_workers=1)
    finally:
        profile.disable()
    profile.dump_stats(str(path))


def lenders_rescan(devnet: RunningDevnet, lenders, cache: Path, block: int, profile: Path | None) -> dict:
    """The rescan over every lender from ``block`` (its full scan's ``cache``) to the head, against a
    full scan at the head: seconds, CPU seconds of this process and the node, accounts read and
    computed, and whether the two snapshots are identical; a cProfile of the rescan in ``profile``."""
    later, book, stats = devnet.w3.eth.block_number, devnet.book, ScanStats()
    pid = devnet.anvil.proc.pid
    starting_cache = cache / "before-rescan"
    if profile:
        shutil.copytree(cache, starting_cache)
    (rescan, every), every_cpu = with_cpu(pid, lambda: timed(lambda: scan(
        devnet.url, lenders, book=book, block=later, cache_dir=cache, since_block=block, stats=stats, **AS_THE_CLI)))
    if profile:     # the same rescan again, profiled, from a copy of the cache it started from
        profile_rescan(profile, devnet.url, lenders, book, starting_cache, block, later)
    (full, every_full), full_cpu = with_cpu(pid, lambda: timed(lambda: scan(
        devnet.url, lenders, book=book, block=later, cache_dir=None, **AS_THE_CLI)))
    # CPU of both processes: on a machine shared with other work, wall-clock seconds mostly measure the others
    return {"incremental_all_cpu_seconds": every_cpu, "incremental_all_full_cpu_seconds": full_cpu,
            "incremental_all_cpu_speedup": round(sum(full_cpu.values()) / sum(every_cpu.values()), 1),
            "incremental_all_protocols": [p.name for p in lenders], "incremental_all_seconds": round(every, 3),
            "incremental_all_accounts_computed": stats.accounts_refreshed,
            "incremental_all_full_seconds": round(every_full, 3),
            "incremental_all_speedup": round(every_full / every, 1),
            "incremental_all_accounts_read": stats.accounts,
            "incremental_all_identical": identical(rescan, full)}


def devnet_from(state: Path | None, scenario_name: str) -> tuple[RunningDevnet, Path]:
    """The scenario's cached devnet (built when missing), or the one saved in ``state`` (a folder with
    ``state.json`` and ``book.json``, e.g. built with another checkout); and its state file."""
    scenario = scenario_mod.load(scenario_name)
    if state is None:
        everything = parse_protocols(None)     # every plugin, as the test suite's devnet: the cached state is shared
        return start_devnet(scenario, everything), CACHE_DIR / cache_key(scenario, everything) / "state.json"
    anvil = Anvil(chain_id=CHAIN_ID, load_state=state / "state.json", code_size_limit=CODE_SIZE_LIMIT).start()
    return RunningDevnet(anvil, json.loads((state / "book.json").read_text()), scenario), state / "state.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mainnet-like")
    parser.add_argument("--state", type=Path, help="a built devnet's folder (state.json, book.json)")
    parser.add_argument("--naive-sample", type=int, default=1_000)
    parser.add_argument("--changed-share", type=float, default=0.01, help="share of Aave accounts that act")
    parser.add_argument("--incremental-only", action="store_true",
                        help="after the full scan, only the all-lenders rescan and its full scan (no naive loop, "
                             "Multicall3 sample or Aave-only rescan)")
    parser.add_argument("--full-only", action="store_true",
                        help="only the full scan and the naive loop (ratio_to_naive): no Multicall3 sample, no rescans")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the all-lenders rescan here")
    args = parser.parse_args()
    lenders = parse_protocols(LENDERS)
    out: dict = {"scenario": args.scenario, "protocols": [p.name for p in lenders]}
    started = time.perf_counter()
    running, state_file = devnet_from(args.state, args.scenario)
    with running as devnet, tempfile.TemporaryDirectory() as cache:
        out["devnet_start_seconds"] = round(time.perf_counter() - started, 1)
        out["state_mb"] = round(state_file.stat().st_size / 2**20, 1)
        w3, book = devnet.w3, devnet.book
        block = w3.eth.block_number
        stats = ScanStats()
        cpu, node_cpu = time.process_time(), node_cpu_seconds(devnet.anvil.proc.pid)
        snapshot, seconds = timed(lambda: scan(devnet.url, lenders, book=book, block=block, cache_dir=Path(cache),
                                               stats=stats, workers=WORKERS, market_workers=MARKET_WORKERS))
        cpu, node_cpu = time.process_time() - cpu, node_cpu_seconds(devnet.anvil.proc.pid) - node_cpu
        accounts = len(set(snapshot.accounts["account"]) | set(snapshot.positions["account"]))
        rpc_calls = sum(stats.requests.values())
        aave = sorted(set(snapshot.positions[snapshot.positions["protocol"] == "aave-v3"]["account"]))
        step = max(1, round(1 / args.changed_share))
        compound = sorted(set(snapshot.positions[snapshot.positions["protocol"] == "compound-v2"]["account"]))[::step]
        comets = snapshot.positions[snapshot.positions["protocol"] == "comet"]
        comet = {m: sorted(set(comets[comets["market"] == m]["account"]))[::step] for m in set(comets["market"])}
        out.update(accounts=accounts, account_reads=sum(stats.accounts.values()), positions=len(snapshot.positions),
                   seconds=round(seconds, 3), accounts_per_second=round(accounts / seconds, 1),
                   scan_cpu_seconds=round(cpu, 2), node_cpu_seconds=round(node_cpu, 2),
                   accounts_per_cpu_second=round(accounts / (cpu + node_cpu), 1),
                   load_average=round(os.getloadavg()[0], 1),
                   scan_concurrent_markets=MARKET_WORKERS, scan_concurrent_requests=WORKERS,
                   rpc_calls=rpc_calls, rpc_calls_by_method=stats.requests,
                   rpc_calls_per_1000_accounts=round(1000 * rpc_calls / accounts, 2),
                   discovery_ranges=stats.discovery.ranges_read)
        if not args.incremental_only:
            out.update(naive_vs_multicall(devnet.url, lenders, book, aave, block, args.naive_sample, accounts, seconds,
                                          with_multicall=not args.full_only))
        out["peak_rss_mb_full_scan"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        del snapshot
        if args.full_only:
            print(json.dumps(out, indent=2))
            return

        # incremental: Aave V3 from the full scan's cache; 1% of its accounts act
        changed = aave[::max(1, round(1 / args.changed_share))]
        act(w3, book, changed)
        if not args.incremental_only:
            out.update(aave_rescan(devnet.url, book, Path(cache), block, w3.eth.block_number, len(aave), len(changed)))
        # the same over every lender, after 1% of the Compound V2 and Comet accounts acted too
        act_lenders(w3, book, compound, comet)
        out.update(lenders_rescan(devnet, lenders, Path(cache), block, args.profile))
        out["incremental_all_changed_accounts"] = len(changed) + len(compound) + sum(map(len, comet.values()))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
