"""Supply and borrow caps (analyzer/recommend/caps.py): the book grown to the caps, the search of
the caps, and the caps set on a fork of the devnet through Aave's PoolConfigurator.

The offline checks rebuild the grown book by hand (each account's balances times the factor worked
out here from the caps and the book's totals) and re-simulate it settled then shocked, independently
of the growth code and of the search.
"""

from __future__ import annotations

import pytest

from analyzer.engine.settle import settle_then_shock
from analyzer.recommend import recommend
from analyzer.recommend.caps import at_caps, grown_to_caps
from analyzer.recommend.search import parameters_of
from analyzer.scenarios import ShockScenario
from tests.conftest import requires_anvil
from tests.test_engine_closed_form import USDC, aave_snapshot

WETH = {"price": 2000.0, "lt": 0.80, "bonus": 0.05, "fee_bps": 1000}
BORROWERS = {"a1": (100.0, 150_000.0), "a2": (100.0, 130_000.0)}   # WETH collateral, USDC debt
LENDER = 500_000.0                                                 # USDC supplied, no debt
WETH_CAP, USDC_BORROW_CAP = 1_000.0, 1_000_000.0
SCENARIO = ShockScenario(name="weth-30", price_shocks={"WETH": -0.30})
BUDGET = 100_000.0


def book(scale: float = 1.0, weth_cap: float = WETH_CAP, usdc_borrow_cap: float = USDC_BORROW_CAP,
         lender: float = LENDER, usdc_supply_cap: float = 0.0):
    """The book with each borrower's balances times ``scale``, the lender's USDC supply, and the caps."""
    accounts = {name: [("WETH", "collateral", c * scale), ("USDC", "debt", d * scale)]
                for name, (c, d) in BORROWERS.items()}
    accounts["lender"] = [("USDC", "collateral", lender)]
    snapshot = aave_snapshot({"USDC": USDC, "WETH": WETH}, accounts, pools={"WETH": (1_000.0, 2_000_000.0, 0.003)})
    weth = snapshot.markets["asset"] == snapshot.address_of("WETH")
    snapshot.markets.loc[weth, "supply_cap"] = weth_cap
    snapshot.markets.loc[~weth, "borrow_cap"] = usdc_borrow_cap
    snapshot.markets.loc[~weth, "supply_cap"] = usdc_supply_cap
    return snapshot


def by_hand(weth_cap: float, usdc_borrow_cap: float) -> float:
    """Bad debt of the scenario on the book grown by hand: the borrowers hold WETH (supply cap) and
    USDC debt (borrow cap), both capped, so each grows by the smaller of cap / today's total; the
    lender's USDC supply is uncapped and lends what the grown borrowing lacks."""
    weth_total = sum(c for c, _ in BORROWERS.values())
    usdc_debt_total = sum(d for _, d in BORROWERS.values())
    scale = max(min(weth_cap / weth_total, usdc_borrow_cap / usdc_debt_total), 1.0)
    lender = max(LENDER, usdc_debt_total * scale)
    return settle_then_shock(book(scale, weth_cap, usdc_borrow_cap, lender), SCENARIO).total_bad_debt_usd


def test_the_book_grows_account_by_account_to_the_tightest_cap_it_holds():
    grown = grown_to_caps(at_caps(book()))
    scale = min(WETH_CAP / 200.0, USDC_BORROW_CAP / 280_000.0)     # 3.571...: the borrow cap binds
    pos = grown.positions.set_index(["account", "side"])["amount"]
    for name, (c, d) in BORROWERS.items():
        assert pos[(name, "collateral")] == pytest.approx(c * scale, rel=1e-12)
        assert pos[(name, "debt")] == pytest.approx(d * scale, rel=1e-12)
    debt = grown.positions[grown.positions["side"] == "debt"]["amount"].sum()
    assert debt == pytest.approx(USDC_BORROW_CAP, rel=1e-12)       # the binding cap is reached, not passed
    # the 1M borrowed is lent: the lender (500k today, no debt) lends what the borrowing lacks
    assert pos[("lender", "collateral")] == pytest.approx(USDC_BORROW_CAP, rel=1e-12)
    # health is kept: what is liquidatable at today's prices is the same
    assert settle_then_shock(grown, ShockScenario(name="calm")).settlement.total_accounts == \
        settle_then_shock(book(), ShockScenario(name="calm")).settlement.total_accounts


