"""The parts of medtransfer and the direction of their dependencies (docs/architecture.md), read from the
source's imports: every part imports only its own layer and the layers below, no modules import each other
in a cycle, the data side knows no model, and the package's root and command stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medtransfer"

# lowest first; a part may import its own layer and those below it (docs/architecture.md, "The parts")
LAYERS = [
    {"errors"},
    {"task", "views", "utils", "stats"},
    {"runtime"},
    {"backbones", "outputs"},
    {"datamodules"},
    {"features"},
    {"lightning_modules"},
    {"callbacks", "export"},
    {"explain"},
    {"run"},
    {"grid"},
    {"verbs", "cli"},
]
LAYER_OF = {part: index for index, layer in enumerate(LAYERS) for part in layer}


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


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def test_the_import_reader_resolves_relative_imports():
    modules_read = imported_modules(PACKAGE / "lightning_modules" / "frozen.py")
    assert "medtransfer.features" in modules_read and "medtransfer.task" in modules_read


def test_every_part_has_a_layer():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert parts <= set(LAYER_OF), sorted(parts - set(LAYER_OF))


def test_no_part_imports_a_layer_above_its_own():
    upward = {}
    for path in PACKAGE.rglob("*.py"):
        part = part_of(path)
        if part == "__init__":
            continue
        above = sorted({m.split(".")[1] for m in imported_modules(path) if m.startswith("medtransfer.")
                        and LAYER_OF.get(m.split(".")[1], -1) > LAYER_OF[part]})
        if above:
            upward[str(path.relative_to(PACKAGE.parent))] = above
    assert upward == {}


def test_no_modules_import_each_other_in_a_cycle():
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_modules(path):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported not in ("", name, "medtransfer"):
                targets.add(imported)
        graph[name] = targets
    assert find_cycle(graph) is None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (a list of nodes), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(("part", "forbidden"), [
    ("datamodules", "medtransfer.lightning_modules"),
    ("datamodules", "medtransfer.features"),
    ("features", "medtransfer.lightning_modules"),
    ("lightning_modules", "medtransfer.datamodules"),
])
def test_the_data_side_and_the_models_meet_only_through_the_contracts(part, forbidden):
    offending = {str(p): sorted(m for m in imported_modules(p)
                                if m == forbidden or m.startswith(f"{forbidden}."))
                 for p in (PACKAGE / part).rglob("*.py")}
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_data_side_never_reaches_for_the_model():
    """No datamodule asks the trainer for its model (what it must serve is told to it, e.g.
    ``serve_views``)."""
    reaching = [str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "datamodules").rglob("*.py")
                if "lightning_module" in p.read_text()]
    assert reaching == []


def test_heads_are_handed_their_data_never_reach_through_the_trainer():
    reaching = [str(p.relative_to(PACKAGE.parent)) for p in (PACKAGE / "lightning_modules").rglob("*.py")
                if "trainer.datamodule" in p.read_text() or '"datamodule"' in p.read_text()]
    assert reaching == []


def test_the_root_holds_few_modules_and_the_command_is_short():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 6, root
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 150
