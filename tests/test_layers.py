"""No layer reaches upward: each package imports only packages below it (docs/architecture.md).

Imports under ``if TYPE_CHECKING:`` are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pagefault

ROOT = Path(pagefault.__file__).parent

# lowest first; a package may import its own rank only where ALSO_ALLOWED says so
RANKS = {
    "errors": 0, "system": 0, "_lazy": 0, "metrics": 0,
    "formats": 1,
    "manifest": 2,
    "sources": 3, "synthetic": 3,
    "pieces": 4, "tensors": 4,
    "cache": 5, "swarm": 6, "doctor": 6,
    "pipeline": 7, "compile": 7,
    "checkpoint": 8,
    "api": 9,
    "paging": 10,
    "cli": 11, "testing": 10, "integrations": 11, "__init__": 11, "__main__": 12,
}  # fmt: skip


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [(line, name) for line, name in found if name.startswith("pagefault.")]


MODULES = sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_no_layer_imports_upward(path: Path) -> None:
    relative = path.relative_to(ROOT)
    own = relative.parts[0].removesuffix(".py")
    assert own in RANKS, f"{relative}: add its package to RANKS"
    for line, module in _imports(path):
        target = _layer(module)
        assert target in RANKS, f"{relative}:{line}: {module} is in no known layer"
        assert target == own or RANKS[target] < RANKS[own], (
            f"{relative}:{line} imports {module}: {own} (rank {RANKS[own]}) may not "
            f"import {target} (rank {RANKS[target]})"
        )
