"""Layers point one way (DESIGN.md): read from the import statements of the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, as absolute names."""
    package = "aipc." + ".".join(path.relative_to(ROOT).parent.parts) if path.parent != ROOT else "aipc"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


def test_commands_do_not_import_the_cli_that_imports_them():
    for path in modules_under("commands"):
        assert "aipc.cli" not in imported_modules(path), path.name


def test_backends_use_only_the_ir_and_the_diagnostics():
    allowed = ("aipc.compiler.ir", "aipc.diagnostics", "aipc.codes", "aipc.backends")
    for path in modules_under("backends"):
        ours = {name for name in imported_modules(path) if name.startswith("aipc.") or name == "aipc"}
        # `from aipc.compiler import ir` names the package too; `from aipc import codes` likewise
        ours -= {"aipc", "aipc.compiler"}
        assert all(name.startswith(allowed) for name in ours), (path.name, sorted(ours))


def test_the_standard_labels_are_spelled_in_one_place():
    """app.kubernetes.io/* keys are written in compiler/ir.py only; every target
    and `aipc run` build them there (tests/backends/test_labels.py compares them)."""
    spelled = [path.relative_to(ROOT).as_posix() for folder in ("backends", "compiler", "runner", "cluster",
                                                                "commands", "viz", "lsp", "dsl")
               for path in modules_under(folder) if re.search(r"[\"']app\.kubernetes\.io/", path.read_text())]
    assert spelled == ["compiler/ir.py"]
