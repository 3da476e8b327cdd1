"""Moving prices on any anvil fork at the root feed of each oracle stack.

A protocol's oracle reads each asset's price from a source: a Chainlink ``EACAggregatorProxy``,
an adapter over one (Aave's CAPO ratio and stablecoin caps), or a wrapper (Comet's scaling
feeds). The plugin says where its oracle reads each asset (:class:`protocols.base.PriceSources`);
this module follows the source, generically, to the *root*: the aggregator a proxy currently
reads (``aggregator()``), the base feed of an adapter (``BASE_TO_USD_AGGREGATOR()``,
``ASSET_TO_USD_AGGREGATOR()``) or of one of Comet's wrappers (``underlyingPriceFeed()`` of a
ScalingPriceFeed, ``stETHtoETHPriceFeed()`` of a WstETHPriceFeed, ``priceFeedB()`` of a
MultiplicativePriceFeed: the factor whose round it reports), until an address answers
``latestRoundData()`` and none of these getters. A move replaces the root's code with
our :file:`fixtures/contracts/oracles/ForkAggregator.sol` (``anvil_setCode``) and writes its
rounds (``anvil_setStorageAt``): it keeps the original's decimals, description, version and
round ids, so every consumer of the feed (every protocol, every adapter) sees the same move,
and derived prices (a ratio adapter's ratio × base) follow their base. No owner key, no
governance: only anvil cheats, refused on any other client.

A price is *derived* when its source answers something else than its root, once both are in
USD at the same decimals (wstETH = stETH-per-wstETH ratio × ETH / USD): such an asset moves
with its root and is never moved on its own, since that would move the root's other assets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from analyzer.chain import require_anvil, rpc
from analyzer.checksum import checksum
from analyzer.errors import ContagionError
from analyzer.multicall import Call, multicall, single_call

log = logging.getLogger(__name__)

# getters that lead from a wrapper to the feed it reads, tried in this order
NEXT_FEED_GETTERS = (
    ("aggregator()(address)", "proxy"),                      # Chainlink EACAggregatorProxy
    ("BASE_TO_USD_AGGREGATOR()(address)", "ratio adapter"),  # Aave CAPO ratio adapters
    ("ASSET_TO_USD_AGGREGATOR()(address)", "cap adapter"),   # Aave CAPO stablecoin adapters
    ("underlyingPriceFeed()(address)", "wrapper"),           # Comet ScalingPriceFeed (and rate-based)
    ("stETHtoETHPriceFeed()(address)", "ratio wrapper"),     # Comet WstETHPriceFeed: × wstETH's rate
    ("priceFeedB()(address)", "product wrapper"),            # Comet MultiplicativePriceFeed: A × B
)
# Comet's ReverseMultiplicativePriceFeed (A / B) answers priceFeedB too, but falls when B rises: no
# root move sets it, so the resolver stops there (it answers this getter, the product does not)
REVERSE_MARKER = "priceFeedAScale()(int256)"
MAX_HOPS = 8
DERIVED_TOLERANCE = 1e-9
FOLLOW_TOLERANCE = 1e-6   # a derived price "is at" a target within this relative error
FORK_AGGREGATOR_BASE = int.from_bytes(keccak(text="defi-contagion.fork-aggregator"), "big") - 1
MAX_ROUND = 2**80 - 1


@dataclass(frozen=True)
class FeedPath:
    """How ``protocol`` prices ``asset``: its source and every feed behind it, root last."""

    asset: str
    protocol: str
    hops: tuple[tuple[str, str], ...]     # (address, what it is), from the source to the "root"
    source_usd: float                     # the source's answer now, USD per token
    root_answer: int                      # the root's answer now, raw
    root_decimals: int

    @property
    def source(self) -> str:
        return self.hops[0][0]

    @property
    def root(self) -> str:
        return self.hops[-1][0]

    @property
    def derived(self) -> bool:
        """The source answers something else than its root (a ratio × base): it only follows."""
        root_usd = self.root_answer / 10**self.root_decimals
        return root_usd <= 0 or abs(self.source_usd / root_usd - 1.0) > DERIVED_TOLERANCE

    def root_answer_for(self, price_usd: float) -> int:
        """The root's raw answer under which the source answers ``price_usd`` (wrappers are linear)."""
        if self.source_usd <= 0:
            raise ContagionError(f"{self.protocol}: the price source {self.source} of {self.asset} answers "
                                 f"{self.source_usd}; it cannot be moved by scaling its root")
        return max(round(self.root_answer * price_usd / self.source_usd), 1)


