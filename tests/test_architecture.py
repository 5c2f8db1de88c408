"""The architecture as the import graph shows it: one namespace, rooms, no circles.

Every ``import`` of a module of ours is read from the source (module level and inside functions alike:
a lazy import is still an arrow), so a circle cannot hide behind a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"removal_bench": ROOT / "bench", "removal_bench.methods": ROOT / "methods",
           "removal_bench.datasets": ROOT / "datasets"}
ROOMS = ("core", "commands", "running", "measuring", "reporting", "benchmarks")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) lands in, if any."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from package import module`` needs the module (the package's __init__ is running or has run);
            # ``from module import name`` needs the module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), as sorted lists."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_the_reader_finds_every_module_and_its_arrows():
    # the walk itself could silently find nothing: a few arrows we know exist
    assert {"removal_bench.commands.cli", "removal_bench.core.params", "removal_bench.methods.irene",
            "removal_bench.datasets.biased_mnist", "removal_bench.reporting.summaries"} <= set(MODULES)
    assert "removal_bench.core.params" in GRAPH["removal_bench.methods.irene"]
    assert "removal_bench.methods.base" in GRAPH["removal_bench.methods.irene"]
    assert "removal_bench.reporting.summaries" in GRAPH["removal_bench.reporting.standings"]


def test_the_finder_catches_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_anywhere():
    assert _cycles(GRAPH) == []


def test_no_import_circle_between_rooms():
    """Rooms import each other in one direction only (core at the bottom, commands at the top)."""
    def room(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "removal_bench"

    rooms: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    assert _cycles(rooms) == []


def test_core_methods_and_datasets_import_nothing_above_the_core():
    allowed = {"core": {"core"}, "methods": {"core", "methods"}, "datasets": {"core", "datasets"}}
    for module, targets in GRAPH.items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in allowed:
            continue
        wrong = sorted(t for t in targets if t.split(".")[1] not in allowed[parts[1]])
        assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize("folder", ["bench", "methods", "datasets", "tests"])
def test_nothing_imports_the_old_top_level_names(folder):
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] not in ("bench", "methods", "datasets"), f"{path}: import {name}"


def test_bench_holds_only_its_rooms():
    loose = sorted(p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert sorted(p.name for p in (ROOT / "bench").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(ROOMS)
