"""The package's import graph is a DAG: no module imports, at any level, one that imports it back.

Function-level imports count too (a cycle hidden inside a function is still a cycle); imports
under ``if TYPE_CHECKING:`` do not (they never run). The package ``__init__`` loads its public
names lazily, so it has no edges of its own.
"""

from __future__ import annotations

import ast
import pathlib

import mdnkit

PACKAGE = pathlib.Path(mdnkit.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names if alias.name.startswith("mdnkit."))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module == "mdnkit":  # from mdnkit import plotting, __version__
                found.update(f"mdnkit.{alias.name}" for alias in node.names)
            elif node.module and node.module.startswith("mdnkit."):
                found.add(node.module)

    Visitor().visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"mdnkit.{path.stem}": path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {name: {dep for dep in _imports(path) if dep in modules and dep != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 20  # the scan found the package's modules
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_does_not_import_the_estimator_layer():
    """The maths and the loop know nothing of estimators, files or the command line."""
    graph = _graph()
    core = ["mdnkit.mixture", "mdnkit.distributions", "mdnkit.families", "mdnkit.student_t",
            "mdnkit.heads", "mdnkit.model", "mdnkit.training", "mdnkit.search", "mdnkit.io"]
    upper = {"mdnkit.estimator", "mdnkit.baselines", "mdnkit.selection", "mdnkit.loading", "mdnkit.cli"}

    def reach(node: str, seen: set[str]) -> set[str]:
        for dep in graph[node] - seen:
            seen.add(dep)
            reach(dep, seen)
        return seen

    for module in core:
        assert not reach(module, set()) & upper, module
