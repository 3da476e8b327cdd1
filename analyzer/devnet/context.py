"""Deploying real bytecode with web3: artifacts, library linking, transactions.

Artifacts come from npm packages (hardhat ``artifacts/**/<Name>.json``, e.g. ``@aave/core-v3``)
or from our own compiled fixtures (``fixtures/artifacts/<group>.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from analyzer.chain import require_anvil, rpc
from analyzer.errors import ContagionError
from analyzer.paths import node_modules

NODE_MODULES = node_modules()   # the npm folder found at import (analyzer.paths.node_modules)


@cache
def _artifact_index(package: str) -> dict[str, list[Path]]:
    root = node_modules() / package
    if not root.is_dir():
        raise ContagionError(f"npm package {package} is not installed: run `make setup`")
    index: dict[str, list[Path]] = {}
    for path in root.rglob("*.json"):
        if path.name.endswith(".dbg.json") or "node_modules" in path.relative_to(root).parts:
            continue
        index.setdefault(path.stem, []).append(path)
    return index


@cache
def npm_artifact(package: str, name: str, hint: str = "") -> dict:
    """The hardhat artifact of contract ``name`` shipped in npm ``package``.

    ``hint`` picks among several files of the same name (a substring of the path).
    """
    candidates = [p for p in _artifact_index(package).get(name, []) if hint in str(p)]
    candidates = [p for p in candidates if "artifacts" in p.parts or "build" in p.parts] or candidates
    loaded = []
    for path in sorted(candidates, key=lambda p: len(str(p))):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "abi" in data and "bytecode" in data:
            loaded.append(data)
    if not loaded:
        raise ContagionError(f"no artifact {name} in npm package {package}")
    return loaded[0]


def link_bytecode(artifact: dict, libraries: dict[str, str]) -> str:
    """Creation bytecode with library addresses spliced in at the artifact's linkReferences."""
    code = artifact["bytecode"]
    code = code[2:] if code.startswith("0x") else code
    references = artifact.get("linkReferences") or {}
    chars = list(code)
    for _file, libs in references.items():
        for lib, spots in libs.items():
            if lib not in libraries:
                raise ContagionError(f"{artifact.get('contractName', 'contract')} needs library {lib} linked")
            address = libraries[lib].lower().removeprefix("0x")
            for spot in spots:
                start = spot["start"] * 2
                chars[start:start + spot["length"] * 2] = address
    linked = "".join(chars)
    if "__" in linked:
        raise ContagionError(f"{artifact.get('contractName', 'contract')} has unlinked libraries left")
    return "0x" + linked


@dataclass
class DevnetContext:
    """What a protocol's devnet part uses to deploy and seed: a chain, a deployer, the scenario
    and the address book built so far (``book["tokens"][symbol]``, ``book["feeds"][symbol]``)."""

    w3: Web3
    deployer: str
    scenario: Any
    book: dict[str, Any] = field(default_factory=dict)
    gas: int = 15_000_000
    shared: dict[str, Any] = field(default_factory=dict)   # what devnet parts share while building (the bulk seeder)

    def __post_init__(self) -> None:
        require_anvil(self.w3)

    # ---- contracts ----
    def contract(self, address: str, abi: list) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abi)

    def deploy(self, artifact: dict, *args: Any, libraries: dict[str, str] | None = None,
               sender: str | None = None) -> Contract:
        """Deploy ``artifact`` with constructor ``args``; returns the contract at its address."""
        bytecode = link_bytecode(artifact, libraries or {})
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender or self.deployer, "gas": self.gas})
        receipt = self._receipt(tx_hash, f"deploy {artifact.get('contractName', '')}")
        return self.contract(receipt["contractAddress"], artifact["abi"])

    def transact(self, call: Any, sender: str | None = None, value: int = 0, what: str = "") -> dict:
        """Send a contract function call; raise ContagionError (with the revert reason) on failure."""
        tx = {"from": to_checksum_address(sender or self.deployer), "value": value}
        try:
            tx["gas"] = int(call.estimate_gas(tx) * 1.3) + 50_000
        except Exception as exc:
            name = what or getattr(call, "fn_name", "call")
            raise ContagionError(f"{name} would revert: {exc}") from None
        return self._receipt(call.transact(tx), what or getattr(call, "fn_name", "call"))

    def _receipt(self, tx_hash: bytes, what: str) -> dict:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise ContagionError(f"{what} failed (tx {tx_hash.hex()})")
        return receipt

    # ---- cheats ----
    def fund_eth(self, account: str, wei: int) -> None:
        rpc(self.w3, "anvil_setBalance", [to_checksum_address(account), hex(wei)])

    def impersonate(self, account: str) -> None:
        rpc(self.w3, "anvil_impersonateAccount", [to_checksum_address(account)])
