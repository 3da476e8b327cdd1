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
A group may name its own compiler package and only some entry files (with their import closure):
Chainlink's ``EACAggregatorProxy`` and ``FluxAggregator`` (``@chainlink/contracts`` 0.8.0,
``src/v0.6``, pinned to solc 0.6.6) are compiled with ``solc-0.6`` (solc 0.6.12).

Artifacts hold, per contract: ``abi``, ``bytecode`` (creation) and ``deployedBytecode``
(runtime, used with ``anvil_setCode``), as 0x-prefixed hex.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.errors import ContagionError
from analyzer.paths import data_path, node_modules

CONTRACTS_DIR = data_path("fixtures", "contracts")
ARTIFACTS_DIR = data_path("fixtures", "artifacts")
SOLCJS = node_modules() / "solc" / "solc.js"   # the npm folder as found at import (analyzer.paths.node_modules)

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
    compiler: str = "solc"               # the solc-js npm package that compiles the group
    entries: tuple[str, ...] = ()        # only these files (under root) and what they import


NPM_GROUPS = {
    # Morpho Blue 1.0.0 pins solc 0.8.19 and builds with via-IR at 999,999 optimizer runs
    "morpho_blue": NpmGroup(
        package="@morpho-org/morpho-blue", root="src", exclude=("mocks/",), pragma_pins=("0.8.19",),
        settings={**SETTINGS, "viaIR": True, "optimizer": {"enabled": True, "runs": 999999},
                  "outputSelection": {"Morpho.sol": {"Morpho": ["abi", "evm.bytecode.object",
                                                                "evm.deployedBytecode.object"]}}}),
    # Chainlink's proxy and aggregator as mainnet's USD feeds run them (istanbul: solc 0.6's newest)
    "chainlink": NpmGroup(
        package="@chainlink/contracts", root="src/v0.6", exclude=(), pragma_pins=("0.6.6",), compiler="solc-0.6",
        entries=("EACAggregatorProxy.sol", "FluxAggregator.sol"),
        settings={**SETTINGS, "evmVersion": "istanbul",
                  "outputSelection": {f: {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
                                      for f in ("EACAggregatorProxy.sol", "FluxAggregator.sol")}}),
}


def group_settings(group: str) -> dict:
    return NPM_GROUPS[group].settings if group in NPM_GROUPS else SETTINGS


def _import_closure(folder: Path, entries: tuple[str, ...]) -> list[Path]:
    """``entries`` and every file they import (relative imports), transitively."""
    found: set[str] = set()
    pending = list(entries)
    while pending:
        name = pending.pop()
        if name in found or not (folder / name).is_file():
            continue
        found.add(name)
        for imported in re.findall(r'^import\s+"([^"]+)";', (folder / name).read_text(), flags=re.MULTILINE):
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), imported)))
    return sorted(folder / name for name in found)


def npm_group_sources(group: str) -> dict[str, str]:
    spec = NPM_GROUPS[group]
    folder = node_modules() / spec.package / spec.root
    if spec.entries:
        files = _import_closure(folder, spec.entries)
    else:
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


def group_compiler(group: str) -> str:
    return NPM_GROUPS[group].compiler if group in NPM_GROUPS else "solc"


def solc_version(compiler: str = "solc") -> str:
    package = json.loads((node_modules() / compiler / "package.json").read_text())
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


def _compile_with_module(compiler: str, request: dict) -> str:
    """Standard-JSON output of a solc-js package's ``compile`` (older solc-js has no CLI mode for it),
    request and answer through files."""
    module = node_modules() / compiler
    if not module.is_dir():
        raise ContagionError(f"{compiler} not found in node_modules: run `make setup`")
    script = ("const fs=require('fs');const solc=require(process.argv[1]);"
              "fs.writeFileSync(process.argv[3],solc.compile(fs.readFileSync(process.argv[2],'utf8')));")
    with tempfile.TemporaryDirectory() as tmp:
        request_file, answer_file = Path(tmp, "in.json"), Path(tmp, "out.json")
        request_file.write_text(json.dumps(request))
        proc = subprocess.run(["node", "-e", script, str(module), str(request_file), str(answer_file)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not answer_file.is_file():
            raise ContagionError(f"{compiler} failed: {proc.stderr.strip()[:500]}")
        return answer_file.read_text()


def compile_sources(sources: dict[str, str], settings: dict | None = None, compiler: str = "solc") -> dict[str, dict]:
    """Compile with ``solc --standard-json`` (or ``compiler``'s solc-js); returns {contract name: artifact}."""
    solcjs = node_modules() / "solc" / "solc.js"
    if not solcjs.is_file():
        raise ContagionError("solc not found in node_modules: run `make setup`")
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in sources.items()},
               "settings": settings or SETTINGS}
    if compiler != "solc":
        return _contracts(json.loads(_compile_with_module(compiler, request)))
    # stdout to a file, not a pipe: solc.js calls process.exit() right after console.log, which
    # cuts piped output at 128 KiB (large groups such as compound_v2 produce more)
    # stdin from a file too: solc.js reads it with one readFileSync, which fails with EAGAIN when a
    # large request arrives through a pipe faster than node reads it
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as stdin:
        stdin.write(json.dumps(request))
        stdin.seek(0)
        proc = subprocess.run(["node", str(solcjs), "--standard-json", "--base-path", str(CONTRACTS_DIR)],
                              stdin=stdin, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
        out.seek(0)
        stdout = out.read()
    start = stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise ContagionError(f"solc failed: {(proc.stderr or stdout).strip()[:500]}")
    return _contracts(json.loads(stdout[start:]))


def _contracts(output: dict) -> dict[str, dict]:
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
    sources, settings, compiler = group_sources(group), group_settings(group), group_compiler(group)
    artifact = {"solc": solc_version(compiler), "settings": settings, "sources_sha256": sources_hash(sources, settings),
                "contracts": compile_sources(sources, settings, compiler)}
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
