"""anvil cheats that replay and executors share: fund an account with any ERC20, mine, read roots.

Every function here calls :func:`analyzer.chain.require_anvil` first (reads excepted): they
rewrite chain state and are for forks and devnets only.
"""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from analyzer.chain import require_anvil, rpc
from analyzer.errors import ContagionError
from analyzer.multicall import Call, single_call
from analyzer.transactions import send

_found_slots: dict[tuple[int, str], tuple[int, bool]] = {}


def _balance(w3: Web3, token: str, account: str) -> int:
    result = single_call(w3, Call(token, "balanceOf(address)(uint256)", (account,)), block=w3.eth.block_number)
    if not result.success:
        raise ContagionError(f"token {token} does not answer balanceOf")
    return int(result.value)


def _slot_key(account: str, slot: int, vyper: bool) -> str:
    parts = (slot, account) if vyper else (account, slot)
    types = ("uint256", "address") if vyper else ("address", "uint256")
    return "0x" + keccak(abi_encode(list(types), list(parts))).hex()


def _set_storage(w3: Web3, token: str, key: str, value: int) -> None:
    rpc(w3, "anvil_setStorageAt", [token, key, "0x" + value.to_bytes(32, "big").hex()])


def deal(w3: Web3, token: str, account: str, amount_raw: int) -> None:
    """Set ``account``'s ``token`` balance to ``amount_raw`` by writing the balance mapping's slot.

    The slot is found by probing (Solidity ``mapping(address => uint)`` at slots 0..63, then the
    Vyper layout): write a marker, read ``balanceOf``, restore what was there when it is not the
    balance. Tokens whose balance is computed (rebasing shares, aTokens) are refused.
    """
    require_anvil(w3)
    token, account = to_checksum_address(token), to_checksum_address(account)
    chain = w3.eth.chain_id
    known = _found_slots.get((chain, token))
    candidates = [known] if known else [(s, v) for v in (False, True) for s in range(64)]
    marker = 0x5EED_0F_C0_47_A6_10_4E
    for slot, vyper in candidates:
        key = _slot_key(account, slot, vyper)
        before = int(rpc(w3, "eth_getStorageAt", [token, key, "latest"]), 16)
        _set_storage(w3, token, key, marker)
        if _balance(w3, token, account) == marker:
            _set_storage(w3, token, key, amount_raw)
            _found_slots[(chain, token)] = (slot, vyper)
            return
        _set_storage(w3, token, key, before)
    raise ContagionError(f"cannot fund {account} with token {token}: its balance is not a plain storage mapping")


def mine(w3: Web3, blocks: int = 1) -> int:
    require_anvil(w3)
    rpc(w3, "anvil_mine", [hex(blocks)])
    return w3.eth.block_number


def state_root(w3: Web3, block: int) -> str:
    """The state root of ``block`` (a read: works on any node)."""
    return w3.eth.get_block(block)["stateRoot"].hex()


def read(w3: Web3, target: str, signature: str, *args) -> object:
    """One view call at the latest block (``signature`` as Multicall's ``name(types)(outputs)``)."""
    return single_call(w3, Call(target, signature, tuple(args)), block="latest").unwrap(
        f"{signature.split('(')[0]} on {target}")


def send_as(w3: Web3, sender: str, target: str, signature: str, *args, what: str = "") -> dict:
    """Send a call as ``sender``, impersonated (and given gas money) when it is not one of anvil's
    own accounts: a governance or admin call on a fork. Raises ContagionError with the revert."""
    require_anvil(w3)
    sender = to_checksum_address(sender)
    if sender not in w3.eth.accounts:
        rpc(w3, "anvil_impersonateAccount", [sender])
        if w3.eth.get_balance(sender) < 10**18:
            rpc(w3, "anvil_setBalance", [sender, hex(10**20)])
    tx = {"to": to_checksum_address(target), "data": "0x" + Call(target, signature, args).calldata.hex()}
    return send(w3, tx, sender, what or signature)
