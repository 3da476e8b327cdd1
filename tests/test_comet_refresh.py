"""Comet's incremental refresh (protocols/comet/lens.py) against independent computations: the
packed principals lens against ``userBasic`` read through Multicall3 (after base transfers that
name no borrower in any event), and its decoding and text / amount columns against Python's
integers."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from analyzer.kept import objects
from analyzer.lens import lens_caller
from analyzer.model import raw_to_amount
from analyzer.multicall import Call, multicall
from analyzer.rpc import RpcClient
from protocols.base import ReadContext
from protocols.comet import lens as comet_lens
from protocols.comet.reader import USER_BASIC, CometReader
from tests.conftest import requires_anvil
from tests.test_scan_incremental import send

EDGES = [0, 1, -1, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64,
         2**103 - 1, -(2**103), 2**127 - 1, -(2**127)]


def test_packed_principals_decode_as_python_ints():
    rng = random.Random(3)
    values = EDGES + [rng.randrange(-(2**103), 2**103) >> rng.randrange(104) for _ in range(2000)]
    data = b"".join(v.to_bytes(16, "big", signed=True) for v in values)
    decoded = comet_lens.int128s(data)
    assert decoded.dtype == object and decoded.tolist() == values
    assert all(type(v) is int for v in decoded.tolist())        # Python ints, not numpy's
    assert comet_lens.int128s(b"").tolist() == []


@pytest.mark.parametrize("negative", [False, True])
def test_decimal_text_and_amounts_equal_str_and_int_division(negative):
    """One float conversion decides which values take numpy's way: the text is ``str``'s and the
    amount Python's int / int (:func:`analyzer.model.raw_to_amount`) for every value and decimals,
    across the 2^53 and 2^63 edges and past 10^22."""
    rng = random.Random(7 + negative)
    values = [abs(v) for v in EDGES] + [rng.getrandbits(rng.choice([20, 52, 53, 54, 62, 63, 64, 90, 128]))
                                        for _ in range(3000)]
    if negative:
        values = [-v for v in values]
    decimals = np.array([rng.choice([0, 6, 8, 15, 18, 22, 23, 30]) for _ in values], dtype=np.int64)
    texts, amounts = comet_lens._decimals(objects(values), decimals)
    assert texts.to_pylist() == [str(v) for v in values]
    assert amounts.dtype == np.float64
    assert amounts.tolist() == [raw_to_amount(v, int(d)) for v, d in zip(values, decimals, strict=True)]
    only_small = [v for v in values if abs(v) < 2**63]
    assert comet_lens._decimals(objects(only_small))[0].to_pylist() == [str(v) for v in only_small]
    assert comet_lens._decimals(objects([]), np.array([], dtype=np.int64))[0].to_pylist() == []


def test_sparse_liquidatable_equals_the_dense_table():
    """The refresh sums only borrowers' non-zero balances; the same accounts as a dense table of
    every account by every asset (:func:`protocols.comet.lens.liquidatable`) flag alike."""
    rng = random.Random(13)
    assets = [{"scale": 10**18, "liquidate_collateral_factor": 85 * 10**16},
              {"scale": 10**8, "liquidate_collateral_factor": 7 * 10**17},
              {"scale": 10**6, "liquidate_collateral_factor": 9 * 10**17}]
    state = {"totals": [10**15 + 3, 10**15 + 99], "prices": [10**8, 3000 * 10**8, 60000 * 10**8, 10**8],
             "base_scale": 10**6, "assets": assets}
    principal = objects([rng.choice([-1, 1, 0]) * rng.getrandbits(rng.choice([20, 40, 70])) for _ in range(2000)])
    held = np.array([[rng.choice([0, 0, rng.getrandbits(rng.choice([24, 64, 80]))]) for _ in assets]
                     for _ in principal], dtype=object)
    owner, asset = np.nonzero(held != 0)
    sparse = comet_lens._liquidatable(state, principal, owner, asset, held[owner, asset])
    dense = np.zeros(len(principal), dtype=bool)
    for i, p in enumerate(principal.tolist()):       # Comet's loop, term by term
        if p < 0:
            debt = -((-p) * state["totals"][1] // 10**15) * state["prices"][0]
            liquidity = -((-debt) // state["base_scale"])
            for k, info in enumerate(assets):
                liquidity += held[i, k] * state["prices"][k + 1] // info["scale"] * \
                    info["liquidate_collateral_factor"] // 10**18
            dense[i] = liquidity < 0
    assert sparse.tolist() == dense.tolist() and 0 < dense.sum() < (principal < 0).sum()


@requires_anvil
def test_the_principals_lens_reads_userbasic_after_silent_base_transfers(chain_checkpoint, monkeypatch):
    """After base transfers that name neither borrower in any event (a borrower to a borrower, a
    lender to a borrower), the packed lens reads each account's principal as ``userBasic`` through
    Multicall3 does, in batches, halved when the node runs out of gas."""
    devnet = chain_checkpoint
    w3 = devnet.w3
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet")
    market = market_of(devnet.book, "comet", "cUSDCv3")
    comet = market["comet"]

    def user_basic(accounts, block):
        answers = multicall(w3, [Call(comet, f"userBasic(address){USER_BASIC}", (a,)) for a in accounts], block=block)
        return [r.value[0] for r in answers]

    silent = [account_address(x) for x in ("comet-8", "comet-7", "pop-0")]
    before = user_basic(silent, w3.eth.block_number)
    send(w3, silent[0], Call(comet, "transfer(address,uint256)(bool)", (silent[1], 1000 * 10**6)))
    send(w3, account_address("comet-lender-1"), Call(comet, "transfer(address,uint256)(bool)", (silent[2], 500 * 10**6)))
    block = w3.eth.block_number
    assert all(a != b for a, b in zip(before, user_basic(silent, block), strict=True))
    assert any(p < 0 for p in user_basic(silent, block))

    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block),
                      get_logs=lambda address, topics, start, end: w3.eth.get_logs(
                          {"address": address, "topics": topics, "fromBlock": start, "toBlock": end}),
                      lens=lens_caller(RpcClient(devnet.url), block))
    reader = CometReader(ctx, market)
    accounts = sorted(set(reader.discover_accounts(0, block)) | set(silent)) + [account_address("never-used")]
    expected = user_basic(accounts, block)
    assert any(p < 0 for p in expected) and any(p > 0 for p in expected) and expected[-1] == 0

    sizes = []

    def small_gas(code, calldata, codes=None):      # a node whose gas cap takes 3 accounts a call
        count = int.from_bytes(calldata[68:100], "big") // 20
        sizes.append(count)
        if count > 3:
            raise ContagionError("execution reverted: out of gas")
        return ctx.lens(code, calldata)

    monkeypatch.setattr(comet_lens, "PRINCIPALS_PER_CALL", 7)
    got = comet_lens._principals(CometReader(dataclasses.replace(ctx, lens=small_gas), market), accounts)
    assert got is not None and got.tolist() == expected
    assert sizes[0] == 7 and max(sizes[1:]) <= 3 and len(sizes) >= len(accounts) // 3
    # the lens as the scan calls it
    assert comet_lens._principals(reader, accounts).tolist() == expected
