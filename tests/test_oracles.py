"""The devnet's oracle stack has mainnet's shape, and the price mover moves it at the roots only.

The feeds are Chainlink's own EACAggregatorProxy over Chainlink's own FluxAggregator, owned by an
address nobody holds a key for, with no ``setAnswer`` anywhere; wstETH is priced by a ratio adapter.
The mover (analyzer/oracles.py) moves every protocol's price on a fork of the devnet through root
overrides alone; the source devnet is only read.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from analyzer.books import Market, deployments_for, market_of
from analyzer.chain import Anvil, rpc
from analyzer.devnet.feeds import FEED_ADMIN, ORACLE_NODE
from analyzer.devnet.solc import fixture_artifact
from analyzer.errors import ContagionError
from analyzer.multicall import Call, single_call
from analyzer.oracles import ROUND_DATA, PriceMover, derived_prices, feed_usd, protocol_paths, resolve
from analyzer.replay.oracles import ForkOracles
from analyzer.scan import read_derived_prices
from protocols import parse_protocols
from protocols.base import PriceSource, PriceSources
from tests.conftest import requires_anvil

pytestmark = requires_anvil
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
SET_ANSWER = function_signature_to_4byte_selector("setAnswer(int256)")
PRICED_BY_FEEDS = ("aave-v3", "comet", "compound-v2")


def anvil_keyed_accounts(count: int = 20) -> set[str]:
    """The accounts whose keys exist on a devnet: anvil's default mnemonic's first ``count``."""
    Account.enable_unaudited_hdwallet_features()
    return {Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").address for i in range(count)}


def read(w3, target, signature, *args):
    value = single_call(w3, Call(target, signature, args), block=w3.eth.block_number).unwrap(signature)
    return to_checksum_address(value) if signature.endswith("(address)") else value


def test_every_feed_is_a_chainlink_proxy_nobody_holds_a_key_for(devnet):
    w3, book = devnet.w3, devnet.book
    assert book["oracle_stack"] == "chainlink"
    proxy_code = fixture_artifact("chainlink", "EACAggregatorProxy")["deployedBytecode"].lower()
    keyed = anvil_keyed_accounts()
    assert set(keyed) >= {to_checksum_address(a) for a in w3.eth.accounts[:10]}
    for admin in (FEED_ADMIN, ORACLE_NODE):
        assert admin not in keyed and w3.eth.get_code(admin) == b""
    for symbol, feed in book["feeds"].items():
        path = resolve(w3, book["tokens"][symbol], "devnet", feed)
        proxies = [address for address, kind in path.hops if kind == "proxy"]
        assert len(proxies) == 1, (symbol, path.hops)
        proxy = proxies[0]
        assert "0x" + w3.eth.get_code(proxy).hex().removeprefix("0x") == proxy_code
        assert read(w3, proxy, "owner()(address)") == FEED_ADMIN
        assert read(w3, path.root, "owner()(address)") == FEED_ADMIN
        assert read(w3, proxy, "decimals()(uint8)") == 8
        phase = read(w3, proxy, "phaseId()(uint16)")
        assert read(w3, proxy, "phaseAggregators(uint16)(address)", phase) == path.root == \
            read(w3, proxy, "aggregator()(address)")
        for address, _ in path.hops:
            assert SET_ANSWER.hex() not in w3.eth.get_code(address).hex()
            assert not single_call(w3, Call(address, "setAnswer(int256)()", (1,)), block=w3.eth.block_number).success
        assert feed_usd(w3, feed) == pytest.approx(devnet.scenario.assets[symbol].price_usd, rel=1e-9)


def test_wsteth_is_the_steth_ratio_times_eth_usd(devnet):
    w3, feeds = devnet.w3, devnet.book["feeds"]
    path = resolve(w3, devnet.book["tokens"]["wstETH"], "devnet", feeds["wstETH"])
    assert path.derived and path.root == resolve(w3, devnet.book["tokens"]["WETH"], "devnet", feeds["WETH"]).root
    ratio = read(w3, feeds["wstETH"], "getRatio()(int256)")
    steth = read(w3, feeds["wstETH"], "RATIO_PROVIDER()(address)")
    assert ratio == read(w3, steth, "getPooledEthByShares(uint256)(uint256)", 10**18)
    eth_usd = read(w3, feeds["WETH"], "latestAnswer()(int256)")
    assert read(w3, feeds["wstETH"], "latestAnswer()(int256)") == eth_usd * ratio // 10**18


def _oracle_prices(w3, book, symbol) -> dict[str, float]:
    """What each protocol's own oracle answers for ``symbol``, USD."""
    token = book["tokens"][symbol]
    aave, comet, compound = (market_of(book, p) for p in PRICED_BY_FEEDS)
    prices = {"aave-v3": read(w3, aave["oracle"], "getAssetPrice(address)(uint256)", token) / 1e8}
    info = single_call(w3, Call(comet["comet"], "getAssetInfoByAddress(address)((uint8,address,address,uint64,uint64,"
                                                "uint64,uint64,uint128))", (token,)), block=w3.eth.block_number)
    if info.success:
        prices["comet"] = read(w3, comet["comet"], "getPrice(address)(uint256)", info.value[2]) / 1e8
    market = compound["markets"].get(symbol)
    price = single_call(w3, Call(compound["oracle"], "getUnderlyingPrice(address)(uint256)",
                                 (market["cToken"],)), block=w3.eth.block_number) if market else None
    if price is not None and price.success:   # a market whose oracle reverts has no price
        prices["compound-v2"] = price.value / 10 ** (36 - book["decimals"][symbol])
    return prices


