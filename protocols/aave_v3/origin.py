"""Aave V3.6 artifacts compiled from ``@aave-dao/aave-v3-origin`` (Solidity source only on npm).

The package's imports resolve as its own build does: relative paths inside the package, and
``openzeppelin-contracts/contracts/...`` to ``@openzeppelin/contracts/...``. The import closure of
the contracts the devnet deploys is compiled with the pinned ``solc`` and committed as
``fixtures/artifacts/aave_v3_origin.json`` with a hash of every source in that closure and the
settings, so a test can tell when it is stale without compiling (a compile takes about a
minute). Regenerate with::

    python -m protocols.aave_v3.origin

Each artifact keeps ``abi``, ``bytecode`` and ``linkReferences`` (the logic libraries are
external: ``PoolInstance`` links SupplyLogic, BorrowLogic, ... which are kept too).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from analyzer.atomic import atomic_write_text
from analyzer.devnet.context import NODE_MODULES
from analyzer.devnet.solc import ARTIFACTS_DIR, SOLCJS, solc_version
from analyzer.errors import ContagionError

PACKAGE = "@aave-dao/aave-v3-origin"
ARTIFACT = ARTIFACTS_DIR / "aave_v3_origin.json"
# import prefix -> folder under node_modules (the package's own remapping of OpenZeppelin)
REMAPPINGS = {"openzeppelin-contracts/": "@openzeppelin/"}
ROOT = f"{PACKAGE}/src/contracts/"
TARGETS = {
    "PoolInstance": "instances/PoolInstance.sol",
    "PoolConfiguratorInstance": "instances/PoolConfiguratorInstance.sol",
    "ATokenInstance": "instances/ATokenInstance.sol",
    "VariableDebtTokenInstance": "instances/VariableDebtTokenInstance.sol",
    "PoolAddressesProvider": "protocol/configuration/PoolAddressesProvider.sol",
    "ACLManager": "protocol/configuration/ACLManager.sol",
    "DefaultReserveInterestRateStrategyV2": "misc/DefaultReserveInterestRateStrategyV2.sol",
    "AaveOracle": "misc/AaveOracle.sol",
    "AaveProtocolDataProvider": "helpers/AaveProtocolDataProvider.sol",
    "UiPoolDataProviderV3": "helpers/UiPoolDataProviderV3.sol",
    # L2 markets: liquidations and borrows wait for the sequencer (tests set one on the devnet)
    "PriceOracleSentinel": "misc/PriceOracleSentinel.sol",
}
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    # paris: no PUSH0/MCOPY, as our other fixtures (runs on forks of older blocks too)
    "evmVersion": "paris",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences"]}},
}
_IMPORT = re.compile(r"""^\s*import\s+(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]\s*;""", re.MULTILINE)


def _file(source_name: str) -> Path:
    for prefix, folder in REMAPPINGS.items():
        if source_name.startswith(prefix):
            return NODE_MODULES / (folder + source_name[len(prefix):])
    return NODE_MODULES / source_name


def _resolve(importer: str, path: str) -> str:
    if path.startswith("."):
        return posixpath.normpath(posixpath.join(posixpath.dirname(importer), path))
    return path


@cache
def sources() -> dict[str, str]:
    """Every source in the import closure of :data:`TARGETS`, by source name."""
    found: dict[str, str] = {}
    todo = [ROOT + path for path in TARGETS.values()]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        file = _file(name)
        if not file.is_file():
            raise ContagionError(f"{PACKAGE}: source {name} not found ({file}); is the npm package installed?")
        found[name] = file.read_text()
        todo += [_resolve(name, p) for p in _IMPORT.findall(found[name])]
    return found


def sources_hash(files: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True).encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def _compile(files: dict[str, str]) -> dict:
    if not SOLCJS.is_file():
        raise ContagionError("solc not found in node_modules: run `make setup`")
    request = {"language": "Solidity", "sources": {n: {"content": s} for n, s in files.items()},
               "settings": SETTINGS}
    with tempfile.TemporaryFile(mode="w+") as out:  # a file, not a pipe (solc.js truncates pipes)
        proc = subprocess.run(["node", str(SOLCJS), "--standard-json"], input=json.dumps(request), stdout=out,
                              stderr=subprocess.PIPE, text=True, check=False)
        out.seek(0)
        stdout = out.read()
    start = stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise ContagionError(f"solc failed: {(proc.stderr or stdout).strip()[:500]}")
    output = json.loads(stdout[start:])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise ContagionError(f"solc: {errors[0].get('formattedMessage', errors[0]).strip()}")
    return output["contracts"]


def build() -> Path:
    """Compile the targets and the libraries they link; write the committed artifact."""
    files = sources()
    compiled = _compile(files)
    contracts: dict[str, dict] = {}
    todo = [(ROOT + path, name) for name, path in TARGETS.items()]
    while todo:
        source, name = todo.pop()
        if name in contracts:
            continue
        evm = compiled[source][name]["evm"]["bytecode"]
        contracts[name] = {"source": source, "abi": compiled[source][name]["abi"],
                           "bytecode": "0x" + evm["object"], "linkReferences": evm["linkReferences"]}
        todo += [(lib_source, lib) for lib_source, libs in evm["linkReferences"].items() for lib in libs]
    artifact = {"package": PACKAGE, "package_version": package_version(), "solc": solc_version(),
                "settings": SETTINGS, "sources_sha256": sources_hash(files), "contracts": contracts}
    return atomic_write_text(ARTIFACT, json.dumps(artifact, indent=1, sort_keys=True) + "\n")


def package_version() -> str:
    return json.loads((NODE_MODULES / PACKAGE / "package.json").read_text())["version"]


@cache
def _load() -> dict:
    if not ARTIFACT.is_file():
        raise ContagionError(f"{ARTIFACT} is missing: run `python -m protocols.aave_v3.origin`")
    return json.loads(ARTIFACT.read_text())


def artifact(name: str) -> dict:
    """The committed v3.6 artifact of contract ``name`` (``abi``, ``bytecode``, ``linkReferences``)."""
    contracts = _load()["contracts"]
    if name not in contracts:
        raise ContagionError(f"no contract {name} in {ARTIFACT.name} (has: {', '.join(sorted(contracts))})")
    return {"contractName": name, **contracts[name]}


def committed() -> dict:
    return _load()


if __name__ == "__main__":
    print(build(), file=sys.stderr)
