"""Compile our own Solidity fixtures with the pinned ``solc`` npm package.

Each folder under ``fixtures/contracts/`` is one group; its compiled artifacts are committed
as ``fixtures/artifacts/<group>.json`` together with a hash of the sources and the compiler
settings, so a test can tell when an artifact is stale. Regenerate them with::

    python -m analyzer.devnet.solc            # every group
    python -m analyzer.devnet.solc compound_v2

A protocol that ships only Solidity source in its npm package (Morpho Blue) is an *npm group*
(:data:`NPM_GROUPS`): its sources are read from ``node_modules`` and compiled the same way, with
the settings its authors build with; an exact ``pragma solidity`` pin older than our compiler is
relaxed to a caret range in memory (the only change to the source), and the artifact records it.

Artifacts hold, per contract: ``abi``, ``bytecode`` (creation) and ``deployedBytecode``
(runtime, used with ``anvil_setCode``), as 0x-prefixed hex.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.chain import REPO_ROOT
from analyzer.errors import ContagionError

CONTRACTS_DIR = REPO_ROOT / "fixtures" / "contracts"
ARTIFACTS_DIR = REPO_ROOT / "fixtures" / "artifacts"
SOLCJS = REPO_ROOT / "node_modules" / "solc" / "solc.js"

# paris: no PUSH0/MCOPY, so the runtime code also runs on forks of older mainnet blocks
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


@dataclass(frozen=True)
class NpmGroup:
    """Solidity source shipped in an npm package: ``package``/``root``, minus ``exclude`` prefixes."""

    package: str
    root: str
    exclude: tuple[str, ...]
    settings: dict
    pragma_pins: tuple[str, ...] = ()    # exact versions relaxed to ``^version`` for the pinned solc


NPM_GROUPS = {
    # Morpho Blue 1.0.0 pins solc 0.8.19 and builds with via-IR at 999,999 optimizer runs
    "morpho_blue": NpmGroup(
        package="@morpho-org/morpho-blue", root="src", exclude=("mocks/",), pragma_pins=("0.8.19",),
        settings={**SETTINGS, "viaIR": True, "optimizer": {"enabled": True, "runs": 999999},
                  "outputSelection": {"Morpho.sol": {"Morpho": ["abi", "evm.bytecode.object",
                                                                "evm.deployedBytecode.object"]}}}),
}


def group_settings(group: str) -> dict:
    return NPM_GROUPS[group].settings if group in NPM_GROUPS else SETTINGS


def npm_group_sources(group: str) -> dict[str, str]:
    spec = NPM_GROUPS[group]
    folder = REPO_ROOT / "node_modules" / spec.package / spec.root
    files = sorted(folder.rglob("*.sol")) if folder.is_dir() else []
    if not files:
        raise ContagionError(f"no Solidity sources in {folder}: run `make setup`")
    sources = {}
    for path in files:
        name = str(path.relative_to(folder))
        if name.startswith(spec.exclude):
            continue
        text = path.read_text()
        for pin in spec.pragma_pins:
            text = text.replace(f"pragma solidity {pin};", f"pragma solidity ^{pin};")
        sources[name] = text
    return sources


def solc_version() -> str:
    package = json.loads((REPO_ROOT / "node_modules" / "solc" / "package.json").read_text())
    return package["version"]


def group_sources(group: str) -> dict[str, str]:
    if group in NPM_GROUPS:
        return npm_group_sources(group)
    folder = CONTRACTS_DIR / group
    files = sorted(folder.rglob("*.sol"))
    if not files:
        raise ContagionError(f"no Solidity sources in {folder}")
    return {str(path.relative_to(CONTRACTS_DIR)): path.read_text() for path in files}


def sources_hash(sources: dict[str, str], settings: dict | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(settings or SETTINGS, sort_keys=True).encode())
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()


def compile_sources(sources: dict[str, str], settings: dict | None = None) -> dict[str, dict]:
    """Compile with ``solc --standard-json``; returns {contract name: artifact}."""
    if not SOLCJS.is_file():
        raise ContagionError("solc not found in node_modules: run `make setup`")
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in sources.items()},
               "settings": settings or SETTINGS}
    # stdout to a file, not a pipe: solc.js calls process.exit() right after console.log, which
    # cuts piped output at 128 KiB (large groups such as compound_v2 produce more)
    # stdin from a file too: solc.js reads it with one readFileSync, which fails with EAGAIN when a
    # large request arrives through a pipe faster than node reads it
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as stdin:
        stdin.write(json.dumps(request))
        stdin.seek(0)
        proc = subprocess.run(["node", str(SOLCJS), "--standard-json", "--base-path", str(CONTRACTS_DIR)],
                              stdin=stdin, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
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
    sources, settings = group_sources(group), group_settings(group)
    artifact = {"solc": solc_version(), "settings": settings, "sources_sha256": sources_hash(sources, settings),
                "contracts": compile_sources(sources, settings)}
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
    return sorted([p.name for p in CONTRACTS_DIR.iterdir() if p.is_dir()] + list(NPM_GROUPS))


if __name__ == "__main__":
    for name in sys.argv[1:] or groups():
        print(build_group(name))
