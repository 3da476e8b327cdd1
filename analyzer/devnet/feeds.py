"""The devnet's price feeds, in mainnet's shape (the default) or as plain settable feeds.

``chainlink`` (default): each root price (``ETH / USD``, ``BTC / USD`` ...) is Chainlink's own
``FluxAggregator`` behind Chainlink's own ``EACAggregatorProxy`` (``@chainlink/contracts`` 0.8.0,
``src/v0.6``, compiled with solc 0.6.12: see :mod:`analyzer.devnet.solc`), 8 decimals, answered by
one oracle node. An asset with ``ratio_to`` in the scenario (wstETH) is priced by a CAPO-shaped
ratio adapter: the stETH-per-wstETH ratio from a stETH share-accounting contract × the base
asset's proxy; a stablecoin (``STABLE_SYMBOLS``) by a CAPO-shaped capped adapter over its proxy.
The proxies and aggregators are owned by an address nobody holds a key for, and the oracle node
is one too: the devnet acts for them by impersonation while it is built (as Chainlink's nodes
would report), and a replay moves prices only at the root (:mod:`analyzer.oracles`).

``plain``: one ``PriceFeed`` per asset with ``setAnswer`` for its owner (the deployer), for
tests that want the simplest stack.

``book["feeds"][symbol]`` is the address every protocol reads the asset's price from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction

from analyzer.devnet.context import DevnetContext
from analyzer.devnet.scenario import account_address
from analyzer.devnet.solc import fixture_artifact
from analyzer.oracles import resolve
from protocols.base import STABLE_SYMBOLS

PRICE_DECIMALS = 8
FEED_ADMIN = account_address("chainlink/feed-admin")      # owns every proxy and aggregator
ORACLE_NODE = account_address("chainlink/oracle-node")    # reports the aggregators' rounds
STABLE_PRICE_CAP = 1.04          # Aave's stablecoin CAPO caps sit a few percent above $1
LST_MAX_YEARLY_RATIO_GROWTH_BPS = 968   # Aave's wstETH adapter: 9.68% a year
FLUX_TIMEOUT_SECONDS = 86_400
ROOT_NAMES = {"WETH": "ETH", "WBTC": "BTC"}   # the root pair is the underlying's (ETH / USD)


def _answer(price_usd: float) -> int:
    return round(price_usd * 10**PRICE_DECIMALS)


def deploy_plain_feeds(ctx: DevnetContext) -> dict[str, str]:
    artifact = fixture_artifact("oracles", "PriceFeed")
    return {symbol: ctx.deploy(artifact, f"{symbol} / USD", _answer(spec.price_usd)).address
            for symbol, spec in ctx.scenario.assets.items()}


def _as(ctx: DevnetContext, account: str) -> str:
    ctx.fund_eth(account, 10**20)
    ctx.impersonate(account)
    return account


def deploy_chainlink_root(ctx: DevnetContext, pair: str, price_usd: float, link_token: str) -> str:
    """FluxAggregator + EACAggregatorProxy for ``pair`` at ``price_usd``; the proxy's address."""
    aggregator = ctx.deploy(fixture_artifact("chainlink", "FluxAggregator"), link_token, 0, FLUX_TIMEOUT_SECONDS,
                            "0x" + "00" * 20, 1, 2**255 - 1, PRICE_DECIMALS, pair)
    ctx.transact(aggregator.functions.changeOracles([], [ORACLE_NODE], [FEED_ADMIN], 1, 1, 0))
    ctx.transact(aggregator.functions.submit(1, _answer(price_usd)), sender=_as(ctx, ORACLE_NODE))
    proxy = ctx.deploy(fixture_artifact("chainlink", "EACAggregatorProxy"), aggregator.address, "0x" + "00" * 20)
    for owned in (aggregator, proxy):
        ctx.transact(owned.functions.transferOwnership(FEED_ADMIN))
        ctx.transact(owned.functions.acceptOwnership(), sender=_as(ctx, FEED_ADMIN))
    return proxy.address


