"""Bulk populations: tens of thousands of devnet accounts opened with real protocol transactions.

Seeding one impersonated account at a time costs several round trips and blocks per account: a
mainnet-sized book (10^5 accounts) would take hours. Here each account is a small contract (an
EIP-1167 clone of ``SeedAccount``, ``fixtures/contracts/seeding``) created by one ``BulkSeeder``
per devnet, and a single transaction creates a few hundred accounts and has each make its own
calls (mint, approve, supply, enter markets, borrow) as itself. The protocols see ordinary
accounts acting for themselves and emit their ordinary events, so discovery finds them as it finds
any account. The block gas limit is raised while seeding and restored after; transactions are sent
without waiting and their receipts checked together.

A protocol plugin builds one :class:`AccountPlan` per account from its scenario table (calls in
which :data:`SELF` stands for the account's address); the same label is the same account in every
protocol (:func:`bulk_account`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from analyzer.chain import rpc
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.multicall import Call, parse_signature

SELF = "0x5E1F5E1f5E1F5e1F5e1f5E1f5E1f5E1f5E1F5E1F"   # BulkSeeder.SELF: "the account itself" in a call
SEED = "seed((bytes32,address[],bytes[])[])"
BLOCK_GAS_WHILE_SEEDING = 1_000_000_000
GAS_PER_TX = 900_000_000
ACCOUNTS_PER_TX = 250


@dataclass(frozen=True)
class AccountPlan:
    """One account of a bulk population: its label and the calls it makes, in order."""

    label: str
    calls: tuple[Call, ...]


def salt(label: str) -> bytes:
    return keccak(text=f"defi-contagion/bulk-account/{label}")


def seeder(ctx) -> str:
    """The devnet's BulkSeeder (deployed at first use; every protocol's population shares it)."""
    if "bulk_seeder" not in ctx.shared:
        contract = ctx.deploy(fixture_artifact("seeding", "BulkSeeder"))
        ctx.shared["bulk_seeder"] = contract.address
        ctx.shared["bulk_implementation"] = contract.functions.implementation().call()
    return ctx.shared["bulk_seeder"]


def bulk_account(ctx, label: str) -> str:
    """The address of ``label``'s account (CREATE2 of its clone by the devnet's seeder)."""
    address = bytes.fromhex(seeder(ctx)[2:])
    implementation = bytes.fromhex(ctx.shared["bulk_implementation"][2:])
    clone = (bytes.fromhex("3d602d80600a3d3981f3363d3d373d3d3d363d73") + implementation
             + bytes.fromhex("5af43d82803e903d91602b57fd5bf3"))
    return to_checksum_address(keccak(b"\xff" + address + salt(label) + keccak(clone))[12:])


def _encode(plans: Sequence[AccountPlan]) -> bytes:
    rows = [(salt(p.label), [to_checksum_address(c.target) for c in p.calls], [c.calldata for c in p.calls])
            for p in plans]
    return parse_signature(SEED)[0] + abi_encode(["(bytes32,address[],bytes[])[]"], [rows])


def seed_accounts(ctx, plans: Sequence[AccountPlan], what: str, *, accounts_per_tx: int = ACCOUNTS_PER_TX,
                  progress: Callable[[str], None] = lambda message: None) -> None:
    """Open every plan's account with real transactions, ``accounts_per_tx`` accounts per transaction."""
    if not plans:
        return
    w3, target = ctx.w3, seeder(ctx)
    gas_limit = int(w3.eth.get_block("latest")["gasLimit"])
    rpc(w3, "anvil_setBlockGasLimit", [hex(BLOCK_GAS_WHILE_SEEDING)])
    sent: list[tuple[str, dict, str]] = []
    try:
        for start in range(0, len(plans), accounts_per_tx):
            batch = plans[start:start + accounts_per_tx]
            tx = {"from": ctx.deployer, "to": target, "data": "0x" + _encode(batch).hex(), "gas": hex(GAS_PER_TX)}
            sent.append((rpc(w3, "eth_sendTransaction", [tx]), tx, f"{batch[0].label}..{batch[-1].label}"))
            if len(sent) % 20 == 0:
                progress(f"devnet: {what}: {start + len(batch):,} of {len(plans):,} accounts sent")
        for tx_hash, tx, labels in sent:
            receipt = _receipt(w3, tx_hash)
            if int(receipt["status"], 16) != 1:
                raise ContagionError(f"{what}: seeding accounts {labels} failed: {_reason(w3, tx, receipt)}")
    finally:
        rpc(w3, "anvil_setBlockGasLimit", [hex(gas_limit)])


