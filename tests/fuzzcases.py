"""Generated inputs for every command, and the check each must pass (tests/test_fuzz_cli.py, and at
scale ``python -m benchmarks.fuzz``).

A case is a command line plus the files it names, built in a fresh folder from a seeded
``random.Random``: malformed or hostile RPC URLs, shock and sweep flags, scenario and sweep-spec
TOML, snapshot tables and meta.json with corrupted values, address books, account lists, output
paths, options venue responses (import, fetch, gamma) and devnet scenario files (``devnet up``,
always refused before a build: its protocol list names an unknown one). The contract (:func:`check`): exit status 0 or 2, never a traceback (status 1);
a refusal is one ``error:`` line and writes no output.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KINDS = ("url", "shock", "iv", "sweep_flags", "scenario", "sweep_spec", "snapshot", "book", "accounts", "out",
         "options", "devnet", "recommend")
OUT = "out"   # every case's output folder, relative to its folder
REPO = Path(__file__).resolve().parents[1]
OPTION_SAMPLES = REPO / "fixtures" / "options" / "samples"
OPTION_RESPONSES = (("deribit-ETH-get_instruments.json", "deribit-ETH-get_book_summary_by_currency.json"),
                    ("bybit-ETH-instruments-info.json", "bybit-ETH-tickers.json"))
DEVNET_SCENARIO = REPO / "fixtures" / "scenarios" / "mainnet-like.toml"
JUNK = ["", " ", "nan", "inf", "-inf", "NaN%", "1e400", "-1e400%", "1e-400", "0x10", "１０", "--", "%", "=", "yesterday",
        "-0", "+0%", "1_000", "9" * 40, "-" + "9" * 40, "[]", "{}", "null", "true", "\x00", "é", "'", '"', "\\", "1e6%",
        "-100%", "-99.9999999%", "+1e308", "5e-324", "-30%", "30", "-0.3", "1:2:3", "WETH", "0" * 300]


@dataclass
class Case:
    kind: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)


def _value(rng: random.Random):
    """A TOML-ready value of some type, often a wrong one."""
    return rng.choice([
        rng.choice(JUNK), rng.randint(-2 ** 70, 2 ** 70), rng.choice([-1, 0, 1, 2 ** 63, -2 ** 63, 10 ** 9]),
        rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, -1e-308, 0.5, -0.3, 1e6]),
        rng.choice([True, False]), [rng.randint(-5, 5) for _ in range(rng.randint(0, 3))], {"x": rng.choice(JUNK)},
    ])


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def _url(rng: random.Random) -> str:
    scheme = rng.choice(["http", "https", "ws", "wss", "ftp", "file", "", "HTTP", "javascript", "http:/"])
    user = rng.choice(["", "alice:s3cretpw@", ":@", "a@b@", "üser:pä ss@"])
    host = rng.choice(["", "127.0.0.1", "[::1", "[::1]", "exa mple.com", "-", "256.256.256.256", "a" * 300, "localhost"])
    port = rng.choice(["", ":", ":0", ":99999", ":-1", ":abc", ":65536", ":1"])
    path = rng.choice(["", "/", "/v2/keykeykey0123456789abcdef", "/%zz", "/\x00", "?apikey=secretvalue0123", "#frag"])
    text = f"{scheme}://{user}{host}{port}{path}" if scheme else f"{user}{host}{port}{path}"
    return rng.choice([text, text, rng.choice(JUNK), "not a url", "http://", "127.0.0.1:8545"])


def _scenario_toml(rng: random.Random) -> str:
    lines = []
    for key in rng.sample(["name", "seed", "max_rounds", "tolerance", "oracle_lag", "sell_through", "keeper_gas_usd",
                           "price_impact", "spot_vol_beta", "iv_per_contract", "max_keeper_steps", "bogus"],
                          rng.randint(0, 4)):
        lines.append(f"{key} = {_toml_value(_value(rng))}")
    for table in rng.sample(["price", "venue_price", "iv", "oracle"], rng.randint(0, 3)):
        lines.append(f"[{table}]")
        for _ in range(rng.randint(0, 3)):
            lines.append(f"{rng.choice(['WETH', 'USDC', 'TKN1', 'NOPE', '0xabc'])} = {_toml_value(_value(rng))}")
    if rng.random() < 0.3:
        lines.append(f"[venues.{rng.choice(['USDC', 'TKN1', 'NOPE'])}]")
        lines.append(f"model = {_toml_value(rng.choice(['sqrt_law', 'linear', 'uniswap_v3', 'nope', 3]))}")
        lines.append(f"{rng.choice(['depth_1pct', 'tick_spacing', 'k'])} = {_toml_value(_value(rng))}")
    if rng.random() < 0.2:
        lines.append(f"[[forced_sale]]\naccount = {_toml_value(_value(rng))}")
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.2:   # byte-level damage
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return data.decode("utf-8", errors="replace")
    return text


def _spec_toml(rng: random.Random) -> str:
    lines = []
    if rng.random() < 0.6:
        lines.append(f"shocks = {_toml_value(rng.choice([_value(rng), '-10%:-30%:10%', '1%:-99%:1e-10%', '-5%:-5%:0%']))}")
    for key in rng.sample(["assets", "joint", "static", "batch_size", "name", "extra"], rng.randint(0, 3)):
        lines.append(f"{key} = {_toml_value(rng.choice([_value(rng), ['TKN1'], ['TKN1', 'NOPE'], True, 4]))}")
    if rng.random() < 0.5:
        lines.append("[montecarlo]")
        for key in rng.sample(["paths", "seed", "assets", "covariance", "scale", "horizon", "history"], rng.randint(1, 5)):
            good = {"paths": rng.choice([10, 10 ** 9]), "seed": rng.choice([0, -1]), "assets": ["TKN1", "TKN2"],
                    "covariance": rng.choice([[[0.01, 0.0], [0.0, 0.01]], [[1.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]]),
                    "scale": rng.choice([1.0, 0.0, -1.0]), "horizon": 1, "history": "missing.csv"}[key]
            lines.append(f"{key} = {_toml_value(rng.choice([good, good, _value(rng)]))}")
    if rng.random() < 0.3:
        lines.append("[scenario]")
        lines.append(f"{rng.choice(['max_rounds', 'sell_through', 'price', 'bogus'])} = {_toml_value(_value(rng))}")
    if rng.random() < 0.2:
        lines.append(f"[systemic]\nshock = {_toml_value(_value(rng))}\naccounts = {_toml_value(_value(rng))}")
    if rng.random() < 0.2:
        lines.append(f"[distance]\nmax_shock = {_toml_value(_value(rng))}\ntolerance = {_toml_value(_value(rng))}")
    return "\n".join(lines) + "\n"


def _corrupt_snapshot(rng: random.Random, source: Path, target: Path,
                      tables: tuple[str, ...] = ("assets", "markets", "accounts", "positions", "venues")) -> None:
    shutil.copytree(source, target)
    if rng.random() < 0.3:
        meta = json.loads((target / "meta.json").read_text())
        meta[rng.choice(["chain_id", "block_number", "block_timestamp", "protocols", "schema_version", "rpc",
                         "venue_models", "fork_block"])] = _value(rng)
        (target / "meta.json").write_text(json.dumps(meta, allow_nan=True))
        return
    table = rng.choice(tables)
    frame = pq.read_table(target / f"{table}.parquet").to_pandas()
    if frame.empty:
        return
    column = rng.choice(list(frame.columns))
    row = rng.randrange(len(frame))
    if column == "params" and rng.random() < 0.6:
        params = json.loads(frame.at[row, column] or "{}")
        if isinstance(params, dict) and params:
            key = rng.choice(list(params))
            params[key] = _value(rng) if rng.random() < 0.8 else None
            if rng.random() < 0.2:
                params.pop(key)
            frame[column] = frame[column].astype(object)
            frame.at[row, column] = json.dumps(params, allow_nan=True)
        else:
            frame.at[row, column] = rng.choice(JUNK)
    else:
        value = _value(rng)
        frame[column] = frame[column].astype(object)
        frame.at[row, column] = value if isinstance(value, str | int | float | bool) and not isinstance(value, list) else str(value)
        with contextlib.suppress(TypeError, ValueError):
            frame[column] = pd.Series(list(frame[column])).infer_objects()
    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), target / f"{table}.parquet")
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        (target / f"{table}.parquet").write_bytes(b"PAR1" + bytes(rng.randrange(256) for _ in range(64)))


def _corrupt_json(rng: random.Random, payload):
    """``payload`` with one value somewhere in it replaced, removed or emptied (in place)."""
    if not isinstance(payload, dict | list) or rng.random() < 0.05:
        return _value(rng)
    node = payload
    for _ in range(rng.randint(0, 4)):
        children = list(node.values()) if isinstance(node, dict) else node
        inner = [child for child in children if isinstance(child, dict | list) and child]
        if not inner:
            break
        node = rng.choice(inner)
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if rng.random() < 0.2:
            node.pop(key)
        else:
            node[key] = rng.choice([_value(rng), _value(rng), None, -1, 0, "", []])
    elif isinstance(node, list) and node:
        index = rng.randrange(len(node))
        node[index] = _value(rng) if rng.random() < 0.7 else node[index - 1]   # junk, or a duplicate
        if rng.random() < 0.1:
            node.clear()
    return payload


def _options_snapshot(snapshot: Path) -> Path:
    """A snapshot with option instruments beside ``snapshot`` (made once, by whichever case needs it first)."""
    from analyzer.options.imports import import_options

    target = snapshot.parent / "options-snapshot"
    if not (target / "meta.json").is_file():
        stage = Path(tempfile.mkdtemp(prefix=".options-", dir=snapshot.parent))
        import_options([OPTION_SAMPLES / name for name in OPTION_RESPONSES[0]], stage / "snap")
        with contextlib.suppress(OSError):   # another worker made it first
            os.rename(stage / "snap", target)
        shutil.rmtree(stage, ignore_errors=True)
    return target


def _options_case(rng: random.Random, folder: Path, snapshot: Path, node_url: str) -> Case:
    out = str(folder / OUT)
    command = rng.choice(["import", "import", "import", "fetch", "gamma"])
    if command == "gamma":
        _corrupt_snapshot(rng, _options_snapshot(snapshot), folder / "snap",
                          ("option_instruments", "option_instruments", "assets"))
        return Case("options", ["options", "gamma", str(folder / "snap"), *(["--json"] if rng.random() < 0.5 else [])])
    extra = []
    if rng.random() < 0.3:
        extra += ["--underlying", rng.choice(["ETH=" + "0x" + "ab" * 20, "ETH=", "=0x1", "ETH", "é=é", "ETH=TKN1"])]
    if rng.random() < 0.3:
        rows = ["venue,instrument,customer_net", *(f"{rng.choice(['deribit', 'bybit', 'nope', ''])},"
                                                   f"{rng.choice(['ETH-27DEC26-3000-C', 'x', ''])},{rng.choice(JUNK)}"
                                                   for _ in range(rng.randint(0, 3)))]
        (folder / "positioning.csv").write_text("\n".join(rows[rng.random() < 0.2:]))
        extra += ["--positioning", str(folder / "positioning.csv")]
    if rng.random() < 0.3:   # join a (maybe corrupted) snapshot that is already there
        _corrupt_snapshot(rng, snapshot, folder / OUT) if rng.random() < 0.5 else shutil.copytree(snapshot, folder / OUT)
    if command == "fetch":
        url = rng.choice([node_url, node_url + "/api/v2", _url(rng)])
        return Case("options", ["options", "fetch", "--venue", rng.choice(["deribit", "bybit", "nope", ""]),
                                "--currency", rng.choice(["ETH", "BTC", "", "é", "E" * 20, "ETH/../x"]), "--url", url,
                                "--out", out, "--save-responses", str(folder / "raw"), *extra])
    files = []
    for number, name in enumerate(rng.choice(OPTION_RESPONSES)[:rng.randint(1, 2)]):
        payload = json.loads((OPTION_SAMPLES / name).read_text())
        if number == 0 or rng.random() < 0.3:
            payload = _corrupt_json(rng, payload)
        data = json.dumps(payload, allow_nan=True).encode()
        if rng.random() < 0.1:   # byte-level damage
            data = data[:rng.randrange(len(data))] if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(40)) + data
        files.append(folder / f"{number}-{name}")
        files[-1].write_bytes(data)
    return Case("options", ["options", "import", *map(str, files), "--out", out, *extra])


def _devnet_case(rng: random.Random, folder: Path) -> Case:
    """``devnet up`` with a corrupted devnet scenario; the protocol list always names an unknown one,
    so a scenario that still reads is refused before anything is built."""
    lines = DEVNET_SCENARIO.read_text().splitlines()
    values = [i for i, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
    for _ in range(rng.randint(1, 3)):
        i = rng.choice(values)
        key = lines[i].split("=", 1)[0]
        lines[i] = rng.choice([f"{key}= {_toml_value(_value(rng))}", f"{rng.choice(['bogus', 'x.y', ''])} = 1", ""])
    if rng.random() < 0.2:
        lines.append(rng.choice(["[assets.NEW]", "[protocols.nope]", "[[forced_sale]]", "oracles = 3"]))
    (folder / "devnet.toml").write_text("\n".join(lines) + "\n")
    args = ["devnet", "up", "--devnet-scenario", str(folder / "devnet.toml"), "--exit",
            "--protocols", rng.choice(["nope", "aave-v3,nope", "é", "aave-v3,,zz"]),
            "--book-out", str(folder / OUT / "book.json"), "--state-out", str(folder / OUT / "state.json")]
    if rng.random() < 0.3:
        args += ["--port", str(rng.choice([0, 1, 99999, -1, 1024, 65535]))]
    return Case("devnet", args)


def _recommend_case(rng: random.Random, folder: Path, snapshot: Path) -> Case:
    snap = str(snapshot)
    if rng.random() < 0.3:
        _corrupt_snapshot(rng, snapshot, folder / "snap")
        snap = str(folder / "snap")
    scenarios = rng.choice(["demo", str(folder / "scenarios.toml"), str(folder / "missing.toml"), ""])
    if scenarios.endswith("scenarios.toml"):
        tables = [_scenario_toml(rng) for _ in range(rng.randint(0, 2))]
        body = "".join("[[scenario]]\n" + "\n".join(line for line in t.splitlines() if not line.startswith("["))
                       + "\n" for t in tables)
        (folder / "scenarios.toml").write_text(rng.choice([body, _scenario_toml(rng), "scenario = 3\n"]))
    args = ["recommend", snap, "--scenarios", scenarios, "--budget", rng.choice(["0", "1e6", "250.5", rng.choice(JUNK)]), "--out",
            str(folder / OUT)]
    if rng.random() < 0.4:
        args += ["--markets", rng.choice(["", ",", "NOPE", "TKN1", "TKN1,NOPE", "é"])]
    return Case("recommend", args)


def make_case(rng: random.Random, folder: Path, snapshot: Path, node_url: str, kind: str | None = None) -> Case:
    """One generated case, its files written into ``folder`` (``snapshot``: a valid snapshot to use
    or corrupt; ``node_url``: a loopback node that answers quickly)."""
    kind = kind or rng.choice(KINDS)
    snap = str(snapshot)
    out = str(folder / OUT)
    if kind == "options":
        return _options_case(rng, folder, snapshot, node_url)
    if kind == "devnet":
        return _devnet_case(rng, folder)
    if kind == "recommend":
        return _recommend_case(rng, folder, snapshot)
    if kind == "url":
        command = rng.choice(["scan-rpc", "scan-fork", "replay"])
        url = _url(rng)
        if command == "replay":
            (folder / "s.toml").write_text('[price]\nWETH = "-20%"\n')
            return Case(kind, ["replay", "--scenario", str(folder / "s.toml"), "--rpc", url, "--out", out])
        return Case(kind, ["scan", "--rpc" if command == "scan-rpc" else "--fork-url", url, "--out", out])
    if kind == "shock":
        flag = rng.choice(["TKN1", "TKN1", "USDC", "NOPE", "", "=", "TKN1=TKN1"]) + rng.choice(["=", "", "=="]) + str(rng.choice(JUNK))
        return Case(kind, ["simulate", snap, "--shock", flag, "--out", out])
    if kind == "iv":
        return Case(kind, ["simulate", snap, "--iv", f"TKN1={rng.choice(JUNK)}", "--out", out])
    if kind == "sweep_flags":
        args = ["sweep", snap, "--out", out]
        if rng.random() < 0.8:
            args.append(f"--shocks={':'.join(str(rng.choice(JUNK + ['-10%', '-50%', '1e-10%'])) for _ in range(rng.choice([2, 3, 3, 4])))}")
        if rng.random() < 0.4:
            args += ["--paths", str(rng.choice([0, -1, 10 ** 12, 3]))]
        if rng.random() < 0.4:
            args += ["--seed", str(rng.choice([-1, 2 ** 64, 0]))]
        if rng.random() < 0.3:
            args += ["--assets", rng.choice(["", ",", "NOPE", "TKN1,,TKN1", "é"])]
        if rng.random() < 0.2:
            args += ["--workers", str(rng.choice([0, -3]))]
        return Case(kind, args)
    if kind == "scenario":
        (folder / "scenario.toml").write_text(_scenario_toml(rng))
        return Case(kind, ["simulate", snap, "--scenario", str(folder / "scenario.toml"), "--out", out])
    if kind == "sweep_spec":
        (folder / "spec.toml").write_text(_spec_toml(rng))
        return Case(kind, ["sweep", snap, "--spec", str(folder / "spec.toml"), "--out", out])
    if kind == "snapshot":
        _corrupt_snapshot(rng, snapshot, folder / "snap")
        command = rng.choice(["simulate", "graph", "sweep", "report"])
        if command == "simulate":
            return Case(kind, ["simulate", str(folder / "snap"), "--shock", "TKN1=-30%", "--out", out])
        if command == "graph":
            return Case(kind, ["graph", str(folder / "snap"), "--out", out])
        if command == "sweep":
            return Case(kind, ["sweep", str(folder / "snap"), "--shocks=-10%:-20%:10%", "--out", out])
        return Case(kind, ["report", str(folder), "--snapshot", str(folder / "snap")])
    if kind == "book":
        book = rng.choice([{"protocols": {"aave-v3": {"pool": _value(rng), "start_block": _value(rng)}}},
                           {"protocols": _value(rng)}, _value(rng), {"protocols": {"nope": {}}},
                           {"protocols": {"uniswap-v3": {"pool": "0xnotanaddress", "pools": _value(rng)}}}])
        (folder / "book.json").write_text(json.dumps(book, allow_nan=True) if rng.random() < 0.9 else "{not json")
        return Case(kind, ["scan", "--rpc", node_url, "--book", str(folder / "book.json"), "--out", out, "--no-cache"])
    if kind == "accounts":
        lines = [rng.choice(["0x" + "ab" * 20, "0xnot", "", "# c", "0x" + "0" * 39, "é" * 3, str(_value(rng))])
                 for _ in range(rng.randint(0, 5))]
        (folder / "accounts.txt").write_text("\n".join(lines))
        return Case(kind, ["scan", "--rpc", node_url, "--accounts", str(folder / "accounts.txt"), "--out", out,
                           "--no-cache"])
    # out: an output path that cannot be a folder
    (folder / "file").write_text("x")
    target = rng.choice([str(folder / "file"), str(folder / "file" / "sub"), "/proc/version/x", "/dev/null"])
    command = rng.choice([["simulate", snap, "--shock", "TKN1=-20%", "--out", target], ["graph", snap, "--out", target],
                          ["sweep", snap, "--shocks=-10%:-20%:10%", "--out", target], ["report", target]])
    return Case(kind, command)


def check(case: Case, status: int, stderr: str, folder: Path, before: set[Path]) -> str | None:
    """None when the case behaved; otherwise what went wrong."""
    if "Traceback" in stderr or status not in (0, 2):
        return f"status {status}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
    if status == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if not lines or not lines[-1].startswith("error: "):
            return f"refused without an error line: {stderr[-300:]!r}"
        created = {p for p in folder.rglob("*")} - before
        if created:
            return f"refused but wrote {sorted(str(p.relative_to(folder)) for p in created)[:5]}"
    return None