def deploy_chainlink_feeds(ctx: DevnetContext) -> dict[str, str]:
    """Every asset's price source in mainnet's shape (see the module docstring)."""
    assets = ctx.scenario.assets
    link_token = ctx.book["tokens"].get("LINK", ctx.deployer)   # FluxAggregator pays in LINK; payment is 0
    now = int(ctx.w3.eth.get_block("latest")["timestamp"])
    feeds: dict[str, str] = {}
    for symbol, spec in assets.items():
        if spec.ratio_to is None:
            pair = f"{ROOT_NAMES.get(symbol, symbol)} / USD"
            feeds[symbol] = proxy = deploy_chainlink_root(ctx, pair, spec.price_usd, link_token)
            if symbol in STABLE_SYMBOLS:
                feeds[symbol] = ctx.deploy(fixture_artifact("oracles", "PriceCapAdapterStable"), proxy,
                                           f"Capped {symbol} / USD", _answer(spec.price_usd * STABLE_PRICE_CAP)).address
    for symbol, spec in assets.items():
        if spec.ratio_to is not None:
            base = assets[spec.ratio_to]
            ratio_raw = round(spec.price_usd / base.price_usd * 10**18)
            shares = ctx.deploy(fixture_artifact("oracles", "StETHShares"), ratio_raw, 10**18)
            feeds[symbol] = ctx.deploy(fixture_artifact("oracles", "RatioPriceCapAdapter"), feeds[spec.ratio_to],
                                       shares.address, f"Capped {symbol} / {spec.ratio_to} / USD", 18, ratio_raw,
                                       now, LST_MAX_YEARLY_RATIO_GROWTH_BPS).address
    return feeds


def deploy_feeds(ctx: DevnetContext) -> None:
    """The scenario's oracle stack; records ``feeds``, ``oracle_stack`` (and ``feed_owner`` for plain)."""
    stack = ctx.scenario.oracle_stack
    if stack == "plain":
        ctx.book.update(feeds=deploy_plain_feeds(ctx), oracle_stack=stack, feed_owner=ctx.deployer)
    else:
        ctx.book.update(feeds=deploy_chainlink_feeds(ctx), oracle_stack=stack)


_FEED_ABI = [
    {"type": "function", "name": "latestRound", "stateMutability": "view", "inputs": [],
     "outputs": [{"type": "uint256", "name": ""}]},
    {"type": "function", "name": "latestAnswer", "stateMutability": "view", "inputs": [],
     "outputs": [{"type": "int256", "name": ""}]},
    {"type": "function", "name": "submit", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [{"type": "uint256", "name": "roundId"}, {"type": "int256", "name": "submission"}]},
    {"type": "function", "name": "setAnswer", "stateMutability": "nonpayable", "outputs": [],
     "inputs": [{"type": "int256", "name": "answer"}]},
]


def feed_price(ctx: DevnetContext, symbol: str) -> Fraction:
    """USD per whole ``symbol`` token as the devnet's feed of it answers now (``latestAnswer``,
    8 decimals), an exact rational: venue devnets start their pools at it."""
    feed = ctx.contract(ctx.book["feeds"][symbol], _FEED_ABI)
    return Fraction(int(feed.functions.latestAnswer().call()), 10**PRICE_DECIMALS)


def report_root(ctx: DevnetContext, root: str, answer: int) -> None:
    """A new answer at a root feed, as its operator reports it: the oracle node's next round on a
    FluxAggregator; ``setAnswer`` by the owner on a plain PriceFeed."""
    feed = ctx.contract(root, _FEED_ABI)
    if ctx.book.get("oracle_stack") == "plain":
        ctx.transact(feed.functions.setAnswer(answer), sender=ctx.book["feed_owner"])
    else:
        ctx.transact(feed.functions.submit(feed.functions.latestRound().call() + 1, answer),
                     sender=_as(ctx, ORACLE_NODE))


@contextmanager
def prices_raised(ctx: DevnetContext, feeds: Sequence[str], factor: float) -> Iterator[None]:
    """Inside the block, the root of each of ``feeds`` answers ``factor`` × its answer (so every
    price derived from it too); restored after. For seeding positions near a protocol's limit."""
    roots = sorted({resolve(ctx.w3, feed, "devnet", feed).root for feed in feeds})
    answers = {root: int(ctx.contract(root, _FEED_ABI).functions.latestAnswer().call()) for root in roots}
    if factor == 1.0:
        yield
        return
    for root in roots:
        report_root(ctx, root, int(answers[root] * factor) + 1)
    try:
        yield
    finally:
        for root in roots:
            report_root(ctx, root, answers[root])
