"""The shape of the code, held by tests: no import cycle among rolldeck's modules and
no module reading another module's private names.

import-linter holds the layers (pyproject.toml); these two rules are about single
modules, which its contracts do not express. Imports under ``TYPE_CHECKING`` and
inside functions count: a cycle hidden behind a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("console", "screens", "inventory", "themes")

# Private names of other libraries that rolldeck uses on purpose, each with its reason.
ALLOWED_FOREIGN = {
    "_exit": "os._exit: leave a forked child without running the parent's cleanup",
    "_replace": "NamedTuple._replace is public API despite the underscore",
    "_asdict": "NamedTuple._asdict is public API despite the underscore",
    "_fields": "NamedTuple._fields is public API despite the underscore",
    "_value_": "Enum member value",
    "_missing_": "Enum hook",
}
# asyncssh's logger checks the level after formatting each packet (4% of the console's
# CPU at 1,000 hosts); this one module patches that, see its docstring.
PATCHES_FOREIGN = {"console/transport/asyncssh_tuning.py"}


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(modules):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    advanced = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    modules = set()
    for package in PACKAGES:
        modules |= graph.find_descendants(package) | {package}
    cycles = _cycles(graph, modules)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _own_names(tree: ast.AST) -> set[str]:
    """Private names this module defines itself (attributes, functions, classes):
    a class reading a sibling class's private name in the same module is one owner."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def _private_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT).as_posix()
    own = _own_names(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    out.append(f"{rel}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            if name in ALLOWED_FOREIGN or name in own:
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "super"
            ):
                continue
            if rel in PATCHES_FOREIGN:
                continue
            out.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_no_module_reads_another_modules_private_names() -> None:
    reads = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            reads += _private_reads(path)
    assert not reads, "private names read from outside their owner:\n" + "\n".join(reads)
