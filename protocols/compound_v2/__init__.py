"""Compound V2 and its forks: interface-exact devnet contracts, reader, rule, executor.

Mainnet: the Comptroller (Unitroller proxy) of Compound V2 on Ethereum,
0x3d9819210A31b4961b30EF54bE2aeD79B9c9Cd3B, as published in compound-finance/compound-protocol
networks/mainnet.json ("Comptroller") and https://docs.compound.finance/v2/#networks.
"""

from protocols.base import Plugin
from protocols.compound_v2.constants import PROTOCOL
from protocols.compound_v2.devnet import CompoundV2Devnet
from protocols.compound_v2.executor import CompoundV2Executor
from protocols.compound_v2.prices import CompoundV2PriceSources
from protocols.compound_v2.reader import CompoundV2Reader
from protocols.compound_v2.rules import CompoundV2Rules

MAINNET_COMPTROLLER = "0x3d9819210A31b4961b30EF54bE2aeD79B9c9Cd3B"

PLUGIN = Plugin(
    name=PROTOCOL,
    reader=CompoundV2Reader,
    rules=CompoundV2Rules,
    executor=CompoundV2Executor,
    devnet=CompoundV2Devnet,
    price_sources=CompoundV2PriceSources,
    devnet_order=20,
    mainnet={1: {"comptroller": MAINNET_COMPTROLLER, "profile": "compound", "start_block": 7710671,
                 "source": "compound-finance/compound-protocol networks/mainnet.json (Comptroller); "
                           "docs.compound.finance/v2 (Networks)"}},
)