def test_borrowing_grows_no_further_than_the_supply_cap_can_lend():
    """A USDC supply cap of 600k bounds the USDC borrowing (2.14x, tighter than the WETH and borrow
    caps' 5x and 3.57x); the lender lends the 100k the borrowing lacks, exactly to the supply cap.
    A lender whose supply the borrowing does not need does not grow."""
    usdc_supply_cap = 600_000.0
    snapshot = book(usdc_supply_cap=usdc_supply_cap)
    grown = grown_to_caps(at_caps(snapshot))
    scale = usdc_supply_cap / 280_000.0
    pos = grown.positions.set_index(["account", "side"])["amount"]
    for name, (c, d) in BORROWERS.items():
        assert pos[(name, "collateral")] == pytest.approx(c * scale, rel=1e-12)
        assert pos[(name, "debt")] == pytest.approx(d * scale, rel=1e-12)
    assert pos[("lender", "collateral")] == pytest.approx(usdc_supply_cap, rel=1e-12)
    # enough supply today: nobody lends more
    rich = grown_to_caps(at_caps(book(lender=2_000_000.0)))
    assert rich.positions.set_index(["account", "side"])["amount"][("lender", "collateral")] == 2_000_000.0


def test_the_cap_analysis_is_opt_in():
    plain = {k[3] for k in parameters_of(book())}
    assert plain == {"liquidation_threshold", "liquidation_bonus"}
    capped = parameters_of(at_caps(book()))
    assert {k[3] for k in capped} == plain | {"supply_cap", "borrow_cap"}
    usdc = book().address_of("USDC")
    borrow_cap = next(p for k, p in capped.items() if k[3] == "borrow_cap")
    assert (borrow_cap.asset, borrow_cap.value, borrow_cap.step, borrow_cap.minimum) == (usdc, 1e6, 50_000.0, 280_000.0)


@pytest.fixture(scope="module")
def doc():
    return recommend(book(), [SCENARIO], BUDGET, caps=True)


def test_the_recommended_caps_keep_the_bad_debt_at_the_caps_under_the_budget(doc):
    assert by_hand(WETH_CAP, USDC_BORROW_CAP) > BUDGET and doc["feasible"]
    caps = {r["parameter"]: r["new_value"] for r in doc["recommendations"]}
    assert caps and set(caps) <= {"supply_cap", "borrow_cap"}    # a cap avoids the loss and liquidates nobody
    weth_cap, usdc_cap = caps.get("supply_cap", WETH_CAP), caps.get("borrow_cap", USDC_BORROW_CAP)
    assert by_hand(weth_cap, usdc_cap) <= BUDGET
    assert by_hand(weth_cap, usdc_cap) == pytest.approx(doc["bad_debt_after_usd"][SCENARIO.name], rel=1e-9)
    for rec in doc["recommendations"]:      # each step is needed: one step back breaks the budget
        back = {"supply_cap": weth_cap, "borrow_cap": usdc_cap, rec["parameter"]: rec["new_value"] + rec["step"]}
        assert by_hand(back["supply_cap"], back["borrow_cap"]) > BUDGET, rec["parameter"]


def test_each_cap_is_reported_with_the_bad_debt_at_the_current_and_the_recommended_cap(doc):
    assert doc["stress_at_caps"] and len(doc["caps"]) == len(doc["recommendations"])
    caps = {r["parameter"]: r["new_value"] for r in doc["recommendations"]}
    for row in doc["caps"]:
        at = {"supply_cap": caps.get("supply_cap", WETH_CAP), "borrow_cap": caps.get("borrow_cap", USDC_BORROW_CAP)}
        current = {**at, row["parameter"]: row["current_cap"]}
        assert row["bad_debt_at_current_cap_usd"][SCENARIO.name] == \
            pytest.approx(by_hand(current["supply_cap"], current["borrow_cap"]), rel=1e-9)
        assert row["bad_debt_at_recommended_cap_usd"][SCENARIO.name] == \
            pytest.approx(by_hand(at["supply_cap"], at["borrow_cap"]), rel=1e-9)



def test_the_report_lists_each_cap_in_tokens_with_both_bad_debts(doc):
    from analyzer.recommend.section import section_html

    page = section_html(doc, None)
    for row in doc["caps"]:
        cells = (f"<td>{row['current_cap']:,.0f}</td><td>{row['recommended_cap']:,.0f}</td>"
                 f"<td>${by_hand(WETH_CAP, row['current_cap'] if row['parameter'] == 'borrow_cap' else USDC_BORROW_CAP):,.0f}</td>")
        assert cells in page if row["parameter"] == "borrow_cap" else row["parameter"] in page



