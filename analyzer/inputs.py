"""Reading the files a user gives: one clear error that names the file, whatever is wrong with it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from analyzer.errors import ContagionError


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path`` (a ``what``: "scenario file", "sweep spec", ...)."""
    path = Path(path)
    if not path.is_file():
        raise ContagionError(f"{path}: {what} not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ContagionError(f"{path}: not valid TOML ({exc})") from None
