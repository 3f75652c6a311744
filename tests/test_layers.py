"""The import graph of `agent`, `executors` and `memory`: no circles, and every package imports only what its
docstring's "May import:" line names (and names nothing it does not import), so the docstrings stay true."""

from __future__ import annotations

import importlib
import re

import grimp

PACKAGES = (
    "memory",
    "executors",
    "agent",
    "agent.llm",
    "agent.understanding",
    "agent.planning",
    "agent.reporting",
    "agent.study",
    "agent.terminal",
    "agent.tracking",
    "agent.service",
)


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("agent", "executors", "memory", cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _declared(package: str) -> set[str]:
    doc = importlib.import_module(package).__doc__ or ""
    match = re.search(r"^May import: (.+?)\.?\s*(?:\n\s*\n|\Z)", doc, re.M | re.S)  # it may wrap
    assert match, f"{package}'s docstring has no 'May import:' line"
    text = " ".join(match.group(1).split())
    return set() if text == "nothing of ours" else {name.strip() for name in text.split(",")}


def _unit(module: str, package: str) -> str | None:
    """The package of PACKAGES that `module` belongs to, as seen from `package` (None: inside `package`)."""
    if module == package or module.startswith(package + "."):
        return None
    owners = [p for p in PACKAGES if module == p or module.startswith(p + ".")]
    owner = max(owners, key=len)
    # From outside `agent`, its subpackages are all `agent`.
    return "agent" if owner.startswith("agent") and not package.startswith("agent") else owner


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = grimp.ImportGraph()
    for a, b in (("x.a", "x.b"), ("x.b", "x.c"), ("x.c", "x.a"), ("x.c", "x.d")):
        graph.add_import(importer=a, imported=b)
    assert _cycles(graph) == [["x.a", "x.b", "x.c"]]


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


def test_each_package_imports_what_its_docstring_says() -> None:
    graph = _graph()
    wrong = []
    for package in PACKAGES:
        imported: dict[str, str] = {}
        for module in graph.find_descendants(package) | {package}:
            for target in graph.find_modules_directly_imported_by(module):
                unit = _unit(target, package)
                if unit is not None:
                    imported.setdefault(unit, f"{module} -> {target}")
        declared = _declared(package)
        for unit in sorted(set(imported) - declared):
            wrong.append(f"{package} imports {unit} ({imported[unit]}) but its docstring does not say so")
        for unit in sorted(declared - set(imported)):
            wrong.append(f"{package}'s docstring names {unit}, which it does not import")
    assert wrong == []
