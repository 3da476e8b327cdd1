"""defi-contagion: on-chain DeFi contagion analysis.

The protocol-agnostic core: chain access (``chain``, ``multicall``), the snapshot model
(``model``), the devnet (``devnet``), and, as they land, scan, graph, engine, replay and report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("defi-contagion")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