def _fork_oracles(fork, book) -> ForkOracles:
    lenders = [(plugin, market_of(book, plugin.name), None, set()) for plugin in parse_protocols(None)
               if plugin.name in PRICED_BY_FEEDS]
    return ForkOracles(fork.w3, lenders)


def test_the_mover_moves_every_protocol_at_the_roots_and_only_reads_the_source(devnet):
    book, source = devnet.book, devnet.w3
    block, root_before = source.eth.block_number, source.eth.get_block("latest")["stateRoot"]
    weth_proxy = book["feeds"]["WETH"]
    with Anvil(fork_url=devnet.url, fork_block=block) as fork:
        w3 = fork.w3
        before = {s: _oracle_prices(w3, book, s) for s in ("WETH", "wstETH", "WBTC", "USDC")}
        aggregator = read(w3, weth_proxy, "aggregator()(address)")
        round_before = read(w3, weth_proxy, "latestRoundData()(uint80,int256,uint256,uint256,uint80)")[0]
        oracles = _fork_oracles(fork, book)
        targets = {book["tokens"]["WETH"]: 2400.0, book["tokens"]["WBTC"]: 51_000.0, book["tokens"]["wstETH"]: 1.0}
        oracles.move(targets)
        after = {s: _oracle_prices(w3, book, s) for s in before}
        for protocol in after["WETH"]:
            assert after["WETH"][protocol] == pytest.approx(2400.0, abs=1e-8)
        for protocol in after["WBTC"]:
            assert after["WBTC"][protocol] == pytest.approx(51_000.0, abs=1e-8)
        for protocol in after["wstETH"]:   # follows ETH / USD by its ratio, not the 1.0 asked
            assert after["wstETH"][protocol] == pytest.approx(before["wstETH"][protocol] * 0.8, rel=1e-9)
        assert after["USDC"] == before["USDC"]
        assert any("wstETH" in n or book["tokens"]["wstETH"] in n for n in oracles.notes)
        # the proxy still reads the same aggregator, owned as before; the round ids continue
        assert read(w3, weth_proxy, "aggregator()(address)") == aggregator
        assert read(w3, weth_proxy, "owner()(address)") == FEED_ADMIN
        round_data = read(w3, weth_proxy, "latestRoundData()(uint80,int256,uint256,uint256,uint80)")
        assert round_data[0] == round_before + 1 and round_data[1] == 2400 * 10**8
        assert read(w3, weth_proxy, "description()(string)") == "ETH / USD"
        # heartbeat: after blocks pass, a refresh dates the same answer at the fork's time
        rpc(w3, "evm_increaseTime", [3600])
        rpc(w3, "anvil_mine", ["0x1"])
        oracles.refresh()
        refreshed = read(w3, weth_proxy, "latestRoundData()(uint80,int256,uint256,uint256,uint80)")
        assert refreshed[1] == round_data[1] and refreshed[3] == w3.eth.get_block("latest")["timestamp"] \
            >= round_data[3] + 3600
    assert source.eth.block_number == block and source.eth.get_block(block)["stateRoot"] == root_before


