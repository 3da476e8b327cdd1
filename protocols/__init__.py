"""The protocol registry: every plugin installed under the entry-point group ``defi_contagion.plugins``.

Each entry point names a :class:`~protocols.base.Plugin` object (``name = "package.module:PLUGIN"``);
the built-in ones are registered in this distribution's ``pyproject.toml``, and a protocol shipped
as its own package registers itself the same way. Nothing here names a protocol.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from functools import lru_cache
from importlib.metadata import entry_points

from analyzer.errors import ContagionError
from protocols.base import Plugin

ENTRY_POINT_GROUP = "defi_contagion.plugins"

log = logging.getLogger(__name__)


def _from_entry_points() -> list[tuple[str, object]]:
    found = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((f"entry point {entry.name} ({entry.value})", entry.load()))
        except Exception as exc:  # a broken third-party plugin is named, not a traceback
            raise ContagionError(f"protocol plugin {entry.name} ({entry.value}) failed to load: {exc}") from exc
    return found


def _from_this_checkout() -> list[tuple[str, object]]:
    """The built-in plugins of a checkout whose install predates the entry points (its metadata
    lists none): every sub-package of ``protocols`` that defines ``PLUGIN``."""
    log.warning("no %s entry points installed: using the built-in protocols of this checkout "
                "(reinstall the package, e.g. `make setup`, to register them)", ENTRY_POINT_GROUP)
    found = []
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            found.append((f"protocols.{module.name}",
                          getattr(importlib.import_module(f"{__name__}.{module.name}"), "PLUGIN", None)))
    return [(where, plugin) for where, plugin in found if plugin is not None]


@lru_cache(maxsize=1)
def plugins() -> dict[str, Plugin]:
    """All plugins by name (e.g. ``"aave-v3"``), in devnet order.

    Returns
    -------
    dict[str, Plugin]
        Plugins sorted by ``(devnet_order, name)``.

    Raises
    ------
    ContagionError
        Two plugins share a name, an entry point does not load, or does not name a ``Plugin``.
    """
    found: dict[str, Plugin] = {}
    for where, plugin in _from_entry_points() or _from_this_checkout():
        if not isinstance(plugin, Plugin):
            raise ContagionError(f"protocol plugin {where} is not a protocols.base.Plugin")
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
