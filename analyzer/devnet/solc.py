"""Compile our own Solidity fixtures with the pinned ``solc`` npm package.

Each folder under ``fixtures/contracts/`` is one group; its compiled artifacts are committed
as ``fixtures/artifacts/<group>.json`` together with a hash of the sources and the compiler
settings, so a test can tell when an artifact is stale. Regenerate them with::

    python -m analyzer.devnet.solc            # every group
    python -m analyzer.devnet.solc compound_v2

Artifacts hold, per contract: ``abi``, ``bytecode`` (creation) and ``deployedBytecode``
(runtime, used with ``anvil_setCode``), as 0x-prefixed hex.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.errors import ContagionError
from analyzer.paths import data_path, node_modules

CONTRACTS_DIR = data_path("fixtures", "contracts")
ARTIFACTS_DIR = data_path("fixtures", "artifacts")

# paris: no PUSH0/MCOPY, so the runtime code also runs on forks of older mainnet blocks
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


def solc_version() -> str:
    package = json.loads((node_modules() / "solc" / "package.json").read_text())
    return package["version"]


def group_sources(group: str) -> dict[str, str]:
    folder = CONTRACTS_DIR / group
    files = sorted(folder.rglob("*.sol"))
    if not files:
        raise ContagionError(f"no Solidity sources in {folder}")
    return {str(path.relative_to(CONTRACTS_DIR)): path.read_text() for path in files}


def sources_hash(sources: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def compile_sources(sources: dict[str, str]) -> dict[str, dict]:
    """Compile with ``solc --standard-json``; returns {contract name: artifact}."""
    solcjs = node_modules() / "solc" / "solc.js"
    if not solcjs.is_file():
        raise ContagionError("solc not found in node_modules: run `make setup`")
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in sources.items()},
               "settings": SETTINGS}
    # stdout to a file, not a pipe: solc.js calls process.exit() right after console.log, which
    # cuts piped output at 128 KiB (large groups such as compound_v2 produce more)
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run(["node", str(solcjs), "--standard-json", "--base-path", str(CONTRACTS_DIR)],
                              input=json.dumps(request), stdout=out, stderr=subprocess.PIPE, text=True,
                              check=False)
        out.seek(0)
        stdout = out.read()
    start = stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise ContagionError(f"solc failed: {(proc.stderr or stdout).strip()[:500]}")
    output = json.loads(stdout[start:])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ContagionError(f"solc: {errors[0].get('formattedMessage', errors[0]).strip()}")
    contracts: dict[str, dict] = {}
    for source_name, by_name in output.get("contracts", {}).items():
        for name, compiled in by_name.items():
            if name in contracts:
                raise ContagionError(f"two contracts named {name} ({source_name}); names must be unique per group")
            contracts[name] = {
                "source": source_name,
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
    return contracts


def build_group(group: str) -> Path:
    sources = group_sources(group)
    artifact = {"solc": solc_version(), "settings": SETTINGS, "sources_sha256": sources_hash(sources),
                "contracts": compile_sources(sources)}
    return atomic_write_text(ARTIFACTS_DIR / f"{group}.json", json.dumps(artifact, indent=1, sort_keys=True) + "\n")


def load_group(group: str) -> dict:
    path = ARTIFACTS_DIR / f"{group}.json"
    if not path.is_file():
        raise ContagionError(f"artifact {path} is missing: run `python -m analyzer.devnet.solc {group}`")
    return json.loads(path.read_text())


def fixture_artifact(group: str, contract: str) -> dict:
    """The committed artifact of one of our own contracts."""
    contracts = load_group(group)["contracts"]
    if contract not in contracts:
        raise ContagionError(f"no contract {contract} in fixtures/artifacts/{group}.json (has: {', '.join(sorted(contracts))})")
    return contracts[contract]


def groups() -> list[str]:
    return sorted(p.name for p in CONTRACTS_DIR.iterdir() if p.is_dir())


if __name__ == "__main__":
    for name in sys.argv[1:] or groups():
        print(build_group(name))
