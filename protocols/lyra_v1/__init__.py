"""Lyra V1 (Avalon) option market: devnet from the real bytecode of ``@lyrafinance/protocol`` 0.1.3-alpha,
reader, option rules (min collateral, liquidation, greeks, hedging, vol spiral), executor."""

from protocols.base import Plugin
from protocols.lyra_v1.devnet import LyraDevnet
from protocols.lyra_v1.executor import LyraExecutor
from protocols.lyra_v1.reader import LyraReader
from protocols.lyra_v1.rules import LyraOptionRules

PLUGIN = Plugin(name="lyra-v1", reader=LyraReader, rules=LyraOptionRules, executor=LyraExecutor, devnet=LyraDevnet,
                devnet_order=60)
