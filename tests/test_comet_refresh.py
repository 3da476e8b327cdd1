"""Comet's incremental refresh (protocols/comet/lens.py) against independent computations: the
packed principals lens against ``userBasic`` read through Multicall3 (after base transfers that
name no borrower in any event), its decoding against Python's integers, the sparse isLiquidatable
against Comet's loop, and the market state against Comet's own accrued totals."""

from __future__ import annotations

import dataclasses
import random
import types

import numpy as np
import pytest

from analyzer.books import market_of
from analyzer.devnet.scenario import account_address
from analyzer.errors import ContagionError
from analyzer.kept import objects
from analyzer.lens import lens_caller
from analyzer.multicall import Call, multicall
from analyzer.rpc import RpcClient
from protocols.base import ReadContext
from protocols.comet import lens as comet_lens
from protocols.comet import refresh as comet_refresh
from protocols.comet.ints import Ints
from protocols.comet.reader import USER_BASIC, CometReader
from tests.conftest import requires_anvil
from tests.test_scan_incremental import send

EDGES = [0, 1, -1, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64,
         2**103 - 1, -(2**103), 2**127 - 1, -(2**127)]


def test_packed_principals_decode_as_python_ints():
    rng = random.Random(3)
    values = EDGES + [rng.randrange(-(2**103), 2**103) >> rng.randrange(104) for _ in range(2000)]
    data = b"".join(v.to_bytes(16, "big", signed=True) for v in values)
    decoded = Ints.of_int128s(data)
    assert decoded.small.dtype == np.int64 and decoded.values().tolist() == values
    assert all(type(v) is int for v in decoded.values().tolist())        # Python ints, not numpy's
    # int64 where a value fits, and only there
    assert decoded.wide_at.tolist() == [k for k, v in enumerate(values) if not -(2**63) <= v < 2**63]
    assert Ints.of_int128s(b"").values().tolist() == []


ASSETS = [{"scale": 10**18, "liquidate_collateral_factor": 85 * 10**16},
          {"scale": 10**8, "liquidate_collateral_factor": 7 * 10**17},
          {"scale": 10**6, "liquidate_collateral_factor": 9 * 10**17}]
STATE = {"totals": [10**15 + 3, 10**15 + 99], "prices": [10**8, 3000 * 10**8, 60000 * 10**8, 10**8],
         "base_scale": 10**6, "assets": ASSETS}


