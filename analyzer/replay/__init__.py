"""Replay: run a shock scenario for real on a fresh anvil fork, with real liquidations and swaps.

The engine's claim is tested against the chain itself (DESIGN.md, "Proving it: replay"):

1. fork the source chain at its current block (the source is only read: its block number and
   state root are checked unchanged at the end) — :mod:`~analyzer.replay.fork`;
2. shock: move every pool of a shocked asset to the shocked price with real swaps (a price
   limit at the target), and set every protocol's oracle to it at the root feeds
   (:mod:`~analyzer.replay.shock`, :mod:`~analyzer.replay.oracles`);
3. rounds: read the fork with the protocol readers; for every account a protocol's own rule calls
   liquidatable, send the real liquidation with a keeper (an anvil account funded by cheats),
   choosing the debt and collateral assets the rule's keeper step chooses; repeat while any is
   left at this round's prices (:mod:`~analyzer.replay.keepers`, options in
   :mod:`~analyzer.replay.options`); sell what the keeper received through the real pools, buy
   back the debt it repaid (:mod:`~analyzer.replay.trades`); set every oracle to the new pool
   prices; mine;
4. until a round liquidates nothing and moves no price beyond the scenario's ``tolerance`` (the
   engine's fixed point), or the round limit (:mod:`~analyzer.replay.run`).

What each round did is kept in :class:`ReplayRound` (:mod:`~analyzer.replay.result`);
:func:`replay_and_compare` runs the engine beside it and :func:`analyzer.fidelity.compare` sets
the two side by side.
"""

from analyzer.replay.compare import ReplayComparison, engine_liquidated_accounts, replay_and_compare
from analyzer.replay.result import ReplayLiquidation, ReplayResult, ReplayRound
from analyzer.replay.run import replay
from analyzer.replay.shock import market_view

__all__ = ["ReplayComparison", "ReplayLiquidation", "ReplayResult", "ReplayRound", "engine_liquidated_accounts",
           "market_view", "replay", "replay_and_compare"]
