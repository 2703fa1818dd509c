"""The package's layout: the four stages import one way, and no module imports another that imports it
back, directly or through others, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "competition"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module of the package `path` imports, anywhere in the file (function-level imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("competition")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("competition"):
                continue
            for alias in node.names:     # `from . import fit`: the module `fit`, where it is one
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_path(candidate) is not None else target)
    return {m for m in found if module_path(m) is not None} - {name}


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "top"


def test_the_four_stages_are_folders():
    assert {stage(m) for m in GRAPH} == {"top", "preparing", "fitting", "grading", "hosting"}


@pytest.mark.parametrize("importer, forbidden, allowed", [
    ("fitting", "grading", {"competition.grading.metrics"}),      # fit scores out of fold with the metrics alone
    ("grading", "fitting", set()),                                 # a grader knows nothing of how a file was made
    ("hosting", "fitting", set()),                                 # serve grades uploads; it never trains
    ("preparing", "fitting", set()),
    ("preparing", "hosting", set()),
    ("grading", "hosting", set()),
])
def test_the_stages_import_one_way(importer, forbidden, allowed):
    wrong = {(m, i) for m, targets in GRAPH.items() if stage(m) == importer
             for i in targets if stage(i) == forbidden and i not in allowed}
    assert not wrong, f"{importer} imports {forbidden}: {sorted(wrong)}"


def test_no_module_imports_itself_back_through_others():
    """Tarjan's strongly connected components of the import graph: every one a single module."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_graph_sees_a_function_level_import():
    """Guards the guard: the import of `run` inside cli's `cmd_run` is an edge of the graph."""
    assert "competition.pipeline" in GRAPH["competition.cli"]
