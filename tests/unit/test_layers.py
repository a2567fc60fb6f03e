"""The project's import graph (every import statement of a module, read with `ast`: at module level and inside
functions alike, since a function-level import only hides a cycle until the function runs; `if TYPE_CHECKING:`
blocks do not count, they never run) has no cycle, and each package imports only what DESIGN.md's map allows:
core nothing of ours, state only core, builder not scheduler/hub/proxy, proxy not hub/scheduler, scheduler
not hub. Edges that still break a rule are listed in ALLOWED, which may only shrink: a new violation fails,
and so does an entry that no longer exists (delete it)."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "state", "sandbox", "builder", "scheduler", "proxy", "zerogpu", "hub", "spacehost",
            "sdk_templates", "deploy")
NOT_OURS = (("sdk_templates", "starters"),)  # user apps shipped as data

ONLY = {"core": {"core"}, "state": {"core", "state"}}  # a package → every package it may import
NEVER = {"builder": {"scheduler", "hub", "proxy"}, "proxy": {"hub", "scheduler"}, "scheduler": {"hub"}}

# Known violations (importer → imported), to be removed as the code moves; never add to this list.
ALLOWED: set[tuple[str, str]] = set()

Graph = Mapping[str, set[str]]


def our_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every module of the project's packages."""
    found = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if any(parts[: len(skip)] == skip for skip in NOT_OURS):
                continue
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_in(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level and nested in functions, classes, `if`, `try`,
    `with`…; the body of an `if TYPE_CHECKING:` is skipped (its `else` is not)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            yield from imports_in(node.orelse)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from imports_in([child])
                elif isinstance(child, ast.ExceptHandler):
                    yield from imports_in(child.body)


def _ours(name: str, modules: Mapping[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, source: str, modules: Mapping[str, Path], is_package: bool) -> set[str]:
    """The project's modules that module `name` imports anywhere (`from p import m` names m when m is a module,
    p otherwise)."""
    found = set()
    for node in imports_in(ast.parse(source).body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        found |= {t for t in (_ours(t, modules) for t in targets) if t is not None and t != name}
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = our_modules(root)
    return {name: imports_of(name, path.read_text(), modules, path.name == "__init__.py")
            for name, path in modules.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_violations(graph: Graph) -> set[tuple[str, str]]:
    bad = set()
    for importer, imported in graph.items():
        for target in imported:
            a, b = importer.partition(".")[0], target.partition(".")[0]
            if (a in ONLY and b not in ONLY[a]) or b in NEVER.get(a, ()):
                bad.add((importer, target))
    return bad


def test_the_graph_reads_every_import_that_can_run() -> None:
    modules = our_modules()
    source = ("import core.stages\nfrom . import decide\nfrom .lane import COMPILED\nfrom proxy import pages\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hub.app import App\n"
              "else:\n    import proxy.tls\n"
              "try:\n    import state.store\nexcept ImportError:\n    import state.logs\n"
              "def late():\n    import scheduler.controller\n"
              "class C:\n    async def m(self):\n        with open('x'):\n            from zerogpu import pool\n")
    assert imports_of("proxy.x", source, modules, is_package=False) == {
        "core.stages", "proxy.decide", "proxy.lane", "proxy.pages", "proxy.tls", "state.store", "state.logs",
        "scheduler.controller", "zerogpu.pool"}
    assert "proxy.lane" in import_graph()["proxy.upstream"]


def test_cycles_and_violations_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_violations({"core.x": {"state.y"}, "state.y": {"core.x"}, "proxy.z": {"hub.w", "core.x"}}) == {
        ("core.x", "state.y"), ("proxy.z", "hub.w")}


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_packages_import_only_the_layers_below() -> None:
    found = layer_violations(import_graph())
    assert found - ALLOWED == set(), "new imports against DESIGN.md's layers"
    assert ALLOWED - found == set(), "fixed: delete these from ALLOWED"
