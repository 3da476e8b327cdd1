"""The protocol registry: every folder under ``protocols/`` whose ``__init__`` defines ``PLUGIN``.

Adding a protocol means adding a folder; nothing here names one.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from analyzer.errors import ContagionError
from protocols.base import Plugin


@lru_cache(maxsize=1)
def plugins() -> dict[str, Plugin]:
    """All plugins by name (e.g. ``"aave-v3"``), in devnet order."""
    found: dict[str, Plugin] = {}
    for module in pkgutil.iter_modules(__path__):
        if not module.ispkg:
            continue
        plugin = getattr(importlib.import_module(f"{__name__}.{module.name}"), "PLUGIN", None)
        if isinstance(plugin, Plugin):
            if plugin.name in found:
                raise ContagionError(f"two protocol plugins are named {plugin.name}")
            found[plugin.name] = plugin
    return dict(sorted(found.items(), key=lambda item: (item[1].devnet_order, item[0])))


def get(name: str) -> Plugin:
    """The plugin called ``name``, or a clear error naming the known ones."""
    known = plugins()
    if name not in known:
        raise ContagionError(f'unknown protocol "{name}" (known: {", ".join(known) or "none"})')
    return known[name]


def parse_protocols(text: str | None) -> list[Plugin]:
    """``"aave-v3,uniswap-v3"`` -> those plugins; None or empty -> all of them."""
    if not text:
        return list(plugins().values())
    return [get(name.strip()) for name in text.split(",") if name.strip()]


def venue_plugins() -> list[Plugin]:
    """The plugins that read and trade venues (they declare a venue executor), in devnet order."""
    return [plugin for plugin in plugins().values() if plugin.venue_executor is not None]


def with_venues(chosen: list[Plugin]) -> list[Plugin]:
    """``chosen`` plus every venue plugin not already in it: a scan reads the pools of the assets it
    finds whatever protocols it was asked for, so that a cascade has its market."""
    names = {plugin.name for plugin in chosen}
    return chosen + [plugin for plugin in venue_plugins() if plugin.name not in names]
