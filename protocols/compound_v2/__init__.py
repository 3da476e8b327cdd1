"""Compound V2 and its forks: interface-exact devnet contracts, reader, rule, executor.

Built-in books ``books/<chain>.json``: one market per Comptroller (Unitroller proxy), with the fork
profile its rule follows (:mod:`protocols.compound_v2.profiles`) and the source of the address.
"""

from pathlib import Path

from protocols.base import Plugin
from protocols.compound_v2.constants import PROTOCOL
from protocols.compound_v2.devnet import CompoundV2Devnet
from protocols.compound_v2.executor import CompoundV2Executor
from protocols.compound_v2.prices import CompoundV2PriceSources
from protocols.compound_v2.reader import CompoundV2Reader
from protocols.compound_v2.rules import CompoundV2Rules
from protocols.compound_v2.tuning import CompoundV2Tuning

PLUGIN = Plugin(
    name=PROTOCOL,
    reader=CompoundV2Reader,
    rules=CompoundV2Rules,
    executor=CompoundV2Executor,
    devnet=CompoundV2Devnet,
    price_sources=CompoundV2PriceSources,
    tuning=CompoundV2Tuning,
    devnet_order=20,
    books=Path(__file__).parent / "books",
    market_key="comptroller",
)
