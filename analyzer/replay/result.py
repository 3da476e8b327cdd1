"""What a replay did: each round's liquidations and trades, and the totals at the end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analyzer.model import Snapshot


@dataclass
class ReplayLiquidation:
    """One liquidation sent on the fork (USD at the protocol's oracle prices of its round)."""

    round: int
    protocol: str
    account: str
    debt_asset: str
    collateral_asset: str
    repaid_usd: float
    seized_usd: float
    tx_hash: str


@dataclass
class ReplayRound:
    """One round of the replay: the oracle prices it liquidated at, what it liquidated and traded."""

    round: int
    prices_usd: dict[str, float]                       # oracle prices the round liquidated at
    liquidations: list[ReplayLiquidation] = field(default_factory=list)
    pool_prices_after: dict[str, float] = field(default_factory=dict)
    sold_raw: dict[str, int] = field(default_factory=dict)      # collateral the keeper sold
    bought_raw: dict[str, int] = field(default_factory=dict)    # debt assets bought back
    hedge_units: dict[str, float] = field(default_factory=dict)  # option pools' hedge sales (> 0) / buys
    # the net flow of each asset as routed: one real swap per venue used (asset, venue, model, quote, units)
    routed: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0                   # liquidatable accounts no keeper liquidated this round (see ReplaySkip)
    # the scenario's forced sales closed this round (round 0): protocol, market, account, raw withdrawn / repaid
    forced: list[dict[str, Any]] = field(default_factory=list)
    # per protocol: the fork's (block, timestamp) when its keepers read the round's book
    clock: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class ReplaySkip:
    """A liquidatable account a keeper left, or a liquidation the protocol refused: one record per
    (protocol, account, reason), with the rounds it happened in."""

    protocol: str
    account: str
    reason: str
    rounds: list[int] = field(default_factory=list)


class Skips:
    """The replay's skips. Each (protocol, account, reason) is logged once, when first seen; later
    rounds only count it (:attr:`ReplayRound.skipped`)."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.found: dict[tuple[str, str, str], ReplaySkip] = {}

    def add(self, round_index: int, protocol: str, account: str, reason: str) -> None:
        reason = " ".join(reason.split())[:300]     # one line, whatever the node's error said
        skip = self.found.get((protocol, account, reason))
        if skip is None:
            skip = self.found[(protocol, account, reason)] = ReplaySkip(protocol, account, reason)
            self.log(f"replay: {protocol} {account}: {reason}")
        if round_index not in skip.rounds:
            skip.rounds.append(round_index)

    def in_round(self, round_index: int) -> tuple[int, int]:
        """(skips in round ``round_index``, of which first seen there)."""
        skips = [s for s in self.found.values() if round_index in s.rounds]
        return len(skips), sum(1 for s in skips if s.rounds[0] == round_index)


@dataclass
class ReplayResult:
    """A whole replay (see :func:`analyzer.replay.replay`); ``to_json`` is what replay.json holds."""

    source_block: int
    fork_block_end: int
    rounds: list[ReplayRound]
    reached_fixed_point: bool
    liquidated_usd: dict[str, float]                   # per protocol: debt repaid, oracle USD
    bad_debt_usd: dict[str, float]                     # per protocol, at final oracle prices
    final_prices: dict[str, float]                     # by asset address: final pool (market) price
    accounts_liquidated: dict[str, list[str]]          # per protocol
    source_unchanged: bool
    snapshot_before: Snapshot | None = None
    unpriced_markets: list[dict[str, str]] = field(default_factory=list)   # oracle reverts: left out
    oracle_notes: list[str] = field(default_factory=list)                   # derived prices, conflicts
    seconds_per_round: float = 0.0     # the fork's time from the snapshot to the end, per round
    blocks_per_round: float = 0.0
    skips: list[ReplaySkip] = field(default_factory=list)

    def interest_clock(self) -> dict[str, list[tuple[float, float]]]:
        """Per protocol, each round's (seconds, blocks) that passed on the fork before its keepers
        read the round's book, counted from the pre-shock read (``ShockScenario.round_clock``)."""
        if self.snapshot_before is None:
            return {}
        start = (int(self.snapshot_before.meta["block_timestamp"]), self.source_block)
        clock: dict[str, list[tuple[float, float]]] = {}
        last: dict[str, tuple[int, int]] = {}
        for record in self.rounds:
            for protocol, (block, timestamp) in record.clock.items():
                seconds_before, block_before = last.get(protocol, start)
                clock.setdefault(protocol, []).append((float(max(timestamp - seconds_before, 0)),
                                                       float(max(block - block_before, 0))))
                last[protocol] = (timestamp, block)
        return clock

    def to_json(self) -> dict[str, Any]:
        return {
            "source_block": self.source_block, "fork_block_end": self.fork_block_end,
            "reached_fixed_point": self.reached_fixed_point, "source_unchanged": self.source_unchanged,
            "liquidated_usd": self.liquidated_usd, "bad_debt_usd": self.bad_debt_usd,
            "final_prices": self.final_prices, "accounts_liquidated": self.accounts_liquidated,
            "unpriced_markets": self.unpriced_markets, "oracle_notes": self.oracle_notes,
            "seconds_per_round": self.seconds_per_round, "blocks_per_round": self.blocks_per_round,
            "skips": [vars(s) for s in self.skips],
            "rounds": [{"round": r.round, "prices_usd": r.prices_usd, "pool_prices_after": r.pool_prices_after,
                        "skipped": r.skipped, "clock": {p: list(c) for p, c in r.clock.items()},
                        "sold_raw": {a: str(v) for a, v in r.sold_raw.items()},
                        "bought_raw": {a: str(v) for a, v in r.bought_raw.items()}, "hedge_units": r.hedge_units,
                        "routed": r.routed, "forced": r.forced,
                        "liquidations": [vars(x) for x in r.liquidations]} for r in self.rounds],
        }


def totals(rounds: list[ReplayRound], protocols: list[str]) -> tuple[dict[str, float], dict[str, list[str]]]:
    """USD repaid and the accounts liquidated per protocol, summed over the rounds in their order."""
    liquidated = dict.fromkeys(protocols, 0.0)
    accounts: dict[str, set[str]] = {name: set() for name in protocols}
    for record in rounds:
        for liquidation in record.liquidations:
            liquidated[liquidation.protocol] += liquidation.repaid_usd
            accounts[liquidation.protocol].add(liquidation.account)
    return liquidated, {name: sorted(held) for name, held in accounts.items()}
