"""The fork a replay runs on: its reader, its accounts and assets, and its protocols' executors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from web3 import Web3

from analyzer.model import Snapshot
from analyzer.replay.keepers import Lender
from analyzer.replay.oracles import ForkOracles
from analyzer.replay.result import Skips
from analyzer.replay.shock import ForkMarket
from analyzer.replay.trades import ReceiptSales
from analyzer.scan import scan
from analyzer.scenarios import ShockScenario
from protocols.base import Plugin


@dataclass
class ForkReader:
    """Reads the fork with the protocol readers (never cached: the fork changes every round)."""

    url: str
    plugins: Sequence[Plugin]
    book: dict

    def __call__(self, accounts: list[str] | None = None, only: Sequence[Plugin] | None = None,
                 oracle_paths: bool = False) -> Snapshot:
        return scan(self.url, only or self.plugins, book=self.book, accounts=accounts, cache_dir=None,
                    oracle_paths=oracle_paths)


@dataclass
class ReplayFork:
    """Everything a round needs: the fork, its pre-shock read and the parts acting on it."""

    w3: Web3
    read: ForkReader
    scenario: ShockScenario
    progress: Callable[[str], None]
    trader: str                                # moves pools and sells what the keepers received
    before: Snapshot                           # the fork's read before the shock
    accounts: list[str] | None                 # every account of the pre-shock read
    lenders: list[Lender]
    oracles: ForkOracles
    market: ForkMarket
    sales: ReceiptSales
    skips: Skips

    @property
    def asset_list(self) -> list[str]:
        return self.sales.assets

    @property
    def decimals(self) -> dict[str, int]:
        return self.market.decimals

    @property
    def symbols(self) -> dict[str, str]:
        return self.market.symbols


def open_fork(w3: Web3, url: str, book: dict, scenario: ShockScenario, plugins: Sequence[Plugin],
              progress: Callable[[str], None]) -> ReplayFork:
    """Read the fork before the shock and set up its executors, oracles and pools."""
    from analyzer.books import deployments_for
    from analyzer.replay.keepers import lenders_on

    read = ForkReader(url, plugins, book)
    accounts_of_anvil = list(w3.eth.accounts)
    keeper, trader = accounts_of_anvil[1], accounts_of_anvil[2]
    before = read(oracle_paths=True)
    accounts = sorted(set(before.positions["account"]) | set(before.accounts["account"])) or None
    chain_markets = deployments_for(plugins, before.meta["chain_id"], book)
    lenders, oracle_entries = lenders_on(w3, plugins, chain_markets, before, keeper)
    oracles = ForkOracles(w3, oracle_entries, progress)
    market = ForkMarket.open(w3, chain_markets, read, before)
    return ReplayFork(w3, read, scenario, progress, trader, before, accounts, lenders, oracles, market,
                      ReceiptSales.of(before), Skips(progress))