@dataclass
class MoveReport:
    """What a move did: the roots it wrote, the derived prices that followed, what it left out."""

    roots: dict[str, int] = field(default_factory=dict)              # root -> new raw answer
    followed: dict[tuple[str, str], float] = field(default_factory=dict)   # (protocol, asset) -> USD now
    conflicts: list[str] = field(default_factory=list)
    not_moved: list[tuple[str, str]] = field(default_factory=list)   # derived, and their root kept


def _read(w3: Web3, call: Call, block: int | None = None) -> object | None:
    result = single_call(w3, call, block=w3.eth.block_number if block is None else block)
    return result.value if result.success else None


def feed_usd(w3: Web3, feed: str, block: int | None = None) -> float | None:
    """USD per token a Chainlink-style feed answers at ``block`` (default: now), from
    ``latestAnswer`` or ``latestRoundData``."""
    decimals = _read(w3, Call(feed, "decimals()(uint8)"), block)
    answer = _read(w3, Call(feed, "latestAnswer()(int256)"), block)
    if answer is None:
        round_data = _read(w3, Call(feed, "latestRoundData()(uint80,int256,uint256,uint256,uint80)"), block)
        answer = None if round_data is None else round_data[1]
    if decimals is None or answer is None:
        return None
    return int(answer) / 10 ** int(decimals)


ROUND_DATA = "latestRoundData()(uint80,int256,uint256,uint256,uint80)"
FEED_READS = (*(getter for getter, _ in NEXT_FEED_GETTERS), ROUND_DATA, "decimals()(uint8)", "latestAnswer()(int256)",
              REVERSE_MARKER)
_FEED = slice(len(NEXT_FEED_GETTERS), len(NEXT_FEED_GETTERS) + 3)    # round data, decimals, answer


def _read_many(w3: Web3, addresses: Sequence[str], block: int) -> dict[str, list[object | None]]:
    """Every :data:`FEED_READS` getter of every address at ``block`` (None where it fails), through
    Multicall3 (a few requests for a whole protocol's oracle); one call each where the batch fails
    (no Multicall3, or an address whose code burns all the gas it is given, which sinks the batch)."""
    calls = [Call(a, getter) for a in addresses for getter in FEED_READS]
    try:
        results = multicall(w3, calls, block=block)
    except Exception:   # noqa: BLE001 - web3 raises its own errors for an out-of-gas batch
        results = [single_call(w3, call, block=block) for call in calls]
    width = len(FEED_READS)
    return {a: [r.value if r.success else None for r in results[i * width:(i + 1) * width]]
            for i, a in enumerate(addresses)}


def resolve(w3: Web3, asset: str, protocol: str, source: str, block: int | None = None) -> FeedPath:
    """Follow ``source`` (where ``protocol``'s oracle reads ``asset``) to its root feed.

    Raises ContagionError naming the asset, the protocol and the address it stopped at when an
    address is neither a known wrapper nor a feed that answers ``latestRoundData``.
    """
    return resolve_many(w3, [(asset, protocol, source)], block)[0]


def resolve_many(w3: Web3, sources: Sequence[tuple[str, str, str]], block: int | None = None) -> list[FeedPath]:
    """:func:`resolve` for many ``(asset, protocol, source)`` at once: one batch of reads per hop
    (addresses checksummed through :func:`analyzer.checksum.checksum`, remembered: a scan's oracle
    paths checksum the same few dozen addresses hundreds of times)."""
    block = w3.eth.block_number if block is None else block
    hops: list[list[tuple[str, str]]] = [[] for _ in sources]
    at = [checksum(source) for _, _, source in sources]
    reads: dict[str, list[object | None]] = {}
    open_ = list(range(len(sources)))
    for _ in range(MAX_HOPS + 1):
        reads.update(_read_many(w3, sorted({at[i] for i in open_} - set(reads)), block))
        still = []
        for i in open_:
            address, answers = at[i], reads[at[i]]
            if answers[-1] is not None:
                asset, protocol, _ = sources[i]
                raise ContagionError(f"{protocol}: the price of {asset} is a quotient of two feeds (a reverse "
                                     f"multiplicative feed at {address}): it falls when its feeds rise, so no "
                                     "root move sets it")
            for (_getter, kind), following in zip(NEXT_FEED_GETTERS, answers, strict=False):
                if following and int(following, 16) != 0 and checksum(following) != address:
                    hops[i].append((address, kind))
                    at[i] = checksum(following)
                    still.append(i)
                    break
            else:
                hops[i].append((address, "root"))
        open_ = still
        if not open_:
            break
    paths = []
    for i, (asset, protocol, _source) in enumerate(sources):
        address = at[i]
        if open_ and i in open_ or len(hops[i]) > MAX_HOPS:
            raise ContagionError(f"{protocol}: the price of {asset} goes through more than {MAX_HOPS} feeds "
                                 f"(stopped at {address})")
        root, first = reads[address], reads[hops[i][0][0]]
        round_data, decimals, _answer = root[_FEED]
        source_usd = _usd(*first[_FEED])
        if round_data is None or decimals is None or source_usd is None:
            raise ContagionError(f"{protocol}: cannot find the root feed of {asset}'s price: it stopped at "
                                 f"{address}, which is no feed (no latestRoundData/decimals) and no known "
                                 f"wrapper ({', '.join(g.split('(')[0] for g, _ in NEXT_FEED_GETTERS)})")
        paths.append(FeedPath(checksum(asset), protocol, tuple(hops[i]), source_usd,
                              int(round_data[1]), int(decimals)))
    return paths


