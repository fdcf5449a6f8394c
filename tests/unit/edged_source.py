"""edged's own modules as syntax trees, for the checks that read the source
(test_imports.py, test_wire_names.py): parsed and walked once, and released when the session
ends (tests/unit/conftest.py).  Freeing the nodes at once takes milliseconds; leaving them to
the interpreter's exit makes it take a second longer."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "edged"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
_NODES: dict[str, list[ast.AST]] = {}


def nodes() -> dict[str, list[ast.AST]]:
    """Module name -> every node of its syntax tree (``ast.walk`` order)."""
    if not _NODES:
        for module, path in MODULES.items():
            _NODES[module] = list(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))
    return _NODES


def release() -> None:
    _NODES.clear()