def test_the_cli_option_writes_the_caps_and_takes_prove_with_them(tmp_path):
    """``contagion recommend --caps``: recommendations.json carries the caps table; with ``--prove``
    its inputs are checked as without ``--caps`` (a one-line error for a file that is no address book)."""
    import json as json_module

    from tests.test_cli import assert_one_line_error, contagion

    book().write(tmp_path / "snap")
    (tmp_path / "stress.toml").write_text('name = "weth-30"\n[price]\nWETH = -0.30\n')
    proc = contagion("recommend", str(tmp_path / "snap"), "--scenarios", str(tmp_path / "stress.toml"),
                     "--budget", str(BUDGET), "--caps", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    doc = json_module.loads((tmp_path / "out" / "recommendations.json").read_text())
    assert doc["stress_at_caps"] and doc["caps"] and max(doc["bad_debt_after_usd"].values()) <= BUDGET
    proc = contagion("recommend", str(tmp_path / "snap"), "--scenarios", str(tmp_path / "stress.toml"),
                     "--budget", str(BUDGET), "--caps", "--prove", "--rpc", "http://127.0.0.1:1",
                     "--book", str(tmp_path / "stress.toml"), "--out", str(tmp_path / "out2"))
    assert_one_line_error(proc, "address book")     # its inputs checked as without --caps


@requires_anvil
@pytest.mark.slow
def test_caps_set_on_a_fork_read_back_from_the_contracts_and_a_fresh_scan(devnet):
    """Aave's PoolConfigurator.setSupplyCap / setBorrowCap and Comet's collateral supplyCap on a copy
    of the devnet: Aave's reserve configuration word (bits 80-115 borrow cap, 116-151 supply cap,
    ReserveConfiguration.sol), Comet's getAssetInfoByAddress(asset).supplyCap (whole tokens × scale),
    and a fresh scan, all equal to the tunings' offline rows."""
    from analyzer.cheats import read
    from analyzer.devnet.solc import fixture_artifact
    from analyzer.recommend.evaluate import tunings
    from analyzer.recommend.prove import chain_copy, configure
    from analyzer.scan import scan
    from protocols import plugins
    from protocols.base import ParameterChange

    chosen = list(plugins().values())
    snapshot = at_caps(scan(devnet.url, chosen, book=devnet.book, cache_dir=None))
    wanted = [("aave-v3", "supply_cap"), ("aave-v3", "borrow_cap"), ("comet", "supply_cap")]
    changes = []
    for protocol, kind in wanted:
        found = [p for p in tunings(snapshot)[protocol].parameters(snapshot) if p.parameter == kind]
        assert found, f"the devnet's {protocol} reserves carry a {kind} above their book"
        changes.append(ParameterChange(protocol, found[0].market, found[0].asset, kind, found[0].value - 3 * found[0].step))
    expected = snapshot
    for protocol in ("aave-v3", "comet"):
        expected = tunings(snapshot)[protocol].apply(expected, changes)
    comet_abi = fixture_artifact("comet", "Comet")["abi"]
    with chain_copy(devnet.url) as fork:
        configure(fork.w3, devnet.book, chosen, changes)
        for c in changes:
            if c.protocol == "aave-v3":
                word = int(read(fork.w3, c.market, "getConfiguration(address)(uint256)", c.asset))
                shift = 116 if c.parameter == "supply_cap" else 80
                assert (word >> shift) & (2**36 - 1) == int(c.value)
            else:
                info = fork.w3.eth.contract(address=c.market, abi=comet_abi).functions.getAssetInfoByAddress(c.asset).call()
                assert info[7] == int(c.value) * info[3]
        scanned = scan(fork.url, chosen, book=devnet.book, cache_dir=None).markets
    for c in changes:
        def row(markets, c=c):
            return markets[(markets["protocol"] == c.protocol) & (markets["market"] == c.market)
                           & (markets["asset"] == c.asset)].iloc[0]
        assert row(scanned)[c.parameter] == row(expected.markets)[c.parameter] == c.value


@requires_anvil
@pytest.mark.slow
def test_compound_borrow_caps_set_on_a_fork_bind_the_comptroller_and_a_fresh_scan(devnet):
    """Comptroller._setMarketBorrowCaps on a copy of the devnet (whose markets have no caps): read
    back from borrowCaps(cToken), carried by a fresh scan, listed for the search once set, and
    binding: a borrow that would take totalBorrows to the cap is refused by borrowAllowed."""
    from eth_utils import to_checksum_address

    from analyzer.cheats import read
    from analyzer.multicall import Call
    from analyzer.recommend.evaluate import tunings
    from analyzer.recommend.prove import chain_copy, configure
    from analyzer.scan import scan
    from protocols import plugins
    from protocols.base import ParameterChange

    chosen = list(plugins().values())
    snapshot = scan(devnet.url, chosen, book=devnet.book, cache_dir=None)
    mk = snapshot.markets[snapshot.markets["protocol"] == "compound-v2"]
    assert (mk["borrow_cap"] == 0).all()
    usdc = snapshot.address_of("USDC")
    row = mk[mk["asset"] == usdc].iloc[0]
    ctoken = to_checksum_address(row["reserve"])
    debt = snapshot.positions[(snapshot.positions["protocol"] == "compound-v2") & (snapshot.positions["asset"] == usdc)
                              & (snapshot.positions["side"] == "debt")]["amount"].sum()
    cap = float(int(debt * 1.5))
    unit = 10 ** int(snapshot.assets.set_index("address").loc[usdc, "decimals"])
    change = ParameterChange("compound-v2", row["market"], usdc, "borrow_cap", cap)
    with chain_copy(devnet.url) as fork:
        configure(fork.w3, devnet.book, chosen, [change])
        assert int(read(fork.w3, row["market"], "borrowCaps(address)(uint256)", ctoken)) == int(cap) * unit
        fresh = at_caps(scan(fork.url, chosen, book=devnet.book, cache_dir=None))
        total = int(read(fork.w3, ctoken, "totalBorrows()(uint256)"))
        room = int(cap) * unit - total
        ask = Call(row["market"], "borrowAllowed(address,address,uint256)(uint256)",
                   (ctoken, fork.w3.eth.accounts[0], room))
        with pytest.raises(Exception, match="market borrow cap reached"):
            fork.w3.eth.call({"from": ctoken, "to": row["market"], "data": "0x" + ask.calldata.hex()})
    ours = tunings(snapshot)["compound-v2"].apply(snapshot, [change]).markets
    for markets in (ours, fresh.markets):
        assert markets[(markets["protocol"] == "compound-v2") & (markets["asset"] == usdc)]["borrow_cap"].tolist() == [cap]
    listed = [p for p in tunings(fresh)["compound-v2"].parameters(fresh) if p.parameter == "borrow_cap"]
    assert [(p.asset, p.value) for p in listed] == [(usdc, cap)]


@requires_anvil
@pytest.mark.slow
def test_prove_reads_every_recommended_value_caps_included_back_from_a_fresh_scan_of_the_fork(devnet):
    """``prove`` with cap changes of the three protocols (Aave's PoolConfigurator supply and borrow
    caps, Comet's collateral supply cap, Compound's Comptroller borrow cap) and a threshold cut: the
    fork's fresh scan carries each value the tunings wrote offline (``parameters_on_fork``), and a
    value that was not made on the fork would show (every change has its field)."""
    from analyzer.recommend.evaluate import liquidatable_now, tunings
    from analyzer.recommend.prove import prove
    from analyzer.scan import scan
    from protocols import plugins
    from protocols.base import ParameterChange

    chosen = list(plugins().values())
    snapshot = at_caps(scan(devnet.url, chosen, book=devnet.book, cache_dir=None))
    changes = []
    for protocol, kind in [("aave-v3", "supply_cap"), ("aave-v3", "borrow_cap"), ("comet", "supply_cap"),
                           ("aave-v3", "liquidation_threshold")]:
        found = [p for p in tunings(snapshot)[protocol].parameters(snapshot) if p.parameter == kind]
        assert found, f"the devnet's {protocol} reserves carry a tunable {kind}"
        changes.append(ParameterChange(protocol, found[0].market, found[0].asset, kind,
                                       round(found[0].value - 3 * found[0].step, 6)))
    usdc = snapshot.address_of("USDC")
    row = snapshot.markets[(snapshot.markets["protocol"] == "compound-v2") & (snapshot.markets["asset"] == usdc)].iloc[0]
    changes.append(ParameterChange("compound-v2", row["market"], usdc, "borrow_cap", 5_000_000.0))
    doc = {"changes": [vars(c) for c in changes], "recommendations": [], "budget_usd": 0.0, "bad_debt_after_usd": {},
           "liquidatable_now": liquidatable_now(snapshot, changes)}
    proof = prove(devnet.url, devnet.book, doc, [], chosen)
    fields = {(p["protocol"], p["asset"], p["field"]) for p in proof["parameters_on_fork"]}
    assert {(c.protocol, c.asset, c.parameter) for c in changes} <= fields, fields
    assert proof["parameters_on_fork_ok"], [p for p in proof["parameters_on_fork"] if not p["ok"]]
    assert proof["liquidatable_now_ok"]
