"""The picture of the code in docs/architecture.md is the code's: its diagram's arrows are
exactly the imports between src's packages, and they run one way (no cycle)."""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SRC = PROJECT_ROOT / "src"
ARCHITECTURE = PROJECT_ROOT / "docs" / "architecture.md"
ARROW = re.compile(r"^\s*(\w+)\s*-->\s*(\w+)\s*$")


def unit(path: Path) -> str:
    """A module's place in the picture: its package under src/, or its own name at the top."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> set[str]:
    """The src units a module imports, at the top or inside a function (both are dependencies)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "src":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from src import data, models
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "src" and len(parts) > 1:
                    found.add(parts[1])
    return found


def import_graph() -> set[tuple[str, str]]:
    edges = set()
    for path in SRC.rglob("*.py"):
        source = unit(path)
        if source == "__init__":
            continue
        edges |= {(source, target) for target in imported_units(path) if target != source}
    return edges


def drawn_graph() -> set[tuple[str, str]]:
    block = re.search(r"```mermaid\n(.*?)```", ARCHITECTURE.read_text(), re.S)
    assert block, "docs/architecture.md has no mermaid diagram"
    return {m.groups() for line in block.group(1).splitlines() if (m := ARROW.match(line))}


def test_the_drawn_arrows_are_the_imports():
    imports, drawn = import_graph(), drawn_graph()
    assert imports - drawn == set(), f"imports the diagram does not draw: {sorted(imports - drawn)}"
    assert drawn - imports == set(), f"arrows no import makes: {sorted(drawn - imports)}"


def test_the_packages_import_one_way():
    graph: dict[str, set[str]] = {}
    for source, target in import_graph():
        graph.setdefault(source, set()).add(target)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as cycle:
        raise AssertionError(f"an import cycle between packages: {cycle.args[1]}") from None


def test_the_graph_reader_sees_every_form_of_import(tmp_path, monkeypatch):
    package = tmp_path / "src"
    (package / "a").mkdir(parents=True)
    (package / "a" / "m.py").write_text(
        "from src.b.x import y\nimport src.c.z\nfrom src import d\n"
        "def f():\n    from src.e import g\nfrom . import h\nimport numpy\n"
    )
    monkeypatch.setattr(__import__(__name__), "SRC", package)
    assert import_graph() == {("a", "b"), ("a", "c"), ("a", "d"), ("a", "e")}
