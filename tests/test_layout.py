"""The package's shape: stages import downwards, the command line sits on top, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "audiomoment"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every audiomoment module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("audiomoment"))
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("audiomoment")):
            found.add(node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            # "from audiomoment.index import x" names the package; keep the longest module
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]
            if imported in modules and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def test_the_graph_sees_the_package() -> None:
    edges = graph()
    assert "audiomoment.method.localize" in edges
    assert "audiomoment.method.localize" in edges["audiomoment.index.search"]
    assert "audiomoment.cli.index" in edges["audiomoment.cli.app"]


def test_no_library_module_imports_the_command_line() -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith("audiomoment.cli"))
        for name, targets in graph().items()
        if not name.startswith("audiomoment.cli") and name != "audiomoment.__main__"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("stage, above", [
    ("audiomoment.method", ("audiomoment.pipelines", "audiomoment.index",
                            "audiomoment.reporting", "audiomoment.server")),
    ("audiomoment.clap", ("audiomoment.pipelines", "audiomoment.method",
                          "audiomoment.reporting", "audiomoment.index")),
    ("audiomoment.evaluation", ("audiomoment.pipelines", "audiomoment.reporting",
                                "audiomoment.index")),
    ("audiomoment.io", ("audiomoment.pipelines", "audiomoment.reporting",
                        "audiomoment.server")),
])
def test_stages_do_not_import_what_stands_on_them(stage: str, above: tuple[str, ...]) -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith(above))
        for name, targets in graph().items() if name.startswith(stage)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []
