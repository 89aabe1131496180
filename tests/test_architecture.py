"""The direction of dependencies between the parts (docs/architecture.md), read from the source's imports.

The data side knows no model, the feature stores sit below the heads that read them, and the heads take
only the public task/batch contract (``medtransfer.task``, ``medtransfer.views``) from the data side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medtransfer"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, top level or inside functions, relative imports made absolute."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def imports_of(part: str) -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE.parent)): imported_modules(p) for p in (PACKAGE / part).rglob("*.py")}


def offending(part: str, forbidden: str) -> dict[str, list[str]]:
    return {
        file: sorted(m for m in modules if m == forbidden or m.startswith(f"{forbidden}."))
        for file, modules in imports_of(part).items()
        if any(m == forbidden or m.startswith(f"{forbidden}.") for m in modules)
    }


def test_the_import_reader_resolves_relative_imports():
    modules = imported_modules(PACKAGE / "lightning_modules" / "frozen.py")
    assert "medtransfer.features" in modules and "medtransfer.task" in modules


@pytest.mark.parametrize(("part", "forbidden"), [
    ("datamodules", "medtransfer.lightning_modules"),
    ("datamodules", "medtransfer.features"),
    ("features", "medtransfer.lightning_modules"),
    ("lightning_modules", "medtransfer.datamodules"),
])
def test_no_part_imports_against_the_direction(part, forbidden):
    assert offending(part, forbidden) == {}


def test_the_data_side_never_reaches_for_the_model():
    """No datamodule asks the trainer for its model (what it must serve is told to it, e.g.
    ``serve_views``)."""
    reaching = [str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "datamodules").rglob("*.py")
                if "lightning_module" in p.read_text()]
    assert reaching == []
