"""Compile our own Solidity fixtures with the pinned ``solc`` npm package.

Each folder under ``fixtures/contracts/`` is one group; its compiled artifacts are committed
as ``fixtures/artifacts/<group>.json`` together with a hash of the sources and the compiler
settings, so a test can tell when an artifact is stale. Regenerate them with::

    python -m analyzer.devnet.solc            # every group
    python -m analyzer.devnet.solc compound_v2

A group may also be a set of contracts shipped as source in an npm package (:data:`NPM_GROUPS`):
Chainlink's ``EACAggregatorProxy`` and ``FluxAggregator`` from ``@chainlink/contracts`` 0.8.0
(``src/v0.6/``), compiled with ``solc-0.6`` (solc 0.6.12). Their files pin ``pragma solidity
0.6.6``, a compiler npm does not ship for this round; the only change made to the package's text
is that pragma, widened to ``^0.6.6`` (the sources hash covers the text as compiled).

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
from analyzer.chain import REPO_ROOT
from analyzer.errors import ContagionError

CONTRACTS_DIR = REPO_ROOT / "fixtures" / "contracts"
ARTIFACTS_DIR = REPO_ROOT / "fixtures" / "artifacts"
SOLCJS = REPO_ROOT / "node_modules" / "solc" / "solc.js"
NODE_MODULES = REPO_ROOT / "node_modules"

# paris: no PUSH0/MCOPY, so the runtime code also runs on forks of older mainnet blocks
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


@dataclass(frozen=True)
class NpmGroup:
    """Contracts compiled from an npm package's own sources: ``entries`` (paths inside the package)
    and every file they import, relative to them."""

    package: str
    compiler: str                 # the npm package of the compiler (solc-js)
    entries: tuple[str, ...]
    evm_version: str
    pragma: tuple[str, str] = ("", "")   # (pinned pragma, the one we compile under)


NPM_GROUPS = {
    "chainlink": NpmGroup("@chainlink/contracts", "solc-0.6",
                          ("src/v0.6/EACAggregatorProxy.sol", "src/v0.6/FluxAggregator.sol"), "istanbul",
                          ("pragma solidity 0.6.6;", "pragma solidity ^0.6.6;")),
}


def solc_version(group: str | None = None) -> str:
    compiler = NPM_GROUPS[group].compiler if group in NPM_GROUPS else "solc"
    package = json.loads((NODE_MODULES / compiler / "package.json").read_text())
    return package["version"]


def group_settings(group: str) -> dict:
    if group not in NPM_GROUPS:
        return SETTINGS
    return {**SETTINGS, "evmVersion": NPM_GROUPS[group].evm_version}


def _npm_sources(spec: NpmGroup) -> dict[str, str]:
    root = NODE_MODULES / spec.package
    sources: dict[str, str] = {}
    pending = list(spec.entries)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        path = root / name
        if not path.is_file():
            raise ContagionError(f"{spec.package}/{name} is missing: run `make setup`")
        text = path.read_text().replace(*spec.pragma) if spec.pragma[0] else path.read_text()
        sources[name] = text
        for imported in re.findall(r'^import\s+"([^"]+)";', text, flags=re.MULTILINE):
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), imported)))
    return sources


def group_sources(group: str) -> dict[str, str]:
    if group in NPM_GROUPS:
        return _npm_sources(NPM_GROUPS[group])
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
    """Standard-JSON output of an older solc-js (``require(compiler).compile``), through a file."""
    module = NODE_MODULES / compiler
    if not module.is_dir():
        raise ContagionError(f"{compiler} not found in node_modules: run `make setup`")
    script = ("const fs=require('fs');const solc=require(process.argv[1]);"
              "fs.writeFileSync(process.argv[3],solc.compile(fs.readFileSync(process.argv[2],'utf8')));")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "in.json").write_text(json.dumps(request))
        proc = subprocess.run(["node", "-e", script, str(module), str(Path(tmp, "in.json")), str(Path(tmp, "out.json"))],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not Path(tmp, "out.json").is_file():
            raise ContagionError(f"{compiler} failed: {proc.stderr.strip()[:500]}")
        return Path(tmp, "out.json").read_text()


def compile_sources(sources: dict[str, str], group: str | None = None) -> dict[str, dict]:
    """Compile with ``solc --standard-json``; returns {contract name: artifact}."""
    if not SOLCJS.is_file():
        raise ContagionError("solc not found in node_modules: run `make setup`")
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in sources.items()},
               "settings": group_settings(group) if group else SETTINGS}
    if group in NPM_GROUPS:
        return _contracts(json.loads(_compile_with_module(NPM_GROUPS[group].compiler, request)),
                          only=set(NPM_GROUPS[group].entries))
    # stdout to a file, not a pipe: solc.js calls process.exit() right after console.log, which
    # cuts piped output at 128 KiB (large groups such as compound_v2 produce more)
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.run(["node", str(SOLCJS), "--standard-json", "--base-path", str(CONTRACTS_DIR)],
                              input=json.dumps(request), stdout=out, stderr=subprocess.PIPE, text=True,
                              check=False)
        out.seek(0)
        stdout = out.read()
    start = stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise ContagionError(f"solc failed: {(proc.stderr or stdout).strip()[:500]}")
    return _contracts(json.loads(stdout[start:]))


def _contracts(output: dict, only: set[str] | None = None) -> dict[str, dict]:
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ContagionError(f"solc: {errors[0].get('formattedMessage', errors[0]).strip()}")
    contracts: dict[str, dict] = {}
    for source_name, by_name in output.get("contracts", {}).items():
        if only is not None and source_name not in only:
            continue
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
    settings = group_settings(group)
    artifact = {"solc": solc_version(group), "settings": settings, "sources_sha256": sources_hash(sources, settings),
                "contracts": compile_sources(sources, group)}
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
