"""The import graph and the size of modules: the architecture, checked on every run.

``realtime`` imports ``engines``, ``demos`` imports ``realtime``, never the other way round
(``rtstyle serve`` finds the Gradio app through an entry point); no module imports another
that imports it back, even lazily inside a function (the one exception: ``engines/__init__``,
the backend registry, imports a backend by name when it is built); a module over 400 lines
says at its top why it is one file.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("realtime", "engines", "demos")


def modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).glob("*.py")):
            found[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (lazy imports included)."""
    mods, edges = modules(), {}
    for name, path in mods.items():
        out = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            out |= {t for t in targets if t in mods and t != name}
        edges[name] = out
    return edges


def test_the_packages_depend_one_way():
    wrong = [(a, b) for a, targets in imports().items() for b in targets
             if (a.startswith("realtime") and b.startswith("demos"))
             or (a.startswith("engines") and not b.startswith("engines"))]
    assert wrong == []


def test_no_module_imports_one_that_imports_it_back():
    # Imports of a package root are not followed: realtime/__init__ imports none of its modules
    # (checked here), and engines/__init__ is the backend registry, which imports a backend
    # lazily by name when it is built (the backends import its helpers back, by design).
    graph = imports()
    assert graph["realtime"] == set(), graph["realtime"]
    edges = {a: {b for b in t if b not in PACKAGES} for a, t in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges[node]):
            visit(nxt)
        stack.pop()

    for m in sorted(edges):
        visit(m)
    assert cycles == []


@pytest.mark.parametrize("path", [p for p in modules().values()], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_long_module_says_why_it_is_one_file(path):
    lines = path.read_text().splitlines()
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert len(lines) <= 400 or "Why one file" in doc, f"{path.name}: {len(lines)} lines and no reason at its top"
