"""Send a transaction to anvil and wait for its receipt: the one sending path of every executor."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3

from analyzer.chain import rpc
from analyzer.errors import ContagionError

GAS_MARGIN = 1.2        # the node's gas estimate times this, plus GAS_EXTRA, is the limit sent
GAS_EXTRA = 50_000
# anvil mines a sent transaction at once but may answer before the block is committed: the receipt
# is a few milliseconds away, not web3's default poll of 0.1 s (a replay sends hundreds)
RECEIPT_POLL_S = 0.005


def send(w3: Web3, call: Any, sender: str, what: str, *, gas: int | None = None, margin: float = GAS_MARGIN,
         value: int = 0, impersonate: bool = False, timeout: float = 120) -> Any:
    """Send ``call`` from ``sender`` and wait for its receipt.

    Parameters
    ----------
    w3
        A connection to anvil (executors check it with :func:`analyzer.chain.require_anvil` when
        they are made; nothing here sends to another client).
    call
        A web3 contract call (``contract.functions.f(...)`` or ``contract.constructor(...)``), or a
        transaction dict with ``to`` and ``data``.
    sender
        The sending address: an anvil account, or any address with ``impersonate``.
    what
        What the transaction does, for the error message (``"comet absorb"``).
    gas
        The gas limit; None: the node's estimate × ``margin`` + 50,000 (a revert shows at the estimate).
    value
        Wei sent with the call.
    impersonate
        Impersonate ``sender`` first (``anvil_impersonateAccount``).
    timeout
        Seconds to wait for the receipt.

    Returns
    -------
    TxReceipt
        The receipt of the mined transaction (status 1).

    Raises
    ------
    ContagionError
        ``"<what> reverted: <reason>"`` when the node refuses it (at the gas estimate or when sent),
        ``"<what> failed (tx 0x…)"`` when it was mined with status 0.
    """
    sender = to_checksum_address(sender)
    if impersonate:
        rpc(w3, "anvil_impersonateAccount", [sender])
    tx: dict[str, Any] = {"from": sender, **({"value": value} if value else {})}
    raw: Any = {**call, **tx} if isinstance(call, dict) else None
    try:
        if gas is None:
            estimate = w3.eth.estimate_gas(raw) if raw is not None else call.estimate_gas(tx)
            gas = int(estimate * margin) + GAS_EXTRA
        tx["gas"] = gas
        tx_hash = w3.eth.send_transaction({**raw, "gas": gas}) if raw is not None else call.transact(tx)
    except Exception as exc:  # web3 raises several types for a revert
        raise ContagionError(f"{what} reverted: {exc}") from None
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=RECEIPT_POLL_S)
    if receipt["status"] != 1:
        raise ContagionError(f"{what} failed (tx {receipt['transactionHash'].hex()})")
    return receipt