def _usd(round_data, decimals, answer) -> float | None:
    """USD per token from a feed's reads, as :func:`feed_usd` computes it."""
    if answer is None:
        answer = None if round_data is None else round_data[1]
    if decimals is None or answer is None:
        return None
    return int(answer) / 10 ** int(decimals)


# --- the fork aggregator's storage ----------------------------------------------------------------

def _word(value: int) -> str:
    return "0x" + (value % 2**256).to_bytes(32, "big").hex()


def _mapping_slot(key: int, slot: int) -> int:
    return int.from_bytes(keccak(abi_encode(["uint256", "uint256"], [key, slot])), "big")


def _string_words(slot: int, text: str) -> dict[int, int]:
    """Solidity's storage of a ``string`` at ``slot``: short (< 32 bytes) inline, long at keccak(slot)."""
    data = text.encode()
    if len(data) < 32:
        return {slot: int.from_bytes(data.ljust(31, b"\0") + bytes([2 * len(data)]), "big")}
    words = {slot: 2 * len(data) + 1}
    start = int.from_bytes(keccak(slot.to_bytes(32, "big")), "big")
    for i in range(0, len(data), 32):
        words[start + i // 32] = int.from_bytes(data[i:i + 32].ljust(32, b"\0"), "big")
    return words


class PriceMover:
    """Moves root feeds on one anvil chain (see the module docstring). Roots it has taken over are
    remembered, so a later move continues their rounds and ``refresh`` keeps them current."""

    def __init__(self, w3: Web3):
        require_anvil(w3)
        self.w3 = w3
        self.rounds: dict[str, tuple[int, int]] = {}     # root -> (latest round id, answer)
        self.decimals: dict[str, int] = {}

    def _set(self, address: str, slot: int, value: int) -> None:
        rpc(self.w3, "anvil_setStorageAt", [address, _word(slot), _word(value)])

    def _now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def take_over(self, root: str) -> None:
        """Install ForkAggregator at ``root``, continuing its rounds from the original's last one."""
        from analyzer.devnet.solc import fixture_artifact

        root = to_checksum_address(root)
        if root in self.rounds:
            return
        round_data = _read(self.w3, Call(root, "latestRoundData()(uint80,int256,uint256,uint256,uint80)"))
        decimals = _read(self.w3, Call(root, "decimals()(uint8)"))
        if round_data is None or decimals is None:
            raise ContagionError(f"root feed {root} does not answer latestRoundData/decimals")
        description = _read(self.w3, Call(root, "description()(string)")) or ""
        version = _read(self.w3, Call(root, "version()(uint256)")) or 0
        rpc(self.w3, "anvil_setCode", [root, fixture_artifact("oracles", "ForkAggregator")["deployedBytecode"]])
        self._set(root, FORK_AGGREGATOR_BASE + 1, int(version))
        for slot, value in _string_words(FORK_AGGREGATOR_BASE + 2, str(description)).items():
            self._set(root, slot, value)
        round_id, answer, started_at, updated_at, _ = round_data
        # the last round as the original reported it, so getRoundData(latest) still answers
        self._write_round(root, int(decimals), int(round_id) & MAX_ROUND, int(answer), int(started_at),
                          max(int(updated_at), 1))

    def _write_round(self, root: str, decimals: int, round_id: int, answer: int, started_at: int,
                     updated_at: int) -> None:
        slot = _mapping_slot(round_id, FORK_AGGREGATOR_BASE + 3)
        self._set(root, slot, answer)
        self._set(root, slot + 1, (started_at % 2**64) | ((updated_at % 2**64) << 64))
        self._set(root, FORK_AGGREGATOR_BASE, decimals | (round_id << 8))
        self.rounds[root] = (round_id, answer)
        self.decimals[root] = decimals

    def set_answer(self, root: str, answer: int) -> None:
        """A new round at ``root`` answering ``answer`` (raw), updated at the chain's time now."""
        self.take_over(root)
        round_id, _ = self.rounds[root]
        now = self._now()
        self._write_round(root, self.decimals[root], round_id + 1, int(answer), now, now)

    def refresh(self) -> None:
        """A new round with the same answer on every root taken over: heartbeat and staleness
        checks (``updatedAt`` against the fork's time) see a current feed after blocks pass."""
        for root, (_, answer) in list(self.rounds.items()):
            self.set_answer(root, answer)

    def current(self, path: FeedPath) -> FeedPath:
        """``path`` with its source's and its root's answers as the chain has them now."""
        source_usd = feed_usd(self.w3, path.source)
        round_data = _read(self.w3, Call(path.root, "latestRoundData()(uint80,int256,uint256,uint256,uint80)"))
        if source_usd is None or round_data is None:
            raise ContagionError(f"{path.protocol}: the price feeds of {path.asset} stopped answering "
                                 f"({path.source} -> {path.root})")
        return FeedPath(path.asset, path.protocol, path.hops, source_usd, int(round_data[1]), path.root_decimals)

    def move(self, paths: Iterable[FeedPath], targets_usd: Mapping[str, float]) -> MoveReport:
        """Set every root so that each non-derived path's source answers its asset's target.

        Two direct paths that ask one root for different answers are reported in ``conflicts``
        (the first asset in ``targets_usd``'s order wins). Derived paths are left to follow their
        root; what they answer afterwards is in ``followed``.
        """
        report = MoveReport()
        paths = [self.current(path) for path in paths]
        wanted: dict[str, tuple[int, FeedPath]] = {}
        for asset in targets_usd:
            for path in paths:
                if path.asset != to_checksum_address(asset) or path.derived:
                    continue
                answer = path.root_answer_for(float(targets_usd[asset]))
                if path.root in wanted and abs(wanted[path.root][0] - answer) > max(1, abs(answer) * 1e-9):
                    first = wanted[path.root][1]
                    report.conflicts.append(f"{path.protocol} {path.asset} and {first.protocol} {first.asset} "
                                            f"share root feed {path.root}; kept {first.asset}'s price")
                    continue
                wanted.setdefault(path.root, (answer, path))
        for root, (answer, _) in wanted.items():
            if self.rounds.get(root, (0, None))[1] != answer or root not in self.rounds:
                self.set_answer(root, answer)
            report.roots[root] = answer
        for path in paths:
            if path.derived and path.root in wanted:
                report.followed[(path.protocol, path.asset)] = feed_usd(self.w3, path.source) or 0.0
            elif path.derived:
                report.not_moved.append((path.protocol, path.asset))
        for conflict in report.conflicts:
            log.warning("price move: %s", conflict)
        return report


def move_prices(w3: Web3, sources: Sequence[tuple[str, str, str]], targets_usd: Mapping[str, float],
                mover: PriceMover | None = None) -> MoveReport:
    """Move ``targets_usd`` (USD by asset) through each ``(asset, protocol, source)`` of ``sources``."""
    mover = mover or PriceMover(w3)
    paths = [resolve(w3, asset, protocol, source) for asset, protocol, source in sources
             if to_checksum_address(asset) in {to_checksum_address(a) for a in targets_usd}]
    return mover.move(paths, targets_usd)


def sequencer_down(w3: Web3, feed: str, grace_seconds: int) -> str | None:
    """Why an L2 sequencer-uptime feed (Chainlink: answer 0 = up, 1 = down; ``startedAt`` = when the
    status last changed) stops liquidations now: down, or up for less than the grace period; None
    when liquidations are allowed (Aave's ``PriceOracleSentinel.isLiquidationAllowed``)."""
    round_data = _read(w3, Call(feed, "latestRoundData()(uint80,int256,uint256,uint256,uint80)"))
    if round_data is None:
        return f"the sequencer-uptime feed {feed} does not answer latestRoundData"
    _, answer, started_at, _, _ = round_data
    now = int(w3.eth.get_block("latest")["timestamp"])
    if int(answer) != 0:
        return f"the sequencer-uptime feed {feed} reports the sequencer down"
    if now - int(started_at) <= grace_seconds:
        return (f"the sequencer-uptime feed {feed} reports the sequencer up for {now - int(started_at)} s, "
                f"within the grace period of {grace_seconds} s")
    return None


def protocol_paths(w3: Web3, protocol: str, sources: Iterable, assets: Iterable[str] | None = None,
                   block: int | None = None) -> tuple[list[FeedPath], dict[str, str]]:
    """The root paths of ``protocol``'s price sources (``protocols.base.PriceSource``), restricted
    to ``assets`` when given, and the assets it cannot price (asset -> reason: the oracle reverts)."""
    todo, unpriced = protocol_sources(protocol, sources, assets)
    return resolve_many(w3, todo, block), unpriced


def protocol_sources(protocol: str, sources: Iterable, assets: Iterable[str] | None = None
                     ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """What :func:`protocol_paths` resolves: ``(asset, protocol, feed)`` of each source it follows
    (:func:`resolve_many`'s input), and the assets it cannot price."""
    wanted = None if assets is None else {checksum(a) for a in assets}
    todo, unpriced = [], {}
    for source in sources:
        asset = checksum(source.asset)
        if wanted is not None and asset not in wanted:
            continue
        if source.feed is None:
            unpriced[asset] = source.error or "no price source"
            continue
        todo.append((asset, protocol, source.feed))
    return todo, unpriced


def derived_prices(paths: Sequence[FeedPath]) -> dict[str, dict[str, float | str]]:
    """Assets whose every oracle path is derived from a root that another asset reads directly:
    ``{asset: {"base": base asset, "ratio": price / base price}}`` (wstETH: base WETH, ratio the
    stETH per wstETH). The engine prices such an asset's oracle as ratio × its base's oracle."""
    direct: dict[str, FeedPath] = {}
    for path in sorted(paths, key=lambda p: (p.asset, p.protocol)):
        if not path.derived:
            direct.setdefault(path.root, path)
    found: dict[str, dict[str, float | str]] = {}
    blocked: set[str] = set()
    for path in paths:
        base = direct.get(path.root)
        if not path.derived or base is None or base.source_usd <= 0:
            blocked.add(path.asset)
            continue
        entry = {"base": base.asset, "ratio": path.source_usd / base.source_usd}
        if path.asset in found and (found[path.asset]["base"] != entry["base"]
                                    or abs(float(found[path.asset]["ratio"]) / float(entry["ratio"]) - 1) > 1e-9):
            blocked.add(path.asset)
        found.setdefault(path.asset, entry)
    return {asset: entry for asset, entry in sorted(found.items()) if asset not in blocked}


def set_protocol_price(w3: Web3, protocol: str, sources: Iterable, asset: str, price_usd: float,
                       mover: PriceMover | None = None) -> MoveReport:
    """Make ``protocol``'s oracle answer ``price_usd`` for ``asset`` by moving the root behind it.

    Refuses (ContagionError) an asset the oracle cannot price, and a derived price that its base's
    move does not already put at ``price_usd`` (within FOLLOW_TOLERANCE): it follows its base, so
    move the base asset first. The caller never believes a price moved that did not.
    """
    paths, unpriced = protocol_paths(w3, protocol, sources, [asset])
    if to_checksum_address(asset) in unpriced:
        raise ContagionError(f"{protocol}: cannot move the price of {asset}: {unpriced[to_checksum_address(asset)]}")
    if not paths:
        raise ContagionError(f"{protocol}: its oracle has no price source for {asset}")
    mover = mover or PriceMover(w3)
    report = mover.move(paths, {asset: price_usd})
    rpc(w3, "anvil_mine", ["0x1"])    # the move lands in a block, as an oracle's report would
    derived_now = [feed_usd(w3, path.source) for path in paths if path.derived]
    if any(now is None or abs(now / price_usd - 1.0) > FOLLOW_TOLERANCE for now in derived_now):
        root = paths[0].root
        raise ContagionError(f"{protocol}: the price of {asset} derives from root feed {root} (a ratio × base "
                             "price): move the base asset's price, and this one follows")
    return report
