"""Run every benchmark (or the ones named) and print one JSON object: {name: its JSON output}.

    .venv/bin/python -m benchmarks.run                 # all of them (minutes: sweep and engine are long)
    .venv/bin/python -m benchmarks.run engine impact   # some

Each benchmark is a module of this folder with a ``main()`` that prints one JSON object; it runs
in its own process so that one's memory peak does not colour another's. Speed and memory targets
live here, never as timed assertions in tests.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name not in ("run", "__init__"))


def run(name: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], capture_output=True, text=True,
                          cwd=HERE.parent, check=False)
    elapsed = round(time.perf_counter() - started, 1)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1], "seconds": elapsed}
    start = proc.stdout.find("{")
    try:
        return {**json.loads(proc.stdout[start:]), "seconds": elapsed}
    except (ValueError, json.JSONDecodeError):
        return {"error": "no JSON output", "seconds": elapsed}


def main() -> None:
    wanted = sys.argv[1:] or names()
    unknown = sorted(set(wanted) - set(names()))
    if unknown:
        print(f"error: unknown benchmark {', '.join(unknown)} (known: {', '.join(names())})", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({name: run(name) for name in wanted}, indent=2))


if __name__ == "__main__":
    main()
