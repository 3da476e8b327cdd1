"""ToyLending: a protocol plugin that lives in its own package (a test fixture of defi-contagion).

It uses only the core's plugin contract (``protocols.base``) and primitives (``analyzer.*``); the
core finds it through the ``defi_contagion.plugins`` entry point of this package's pyproject.toml.
"""

from protocols.base import Plugin
from toy_lending.parts import ToyDevnet, ToyReader, ToyRules

PLUGIN = Plugin(name="toy-lending", reader=ToyReader, rules=ToyRules, devnet=ToyDevnet, devnet_order=40)