def test_a_market_whose_oracle_reverts_is_left_out_and_named(devnet):
    """Compound V2's oracle made to revert for LINK (its feed entry points at code that reverts):
    the other protocols still move LINK; the market is named, not priced at 0."""
    book = devnet.book
    compound = market_of(book, "compound-v2")
    link = book["tokens"]["LINK"]
    with Anvil(fork_url=devnet.url, fork_block=devnet.w3.eth.block_number) as fork:
        w3 = fork.w3
        broken = to_checksum_address("0x" + "de" * 20)
        rpc(w3, "anvil_setCode", [broken, "0xfe"])
        ctoken = compound["markets"]["LINK"]["cToken"]
        slot = keccak(abi_encode(["address", "uint256"], [ctoken, 1]))   # FeedPriceOracle.sources[cToken]
        value = (18 << 160) | int(broken, 16)
        rpc(w3, "anvil_setStorageAt", [compound["oracle"], "0x" + slot.hex(), "0x" + value.to_bytes(32, "big").hex()])
        oracles = _fork_oracles(fork, book)
        # beside the devnet's own market whose oracle configuration was dropped (ConfigNotFound)
        dropped = [book["tokens"][symbol] for symbol in devnet.scenario.protocol("compound-v2").get("oracle_removed", [])]
        assert sorted((u["protocol"], u["asset"]) for u in oracles.unpriced) == \
            sorted(("compound-v2", asset) for asset in [link, *dropped])
        oracles.move({link: 9.0})
        assert _oracle_prices(w3, book, "LINK")["aave-v3"] == pytest.approx(9.0)


def test_an_unresolvable_feed_names_the_asset_the_protocol_and_the_address(devnet):
    with Anvil(fork_url=devnet.url, fork_block=devnet.w3.eth.block_number) as fork:
        stuck = to_checksum_address("0x" + "ab" * 20)
        rpc(fork.w3, "anvil_setCode", [stuck, "0xfe"])
        with pytest.raises(ContagionError, match=f"some-protocol.*{devnet.book['tokens']['CRV']}.*{stuck}"):
            resolve(fork.w3, devnet.book["tokens"]["CRV"], "some-protocol", stuck)


def test_a_derived_price_alone_is_refused_not_moved_silently(devnet):
    book = devnet.book
    with Anvil(fork_url=devnet.url, fork_block=devnet.w3.eth.block_number) as fork:
        plugin = next(p for p in parse_protocols(None) if p.name == "aave-v3")
        sources = plugin.price_sources(fork.w3, market_of(book, "aave-v3")).price_sources()
        paths, unpriced = protocol_paths(fork.w3, "aave-v3", sources)
        assert not unpriced and {p.asset for p in paths} >= {book["tokens"][s] for s in ("WETH", "wstETH")}
        executor = plugin.executor(fork.w3, market_of(book, "aave-v3"), fork.w3.eth.accounts[1])
        with pytest.raises(ContagionError, match="derives from root feed"):
            executor.set_price(book["tokens"]["wstETH"], 100.0)
        executor.set_price(book["tokens"]["WETH"], 2000.0)
        mover = PriceMover(fork.w3)
        assert feed_usd(fork.w3, book["feeds"]["WETH"]) == 2000.0 and not mover.rounds


TINY_SCENARIO = """
name = "tiny-{stack}"
oracles = "{stack}"
[assets.WETH]
decimals = 18
price_usd = 2000.0
[assets.wstETH]
decimals = 18
price_usd = 2400.0
ratio_to = "WETH"
[assets.USDC]
decimals = 6
price_usd = 1.0
"""