def _receipt(w3, tx_hash: str, timeout_seconds: float = 600.0) -> dict:
    """The raw receipt (web3's formatting of thousands of logs per receipt would take minutes)."""
    deadline = time.monotonic() + timeout_seconds
    while (receipt := rpc(w3, "eth_getTransactionReceipt", [tx_hash])) is None:
        if time.monotonic() > deadline:
            raise ContagionError(f"seeding transaction {tx_hash} not mined after {timeout_seconds:.0f} s")
        time.sleep(0.01)
    return receipt


def _reason(w3, tx: dict, receipt: dict) -> str:
    """The revert reason of a failed seeding transaction, replayed at the block before it."""
    answer = w3.provider.make_request("eth_call", [tx, hex(int(receipt["blockNumber"], 16) - 1)])
    error = answer.get("error") or {}
    return str(error.get("message", error))[:300] or f"tx {receipt['transactionHash']}"


@dataclass(frozen=True)
class BulkSpec:
    """A scenario's ``bulk`` table: ``accounts`` labelled ``<label>-<first>`` onwards, a
    ``borrower_share`` of which borrow ``utilisation`` (a fraction drawn in the range) of their
    borrowing power; collateral worth ``collateral_usd`` (log-uniform) in 1..``max_collaterals`` assets."""

    accounts: int
    first: int = 0
    label: str = "bulk"
    borrower_share: float = 0.5
    collateral_usd: tuple[float, float] = (200.0, 200_000.0)
    utilisation: tuple[float, float] = (0.3, 0.95)
    max_collaterals: int = 2

    def labels(self) -> list[str]:
        return [f"{self.label}-{i}" for i in range(self.first, self.first + self.accounts)]

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per account, in this order from ``rng``: collateral USD (log-uniform), number of
        collateral assets, whether it borrows, and the share of its borrowing power it uses."""
        n = self.accounts
        value = np.exp(rng.uniform(math.log(self.collateral_usd[0]), math.log(self.collateral_usd[1]), n))
        count = rng.integers(1, self.max_collaterals + 1, n)
        borrows = rng.random(n) < self.borrower_share
        share = rng.uniform(*self.utilisation, n)
        return value, count, borrows, share


def bulk_spec(table: object, where: str) -> BulkSpec | None:
    """The ``bulk`` table at ``where`` validated (None when absent); errors name the field."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ContagionError(f"{where}: expected a table")
    unknown = set(table) - set(BulkSpec.__dataclass_fields__)
    if unknown:
        raise ContagionError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        spec = BulkSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})
    except TypeError as exc:
        raise ContagionError(f"{where}: {exc}") from None
    lo, hi = spec.collateral_usd
    u_lo, u_hi = spec.utilisation
    if not (isinstance(spec.accounts, int) and spec.accounts >= 0 and isinstance(spec.first, int) and spec.first >= 0
            and 0 <= spec.borrower_share <= 1 and 0 < lo < hi and 0 < u_lo <= u_hi < 1 and spec.max_collaterals >= 1):
        raise ContagionError(f"{where}: expected accounts >= 0, first >= 0, 0 <= borrower_share <= 1, "
                             "0 < collateral_usd lo < hi, 0 < utilisation lo <= hi < 1, max_collaterals >= 1")
    return spec
