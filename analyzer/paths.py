"""Where the tool finds its data and keeps its caches, in a checkout and as an installed package.

The distribution ships ``analyzer``, ``protocols``, ``abis`` and ``fixtures`` side by side (the
last two as package data), so :data:`DATA_ROOT` (the folder holding them: the checkout, or
``site-packages``) finds ABIs, compiled fixtures and scenarios in both. npm tools (anvil, solc, the
protocols' npm artifacts) live in a ``node_modules`` folder (:func:`node_modules`). Caches never go
into the install folder: they live under the user's cache directory (:func:`cache_dir`), in
folders keyed by what made them (:func:`source_digest`, the tool version).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

DATA_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds ``analyzer/``, ``protocols/``, ``abis/`` and ``fixtures/``."""

APP_NAME = "defi-contagion"


def data_path(*parts: str) -> Path:
    """A file or folder shipped with the package, e.g. ``data_path("abis", "comet", "Comet.json")``."""
    return DATA_ROOT.joinpath(*parts)


def node_modules() -> Path:
    """The npm folder: ``$DEFI_CONTAGION_NODE_MODULES``, else the checkout's ``node_modules``, else
    ``./node_modules`` (an installed package run from a project folder that has one)."""
    env = os.environ.get("DEFI_CONTAGION_NODE_MODULES")
    if env:
        return Path(env)
    beside = DATA_ROOT / "node_modules"
    return beside if beside.is_dir() else Path.cwd() / "node_modules"


def cache_dir(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/defi-contagion/<parts>`` (default ``~/.cache/defi-contagion/<parts>``).

    Not created here: a cache creates its folder when it first writes.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).joinpath(APP_NAME, *parts)


def tool_version() -> str:
    from analyzer import __version__

    return __version__


def package_modules(package: str) -> list[ModuleType]:
    """Every module of ``package`` (a dotted name), imported: the whole folder, not only what
    happens to be loaded, so a helper module (exact math, profiles, parameters) is never missed."""
    import importlib
    import pkgutil

    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=f"{package}."):
        found.append(importlib.import_module(info.name))
    return found


def source_digest(modules: Iterable[ModuleType | str], *, extra: Iterable[str] = ()) -> str:
    """SHA-256 (hex) of the tool version, ``extra`` strings and the source of every module in
    ``modules`` (module objects or dotted package names, each expanded to its whole folder)."""
    seen: dict[str, str] = {}
    for item in modules:
        for module in (package_modules(item) if isinstance(item, str) else [item]):
            try:
                seen[module.__name__] = inspect.getsource(module)
            except (OSError, TypeError):     # a namespace package or a compiled module: no source
                seen[module.__name__] = ""
    digest = hashlib.sha256(f"{APP_NAME} {tool_version()}\n".encode())
    for text in extra:
        digest.update(text.encode() + b"\0")
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return digest.hexdigest()


def plugin_packages(plugins: Iterable) -> list[str]:
    """The top package of each plugin (its whole folder), from where its parts are defined."""
    out = []
    for plugin in plugins:
        for part in (plugin.reader, plugin.rules, plugin.executor, plugin.devnet, plugin.venue_executor):
            if part is not None:
                module = sys.modules[part.__module__]
                package = module.__package__ or module.__name__
                if package not in out:
                    out.append(package)
                break
    return out