@pytest.mark.parametrize("stack", ["chainlink", "plain"])
def test_both_stacks_price_the_scenario_and_raise_prices_for_seeding(tmp_path, stack):
    """The plain PriceFeed stack stays a scenario option; on both, ``prices_raised`` raises a price
    at its root (wstETH with ETH on the chainlink stack) and restores the exact answers after."""
    from analyzer.devnet import scenario as scenario_mod
    from analyzer.devnet.build import start_devnet
    from analyzer.devnet.context import DevnetContext
    from analyzer.devnet.feeds import prices_raised

    path = tmp_path / f"tiny-{stack}.toml"
    path.write_text(TINY_SCENARIO.format(stack=stack))
    with start_devnet(scenario_mod.load(path), [], use_cache=False) as devnet:
        w3, feeds = devnet.w3, devnet.book["feeds"]
        assert devnet.book["oracle_stack"] == stack
        prices = {s: feed_usd(w3, f) for s, f in feeds.items()}
        assert prices["WETH"] == 2000.0 and prices["USDC"] == 1.0
        assert prices["wstETH"] == pytest.approx(2400.0, rel=1e-12)
        ctx = DevnetContext(w3=w3, deployer=w3.eth.accounts[0], scenario=devnet.scenario, book=devnet.book)
        with prices_raised(ctx, [feeds["WETH"]], 1.1):
            assert feed_usd(w3, feeds["WETH"]) == pytest.approx(2200.0, rel=1e-9)
            raised_wsteth = feed_usd(w3, feeds["wstETH"])
        assert raised_wsteth == pytest.approx(2640.0 if stack == "chainlink" else 2400.0, rel=1e-9)
        assert {s: feed_usd(w3, f) for s, f in feeds.items()} == prices
        if stack == "plain":
            assert SET_ANSWER.hex() in w3.eth.get_code(feeds["WETH"]).hex()


def test_a_sequencer_feed_down_or_in_its_grace_period_pauses_liquidations(anvil):
    """Chainlink's L2 sequencer-uptime convention (answer 0 = up, 1 = down, startedAt = the last
    change), as Aave's PriceOracleSentinel reads it: down, or up within the grace period, pauses."""
    from analyzer.oracles import sequencer_down

    w3 = anvil.w3
    artifact = fixture_artifact("oracles", "PriceFeed")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor("L2 sequencer uptime", 1).transact(
        {"from": w3.eth.accounts[0]}))
    feed = receipt["contractAddress"]
    assert "down" in sequencer_down(w3, feed, 3600)
    PriceMover(w3).set_answer(feed, 0)          # back up, now
    assert "grace period" in sequencer_down(w3, feed, 3600)
    rpc(w3, "evm_increaseTime", [3601])
    rpc(w3, "evm_mine", [])
    assert sequencer_down(w3, feed, 3600) is None


def _deploy(w3, contract, *args) -> str:
    artifact = fixture_artifact("oracles", contract)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    return w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": w3.eth.accounts[0]}))[
        "contractAddress"]


