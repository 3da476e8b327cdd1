"""The contracts of Uniswap V4 on a chain we own: the real ``PoolManager`` (the forge build that
@uniswap/v4-core 1.0 ships in ``out/``, solc 0.8.26, via-IR) and our unlock-callback router
(fixtures/contracts/uniswap_v4/V4Router.sol), and the pool key / pool id of v4-core's ``PoolKey``
and ``PoolIdLibrary.toId`` (keccak256 of the ABI-encoded key)."""

from __future__ import annotations

import json
from functools import cache

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.paths import node_modules

PACKAGE = "@uniswap/v4-core"
ZERO = "0x0000000000000000000000000000000000000000"


def _forge_output(source: str, name: str) -> dict:
    path = node_modules() / PACKAGE / "out" / source / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ContagionError(f"{path} not found: the {PACKAGE} npm package ships its forge build in out/") from None


@cache
def pool_manager_artifact() -> dict:
    """``abi`` and creation ``bytecode`` of v4-core's PoolManager, from the package's forge output."""
    data = _forge_output("PoolManager.sol", "PoolManager")
    return {"abi": data["abi"], "bytecode": data["bytecode"]["object"], "contractName": "PoolManager"}


@cache
def erc20_abi() -> list:
    """v4-core's ``IERC20Minimal`` (balanceOf, allowance, approve, transfer, transferFrom)."""
    return _forge_output("IERC20Minimal.sol", "IERC20Minimal")["abi"]


def router_artifact() -> dict:
    return fixture_artifact("uniswap_v4", "V4Router")


def pool_key(token_a: str, token_b: str, fee: int, tick_spacing: int, hooks: str = ZERO) -> tuple:
    """The PoolKey tuple (currency0 < currency1 by address, as the PoolManager requires)."""
    token0, token1 = sorted((to_checksum_address(token_a), to_checksum_address(token_b)), key=lambda a: int(a, 16))
    return (token0, token1, int(fee), int(tick_spacing), to_checksum_address(hooks))


def pool_id(key: tuple) -> str:
    """PoolIdLibrary.toId: keccak256(abi.encode(key)), 0x-prefixed hex."""
    return "0x" + keccak(encode(["address", "address", "uint24", "int24", "address"], list(key))).hex()
