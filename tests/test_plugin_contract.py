"""The plugin contract: what the core may rely on, and nothing it guesses."""

from __future__ import annotations

import ast
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from protocols import ENTRY_POINT_GROUP, plugins
from protocols.base import (
    AbsorbingRules,
    LendingBook,
    OptionExecutor,
    OptionMarginRules,
    PartialCollateralExecutor,
    Plugin,
)
from protocols.comet.rules import CometAbsorb

ROOT = Path(__file__).resolve().parents[1]


def test_the_registry_is_the_entry_point_group():
    declared = {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared, "the installed distribution registers its built-in plugins as entry points"
    assert set(plugins()) == declared
    assert all(isinstance(p, Plugin) for p in plugins().values())


def test_every_capability_the_core_uses_is_declared_by_the_plugins_that_have_it():
    by_name = plugins()
    assert issubclass(by_name["comet"].rules, AbsorbingRules)
    assert issubclass(by_name["comet"].executor, PartialCollateralExecutor)
    assert issubclass(by_name["lyra-v1"].rules, OptionMarginRules)
    assert issubclass(by_name["lyra-v1"].executor, OptionExecutor)
    assert not issubclass(by_name["aave-v3"].rules, AbsorbingRules | OptionMarginRules)


def _core_modules():
    for path in sorted((ROOT / "analyzer").rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_the_core_imports_no_protocol_and_probes_no_plugin():
    for path, tree in _core_modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("protocols."):
                assert node.module == "protocols.base", f"{path}: imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("protocols.") or alias.name == "protocols.base", \
                        f"{path}: imports {alias.name}"
            # getattr(x, "name", default) asks an object whether it has a capability
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr") \
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in {"store_front_price", "option_liquidations", "liquidate_position",
                                               "collateral_share", "per_account"}:
                pytest.fail(f"{path}:{node.lineno}: probes a plugin for {node.args[1].value}")


def _imported_modules(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``, relative ones resolved in ``package``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            # `from protocols import other_plugin` imports a plugin by its name
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "protocols")
    return found


def test_no_plugin_imports_another_plugin():
    """protocols.base: a protocol never imports another protocol; what two share lives in the core."""
    folders = sorted(p for p in (ROOT / "protocols").iterdir() if (p / "__init__.py").is_file())
    assert len(folders) > 5, "the built-in plugins are folders under protocols/"
    crossings = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            package = "protocols." + ".".join(path.relative_to(ROOT / "protocols").parent.parts)
            for line, module in _imported_modules(ast.parse(path.read_text(), str(path)), package):
                parts = module.split(".")
                if parts[0] == "protocols" and len(parts) > 1 and parts[1] not in ("base", folder.name):
                    crossings.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not crossings, "\n".join(crossings)


def test_the_import_check_sees_every_form_of_a_cross_plugin_import():
    code = ("from protocols.b.x import y\nimport protocols.c.z\nfrom protocols import d\nfrom ..e import f\n"
            "from protocols.base import Plugin\nfrom . import g\n")
    modules = [m for _, m in _imported_modules(ast.parse(code), "protocols.a")]
    assert modules == ["protocols.b.x", "protocols.c.z", "protocols", "protocols.d", "protocols.e",
                       "protocols.base", "protocols.a"]


def _book(n=4, m=2) -> LendingBook:
    return LendingBook("p", "m", np.array([f"a{i}" for i in range(n)], dtype=object),
                       np.array(["X", "Y"], dtype=object), np.arange(n * m, dtype=float).reshape(n, m),
                       np.zeros((n, m)), np.zeros(n, dtype=np.int64),
                       extra={"raw": np.arange(n * m).reshape(n, m), "per_asset": np.array([1.0, 2.0]),
                              "flags": np.array([True, False, True, False]), "square": np.eye(n)},
                       per_account=("raw", "flags"))


def test_a_book_selects_only_the_extras_it_declares_per_account():
    book = _book()
    sub = book.take(np.array([2, 0]))
    assert sub.accounts.tolist() == ["a2", "a0"]
    assert sub.extra["raw"].tolist() == [[4, 5], [0, 1]]
    assert sub.extra["flags"].tolist() == [True, True]
    # a per-asset array and an (n, n) table that happen to have n rows are not per account
    assert sub.extra["per_asset"] is book.extra["per_asset"]
    assert sub.extra["square"] is book.extra["square"]
    copy = book.copy()
    copy.extra["raw"][0, 0] = 99
    assert book.extra["raw"][0, 0] == 0


def test_a_liquidation_keeps_its_own_type_and_fields_through_select_and_scale():
    rows = np.array([0, 3, 5])
    step = CometAbsorb(rows=rows, repaid=np.ones((3, 2)), seized=np.full((3, 2), 2.0), fee=np.zeros((3, 2)),
                       absorbed_by_protocol=True, reserves_change_usd=-6.0, base_credit=np.array([1.0, 2.0, 3.0]),
                       base_paid_out=np.array([2.0, 2.0, 2.0]), base_price_usd=1.0)
    picked = step.select(np.array([True, False, True])).scaled(np.array([0.5, 1.0]))
    assert type(picked) is CometAbsorb
    assert picked.rows.tolist() == [0, 5]
    assert picked.base_credit.tolist() == [0.5, 3.0]
    assert picked.seized.tolist() == [[1.0, 1.0], [2.0, 2.0]]
    assert picked.reserves_change_usd == pytest.approx(-(1.0 + 2.0))
    assert picked.absorbed_by_protocol