def test_comets_wrappers_resolve_to_their_roots_and_follow_them(devnet):
    """Comet's mainnet price feed wrappers (interface-exact fixtures of ScalingPriceFeed,
    WstETHPriceFeed, MultiplicativePriceFeed, ReverseMultiplicativePriceFeed) over the devnet's
    Chainlink feeds: the resolver follows each to its root; a move of the root moves the scaled
    feed to the target and the product by its factor; a refresh dates them at the fork's time; a
    reverse (quotient) feed, which no root move sets, stops the resolver with its address."""
    book = devnet.book
    weth, wbtc = book["tokens"]["WETH"], book["tokens"]["WBTC"]
    with Anvil(fork_url=devnet.url, fork_block=devnet.w3.eth.block_number) as fork:
        w3 = fork.w3
        weth_root = read(w3, book["feeds"]["WETH"], "aggregator()(address)")
        scaled = _deploy(w3, "ScalingPriceFeed", book["feeds"]["WETH"], 18)
        rseth_eth = _deploy(w3, "PriceFeed", "RSETH / ETH", 105_000_000)
        product = _deploy(w3, "MultiplicativePriceFeed", rseth_eth, book["feeds"]["WETH"], 8, "rsETH / USD")
        steth_eth = _deploy(w3, "PriceFeed", "STETH / ETH", 99_900_000)
        wsteth_rates = _deploy(w3, "WstETHRates", read(w3, book["feeds"]["wstETH"], "RATIO_PROVIDER()(address)"))
        wsteth_eth = _deploy(w3, "WstETHPriceFeed", steth_eth, wsteth_rates, 8)
        reverse = _deploy(w3, "ReverseMultiplicativePriceFeed", book["feeds"]["WBTC"], book["feeds"]["WETH"], 8,
                          "WBTC / ETH")

        scaled_path = resolve(w3, weth, "comet", scaled)
        assert [kind for _, kind in scaled_path.hops] == ["wrapper", "proxy", "root"]
        assert scaled_path.root == weth_root and not scaled_path.derived
        product_path = resolve(w3, book["tokens"]["wstETH"], "comet", product)
        assert [kind for _, kind in product_path.hops] == ["product wrapper", "proxy", "root"]
        assert product_path.root == weth_root and product_path.derived
        wsteth_path = resolve(w3, book["tokens"]["wstETH"], "comet", wsteth_eth)
        assert wsteth_path.hops == ((wsteth_eth, "ratio wrapper"), (steth_eth, "root"))
        ratio = read(w3, wsteth_rates, "stEthPerToken()(uint256)") / 1e18
        assert wsteth_path.derived and wsteth_path.source_usd == pytest.approx(0.999 * ratio, rel=1e-7)
        with pytest.raises(ContagionError, match=f"comet.*{wbtc}.*{reverse}"):
            resolve(w3, wbtc, "comet", reverse)

        mover = PriceMover(w3)
        report = mover.move([scaled_path, product_path], {weth: 1500.0})
        assert report.roots == {weth_root: 1500 * 10**8}
        assert read(w3, scaled, ROUND_DATA)[1] == 1500 * 10**18
        assert read(w3, book["feeds"]["WETH"], ROUND_DATA)[1] == 1500 * 10**8
        assert read(w3, product, ROUND_DATA)[1] == 1500 * 105_000_000
        assert report.followed[("comet", book["tokens"]["wstETH"])] == pytest.approx(1575.0)
        # staleness: the wrappers pass their root's round through, dated at the fork's time
        rpc(w3, "evm_increaseTime", [7200])
        rpc(w3, "anvil_mine", ["0x1"])
        mover.refresh()
        now = w3.eth.get_block("latest")["timestamp"]
        assert read(w3, scaled, ROUND_DATA)[3] == read(w3, product, ROUND_DATA)[3] == now


class _StopsAtNoCode(PriceSources):
    """A protocol whose oracle reads CRV's price from an address without code: no feed to follow."""

    def price_sources(self) -> list[PriceSource]:
        return [PriceSource(self.deployment["crv"], "0x000000000000000000000000000000000000dEaD")]


def test_a_scan_follows_every_market_s_price_sources_at_once_and_leaves_out_one_it_cannot(devnet, caplog):
    """The scan's derived prices are those of each market's sources followed alone; wstETH's is the
    ratio of what its source and WETH's answer on the chain; a market whose source leads nowhere is
    left out (logged) and the others' prices stay."""
    w3, book = devnet.w3, devnet.book
    block = w3.eth.block_number
    plugins = [p for p in parse_protocols(None) if p.name in PRICED_BY_FEEDS]
    markets = deployments_for(plugins, w3.eth.chain_id, book)
    alone = []
    for market in markets:
        sources = market.plugin.price_sources(w3, market.deployment, block).price_sources()
        alone += protocol_paths(w3, market.plugin.name, sources, block=block)[0]
    expected = derived_prices(alone)
    weth, wsteth = book["tokens"]["WETH"], book["tokens"]["wstETH"]
    assert expected[wsteth]["base"] == weth
    aave = next(m for m in markets if m.plugin.name == "aave-v3")
    oracle = aave.plugin.price_sources(w3, aave.deployment, block).price_sources()
    feed = {s.asset: s.feed for s in oracle}
    ratio = feed_usd(w3, feed[wsteth], block) / feed_usd(w3, feed[weth], block)
    assert expected[wsteth]["ratio"] == pytest.approx(ratio, rel=1e-12)
    assert read_derived_prices(w3, markets, block) == expected

    broken = Market(dataclasses.replace(aave.plugin, name="broken", price_sources=_StopsAtNoCode), "broken",
                    {"crv": book["tokens"]["CRV"]})
    with caplog.at_level(logging.WARNING, logger="analyzer.scan"):
        assert read_derived_prices(w3, [broken, *markets], block) == expected
    assert "broken broken's price sources not followed" in caplog.text and "0x000000000000000000000000000000000000dEaD" in caplog.text
