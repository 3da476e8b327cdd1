"""Generated inputs for every command, and the check each must pass (tests/test_fuzz_cli.py, and at
scale ``python -m benchmarks.fuzz``).

A case is a command line plus the files it names, built in a fresh folder from a seeded
``random.Random``: malformed or hostile RPC URLs, shock and sweep flags, scenario and sweep-spec
TOML, snapshot tables and meta.json with corrupted values, address books, account lists and
output paths. The contract (:func:`check`): exit status 0 or 2, never a traceback (status 1);
a refusal is one ``error:`` line and writes no output.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KINDS = ("url", "shock", "iv", "sweep_flags", "scenario", "sweep_spec", "snapshot", "book", "accounts", "out")
OUT = "out"   # every case's output folder, relative to its folder
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


def _corrupt_snapshot(rng: random.Random, source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    if rng.random() < 0.3:
        meta = json.loads((target / "meta.json").read_text())
        meta[rng.choice(["chain_id", "block_number", "block_timestamp", "protocols", "schema_version", "rpc",
                         "venue_models", "fork_block"])] = _value(rng)
        (target / "meta.json").write_text(json.dumps(meta, allow_nan=True))
        return
    table = rng.choice(["assets", "markets", "accounts", "positions", "venues"])
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


def make_case(rng: random.Random, folder: Path, snapshot: Path, node_url: str, kind: str | None = None) -> Case:
    """One generated case, its files written into ``folder`` (``snapshot``: a valid snapshot to use
    or corrupt; ``node_url``: a loopback node that answers quickly)."""
    kind = kind or rng.choice(KINDS)
    snap = str(snapshot)
    out = str(folder / OUT)
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