def comets_loop(state: dict, principal: np.ndarray, held: np.ndarray) -> list[bool]:
    """Comet.isLiquidatable, term by term in Python integers."""
    out = []
    for i, p in enumerate(principal.tolist()):
        liquidity = 0
        if p < 0:
            debt = -((-p) * state["totals"][1] // 10**15) * state["prices"][0]
            liquidity = -((-debt) // state["base_scale"])
            for k, info in enumerate(state["assets"]):
                liquidity += held[i, k] * state["prices"][k + 1] // info["scale"] * \
                    info["liquidate_collateral_factor"] // 10**18
        out.append(liquidity < 0)
    return out


def test_sparse_liquidatable_equals_the_dense_table():
    """The refresh sums only borrowers' non-zero balances; the same accounts as a dense table of
    every account by every asset (:func:`protocols.comet.lens.liquidatable`) flag alike."""
    rng = random.Random(13)
    principal = objects([rng.choice([-1, 1, 0]) * rng.getrandbits(rng.choice([20, 40, 70])) for _ in range(2000)])
    held = np.array([[rng.choice([0, 0, rng.getrandbits(rng.choice([24, 64, 80]))]) for _ in ASSETS]
                     for _ in principal], dtype=object)
    owner, asset = np.nonzero(held != 0)
    sparse = comet_lens._liquidatable(STATE, principal, owner, asset, held[owner, asset])
    dense = comets_loop(STATE, principal, held)
    assert sparse.tolist() == dense and 0 < sum(dense) < (principal < 0).sum()


def test_borrowers_on_the_line_are_summed_as_comet_sums_them(monkeypatch):
    """Borrowers whose sum is a few units from zero either way (where a float sum cannot tell) are
    flagged as Comet's integer loop flags them; the others are decided by the float sum without
    it, as the loop decides them too."""
    rng = random.Random(29)
    principal, held = [], []
    for _ in range(3000):
        row = [rng.choice([0, rng.getrandbits(rng.choice([30, 60, 90]))]) for _ in ASSETS]
        row[rng.randrange(3)] = rng.getrandbits(rng.choice([30, 60, 90])) | 1
        credit = sum(a * STATE["prices"][k + 1] // ASSETS[k]["scale"] * ASSETS[k]["liquidate_collateral_factor"] // 10**18
                     for k, a in enumerate(row))
        # the principal whose debt term is about the credit, then a few units either side
        p = -(credit * STATE["base_scale"] // STATE["prices"][0] * 10**15 // STATE["totals"][1]) - rng.randrange(-400, 400)
        principal.append(p if rng.random() < 0.9 else -rng.getrandbits(80))
        held.append(row)
    principal_array, held_array = objects(principal), np.array(held, dtype=object)
    summed = []
    real = comet_lens._liquidatable_exact

    def exact(state, principal, *rest):
        summed.append(len(principal))
        return real(state, principal, *rest)

    monkeypatch.setattr(comet_lens, "_liquidatable_exact", exact)
    owner, asset = np.nonzero(held_array != 0)
    got = comet_lens._liquidatable(STATE, principal_array, owner, asset, held_array[owner, asset])
    expected = comets_loop(STATE, principal_array, held_array)
    assert got.tolist() == expected
    assert 0 < sum(expected) < len(expected) and 100 < sum(summed) < len(expected)


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
        at = 68 if codes is None else 100           # the length word: after the selector, (comet[, slot], offset)
        count = int.from_bytes(calldata[at:at + 32], "big") // 20
        sizes.append(count)
        if count > 3:
            raise ContagionError("execution reverted: out of gas")
        return ctx.lens(code, calldata, codes) if codes else ctx.lens(code, calldata)

    monkeypatch.setattr(comet_lens, "PRINCIPALS_PER_CALL", 7)
    monkeypatch.setattr(comet_lens, "SLOT_PRINCIPALS_PER_CALL", 7)
    small = CometReader(dataclasses.replace(ctx, lens=small_gas), market)
    for slot in (None, 3):                          # through the getter, then from storage
        sizes.clear()
        got = comet_lens._principals_read(small, accounts, slot)
        assert got is not None and Ints.of_int128s(got).values().tolist() == expected
        assert sizes[0] == 7 and max(sizes[1:]) <= 3 and len(sizes) >= len(accounts) // 3
    # the lens as the scan calls it: the slot proven (mainnet's 5 is another mapping here), storage read
    assert Ints.of_int128s(comet_lens.principals(reader, accounts)).values().tolist() == expected
    assert reader._user_basic_slot == 3


@requires_anvil
def test_the_principals_are_read_through_the_getter_when_no_slot_is_proven(chain_checkpoint, monkeypatch, caplog):
    """A layout none of the slots gives (here: mainnet's slot alone, the fixture's ``totalsCollateral``)
    is found against ``userBasic`` and the principals are read through the getter, equal to
    ``userBasic`` through Multicall3; so are they when every account checked has no principal
    (nothing proves a slot)."""
    devnet = chain_checkpoint
    w3 = devnet.w3
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet")
    market = market_of(devnet.book, "comet", "cUSDCv3")
    block = w3.eth.block_number
    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block),
                      get_logs=lambda address, topics, start, end: w3.eth.get_logs(
                          {"address": address, "topics": topics, "fromBlock": start, "toBlock": end}),
                      lens=lens_caller(RpcClient(devnet.url), block))
    accounts = sorted(CometReader(ctx, market).discover_accounts(0, block))
    answers = multicall(w3, [Call(market["comet"], f"userBasic(address){USER_BASIC}", (a,)) for a in accounts],
                        block=block)
    expected = [r.value[0] for r in answers]
    assert any(p < 0 for p in expected) and any(p > 0 for p in expected)

    monkeypatch.setattr(comet_lens, "USER_BASIC_SLOTS", (5,))
    reader = CometReader(ctx, market)
    assert Ints.of_int128s(comet_lens.principals(reader, accounts)).values().tolist() == expected
    assert reader._user_basic_slot is None and "no userBasic slot" in caplog.text
    # storage at the wrong slot does differ: what the getter path is for
    assert Ints.of_int128s(comet_lens._principals_read(reader, accounts, 5)).values().tolist() != expected

    monkeypatch.setattr(comet_lens, "USER_BASIC_SLOTS", (3,))
    nobody = [account_address(f"never-used-{k}") for k in range(20)]
    reader = CometReader(ctx, market)
    assert Ints.of_int128s(comet_lens.principals(reader, nobody)).values().tolist() == [0] * 20
    assert reader._user_basic_slot is None


@requires_anvil
def test_market_state_in_two_rounds_accrues_to_the_blocks_time(chain_checkpoint, monkeypatch):
    """The market state read with the block's timestamp (Multicall3.getCurrentBlockTimestamp) and
    the first assets in the globals' round: the indices it accrues give Comet's own totalSupply and
    totalBorrow (which accrue to the block's time on chain) a month after the last accrual, and
    the assets past the first round are read after it to the same state."""
    devnet = chain_checkpoint
    if "comet" not in devnet.book["protocols"]:
        pytest.skip("comet is not in this devnet")
    w3 = devnet.w3
    w3.provider.make_request("evm_increaseTime", [30 * 86400])
    w3.provider.make_request("anvil_mine", ["0x1"])
    block = w3.eth.block_number
    ctx = ReadContext(w3=w3, chain_id=w3.eth.chain_id, block=block,
                      multicall=lambda calls: multicall(w3, calls, block=block), get_logs=None)
    for market in devnet.book["protocols"]["comet"].values():
        state = CometReader(ctx, market)._read_market_state()
        assert len(state["assets"]) > 1 and state["supply_index"] > state["totals"][0]
        assert state["total_supply"] == state["total_supply_base"] * state["supply_index"] // 10**15
        assert state["total_borrow"] == state["total_borrow_base"] * state["borrow_index"] // 10**15
        for first in (0, 1):
            monkeypatch.setattr("protocols.comet.reader.ASSET_READS", first)
            assert CometReader(ctx, market)._read_market_state() == state
        monkeypatch.undo()


def market_state() -> dict:
    """A market state as :meth:`CometReader.market_state` gives it (indices accrued, three collaterals)."""
    assets = [{**info, "asset": f"0x{k + 1:040x}"} for k, info in enumerate(ASSETS)]
    return {**STATE, "assets": assets, "supply_index": 10**15 + 123_457, "borrow_index": 10**15 + 987_653,
            "base_token": "0x" + "ba" * 20, "decimals": [6, 18, 8, 6]}


def untouched_accounts(rng: random.Random, count: int = 3000) -> tuple[dict, dict, dict]:
    """Accounts' lens rows at an earlier block (account -> words, principal in two's complement),
    their principals then and now: a borrower (or an account with none) may have moved without an
    event (every seventh), across int64, 2^64, int104 and 18-decimal sizes."""
    rows, principals, now = {}, {}, {}
    for k in range(count):
        principal = rng.choice([-1, 1]) * rng.choice([rng.getrandbits(rng.choice([1, 20, 53, 63, 64, 90, 103])),
                                                     rng.choice(EDGES[:13])])
        principal = rng.choice([principal, principal, 0])
        held = [rng.choice([0, 0, rng.getrandbits(rng.choice([1, 40, 64, 80, 120]))]) for _ in ASSETS]
        if principal < 0 and not any(held):
            held[0] = rng.getrandbits(90) + 1
        if principal == 0 and not any(held):
            continue                                # the lens gives no row: nothing open
        account = f"0x{k:040X}"
        assets_in = sum(1 << i for i, amount in enumerate(held) if amount)
        rows[account] = [principal % 2**256, assets_in, 0, 0, 0, *held]
        principals[account] = principal
        now[account] = -rng.getrandbits(rng.choice([30, 70, 100])) - 1 if principal <= 0 and k % 7 == 0 else principal
    return rows, principals, now


def fake_reader(state: dict, now: dict) -> tuple[types.SimpleNamespace, list[str]]:
    """A reader of ``state`` whose node answers the principals lens (through ``userBasic``: no
    slot proven) with ``now`` (as it is when asked), and the accounts it was asked for, as the
    calldata names them."""
    asked: list[str] = []

    def lens(code, calldata):
        assert calldata[:4] == comet_lens.PRINCIPALS_SELECTOR
        accounts = {bytes.fromhex(a[2:]): a for a in now}
        count = int.from_bytes(calldata[68:100], "big") // 20
        batch = [accounts[calldata[100 + 20 * k:120 + 20 * k]] for k in range(count)]
        asked.extend(batch)
        return bytes(64) + (16 * count).to_bytes(32, "big") + \
            b"".join(now[a].to_bytes(16, "big", signed=True) for a in batch)

    reader = types.SimpleNamespace(comet="0x" + "c0" * 20, _lens_state=state, _user_basic_slot=None,
                                   ctx=types.SimpleNamespace(lens=lens))
    return reader, asked


@pytest.mark.parametrize("kept", ["lens words", "the full read's kept words, through a chunk"])
def test_a_refresh_of_untouched_accounts_gives_the_full_reads_rows(monkeypatch, kept):
    """Untouched accounts computed by the refresh (int64 words and limbs: analyzer.wideint) give
    the rows the full read builds from the same words in Python integers
    (:func:`protocols.comet.lens.rows_from_lens`): base balances at this block's indices, raw text
    and amounts, params with the signed principal and isLiquidatable, across int64, 2^64, int104
    and 18-decimal sizes; from the lens's words (principals in two's complement) as from the
    words the full read keeps (signed) as a rescan loads them (int64 and the wide ones beside).
    Borrowers whose principal the node now gives otherwise (a silent base transfer) are computed
    at it and are the only accounts whose words are kept again."""
    from analyzer.kept import KeptState

    rows, principals, now = untouched_accounts(random.Random(41))
    moved = [a for a in rows if now[a] != principals[a]]
    reader, asked = fake_reader(market_state(), now)
    earlier = comet_lens.rows_from_lens(reader, list(rows), list(rows.values()))
    previous = KeptState.from_state(rows) if kept == "lens words" else \
        KeptState.from_chunks([KeptState.chunk_of(earlier["_state"])])
    refreshed = comet_refresh.refresh_accounts(reader, previous)
    later = {a: [now[a] % 2**256, *row[1:]] for a, row in rows.items()}
    full = comet_lens.rows_from_lens(reader, list(later), list(later.values()))
    assert sorted(asked) == sorted(a for a in rows if principals[a] <= 0)      # suppliers: not read
    assert refreshed.again == [] and refreshed.carried.tolist() == [now[a] == principals[a] for a in rows]
    assert len(moved) > 50 and refreshed.state.accounts.tolist() == moved
    assert [list(map(int, refreshed.state.values(refreshed.state.starts[i] + np.arange(8)))) for i in range(len(moved))] \
        == [[now[a], later[a][1], 0, 0, 0, *later[a][5:]] for a in moved]
    assert refreshed.tables["accounts"]["account"].tolist() == full["accounts"]["account"]
    assert refreshed.tables["accounts"]["params"].tolist() == full["accounts"]["params"]
    columns = ("account", "asset", "side", "amount", "raw")
    got = sorted(zip(*(refreshed.tables["positions"][c].tolist() for c in columns), strict=True))
    expected = sorted(zip(*(full["positions"][c] for c in columns), strict=True))
    assert got == expected
    assert any(int(raw) >= 2**64 for _, _, _, _, raw in got) and any('"principal": "-' in p for p in full["accounts"]["params"])


def test_ints_are_python_integers():
    """The refresh's integer columns (int64 where a value fits, Python ints beside) against Python
    integers: sign, zero, taking, replacing, comparing, floats, limbs and text, across the edges
    of int64 and two's complement words."""
    from analyzer import wideint

    rng = random.Random(5)
    values = EDGES + [rng.choice([-1, 1]) * rng.getrandbits(rng.choice([3, 40, 63, 64, 100, 200])) for _ in range(3000)]
    ints = Ints.of(values)
    assert ints.values().tolist() == values and len(ints.wide) < len(values) // 2
    assert ints.negative().tolist() == [v < 0 for v in values] and ints.nonzero().tolist() == [v != 0 for v in values]
    assert Ints.of([v % 2**256 for v in values]).signed().values().tolist() == values
    assert Ints.of([v % 2**256 for v in values]).signed().wide_at.tolist() == ints.wide_at.tolist()
    rows = np.array(rng.sample(range(len(values)), 900))
    assert ints.taken(rows).values().tolist() == [values[k] for k in rows.tolist()]
    some = np.sort(rows[:400])
    other = [rng.choice([v, -v, v + 1, 2**70 + v]) for v in (values[k] for k in some.tolist())]
    replaced = ints.replaced(some, Ints.of(other))
    expected = list(values)
    for k, v in zip(some.tolist(), other, strict=True):
        expected[k] = v
    assert replaced.values().tolist() == expected
    assert replaced.equal(ints).tolist() == [a == b for a, b in zip(expected, values, strict=True)]
    assert ints.floats().tolist() == [float(v) for v in values]
    limbs, negative = ints.limbs()
    assert wideint.to_ints(limbs).tolist() == [abs(v) for v in values] and negative.tolist() == [v < 0 for v in values]
    assert ints.text().to_pylist() == [str(v) for v in values]


def test_approximate_floats_are_within_a_few_units_of_the_last_place():
    """The collateral's floats in the liquidatable sum: within 4 units of the last place of
    Python's correctly rounded float."""
    from analyzer import wideint

    rng = random.Random(8)
    values = [0, 1, 2**53 - 1, 2**53 + 1, 2**64 + 1, 10**32 - 1, 10**32 + 1] + \
        [rng.getrandbits(rng.choice([8, 53, 60, 64, 90, 128, 200])) for _ in range(5000)]
    got = comet_refresh.approximate_floats(wideint.from_ints(objects(values)))
    assert all(abs(g - float(v)) <= 4 * np.spacing(float(v)) for g, v in zip(got.tolist(), values, strict=True))
    assert got[:4].tolist() == [0.0, 1.0, float(2**53 - 1), float(2**53)]
