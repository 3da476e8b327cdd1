"""Events a protocol declares ``named_before`` (Aave's Borrow; Comet's Supply, Withdraw and
WithdrawCollateral) name no account the other events have not named: checked on the devnet's own
logs decoded by web3 from the events' ABIs, and discovery from the deployment leaves them out, while
a later ``from_block`` asks them."""

from __future__ import annotations

import pytest
from eth_utils import event_abi_to_log_topic, to_checksum_address

import analyzer.scan as scan_module
from analyzer.books import market_of
from analyzer.scan import scan
from protocols import plugins
from protocols.aave_v3 import abi as aave_abi
from tests.conftest import requires_anvil
from tests.test_scan_discovery import atoken_receivers, onbehalf_on_aave

pytestmark = requires_anvil
ZERO = "0x" + "00" * 20
COMET_EVENTS = {  # event -> its indexed address arguments, in order
    "Supply": ("from", "dst"), "Withdraw": ("src", "to"), "WithdrawCollateral": ("src", "to", "asset"),
    "SupplyCollateral": ("from", "dst", "asset"), "TransferCollateral": ("from", "to", "asset"),
    "Transfer": ("from", "to"),
}


def comet_event_abi(name: str, indexed: tuple[str, ...]) -> dict:
    inputs = [{"name": n, "type": "address", "indexed": True} for n in indexed]
    return {"type": "event", "name": name, "anonymous": False,
            "inputs": [*inputs, {"name": "amount", "type": "uint256", "indexed": False}]}


def comet_logs(w3, comet: str, block: int) -> dict[str, list[dict]]:
    contract = w3.eth.contract(address=to_checksum_address(comet),
                               abi=[comet_event_abi(n, i) for n, i in COMET_EVENTS.items()])
    return {name: [dict(e["args"]) for e in contract.events[name]().get_logs(from_block=0, to_block=block)]
            for name in COMET_EVENTS}


def test_aave_borrowers_are_atoken_receivers(devnet):
    if "aave-v3" not in devnet.book["protocols"]:
        pytest.skip("aave-v3 is not on this devnet")
    block, pool = devnet.w3.eth.block_number, market_of(devnet.book, "aave-v3")["pool"]
    borrowers = onbehalf_on_aave(devnet.w3, pool, block, aave_abi.BORROW_EVENT)
    assert len(borrowers) > 10
    assert borrowers <= atoken_receivers(devnet.w3, pool, block)


def test_comet_supply_and_withdraw_name_accounts_named_before(devnet):
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not on this devnet")
    block = devnet.w3.eth.block_number
    for market in devnet.book["protocols"]["comet"].values():
        logs = comet_logs(devnet.w3, market["comet"], block)
        assert logs["Supply"] and logs["Withdraw"] and logs["SupplyCollateral"]
        named = ({e["dst"] for e in logs["SupplyCollateral"]} | {e["to"] for e in logs["TransferCollateral"]}
                 | {e["from"] for e in logs["TransferCollateral"]}
                 | {e[k] for e in logs["Transfer"] for k in ("from", "to")}) - {ZERO, market["comet"]}
        assert {e["dst"] for e in logs["Supply"]} <= named
        assert {e["src"] for e in logs["Withdraw"]} | {e["src"] for e in logs["WithdrawCollateral"]} <= named


def test_discovery_from_the_deployment_leaves_out_what_a_later_from_block_asks(devnet, monkeypatch):
    if "aave-v3" not in plugins() or "aave-v3" not in devnet.book["protocols"]:
        pytest.skip("aave-v3 is not on this devnet")
    asked: list[tuple[str, ...]] = []
    real = scan_module.discover

    def spy(client, events, *args, **kwargs):
        asked.append(events.topics)
        return real(client, events, *args, **kwargs)

    monkeypatch.setattr(scan_module, "discover", spy)
    borrow = "0x" + bytes(event_abi_to_log_topic(aave_abi.BORROW_EVENT)).hex()
    block, aave = devnet.w3.eth.block_number, [plugins()["aave-v3"]]
    full = scan(devnet.url, aave, book=devnet.book, block=block, cache_dir=None, oracle_paths=False)
    later = scan(devnet.url, aave, book=devnet.book, block=block, from_block=1, cache_dir=None, oracle_paths=False)
    assert [borrow in topics for topics in asked] == [False, True]
    # from block 1 (the devnet's history starts after it) the same accounts, found with Borrow asked too
    assert sorted(full.positions["account"].unique()) == sorted(later.positions["account"].unique())
