"""The workers package imports without a cycle: every module of it imports on its own in a fresh
interpreter, and its modules import each other at the top only, in an order with no cycle (a cycle
hidden by an import inside a function would work until the day the function ran first)."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORKERS = Path(__file__).resolve().parents[1] / "workers"
MODULES = sorted(f"workers.{path.stem}" for path in WORKERS.glob("*.py") if path.stem != "__init__")


def _imported_workers_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The workers modules an import statement imports (`from workers import x` imports workers.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("workers.")]
    if node.module == "workers":
        return [f"workers.{alias.name}" for alias in node.names if f"workers.{alias.name}" in MODULES]
    return [node.module] if node.module and node.module.startswith("workers.") else []


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(workers modules imported at the top of `module`, those imported inside its functions)."""
    tree = ast.parse((WORKERS / f"{module.removeprefix('workers.')}.py").read_text())
    top: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            top.update(_imported_workers_modules(statement))
    every = {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _imported_workers_modules(node)
    }
    return top, every - top


def test_workers_modules_import_each_other_only_at_the_top() -> None:
    inside = {module: sorted(_imports(module)[1]) for module in MODULES}
    assert {module: names for module, names in inside.items() if names} == {}


def test_the_workers_modules_imports_have_no_cycle() -> None:
    graph = {module: _imports(module)[0] for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


def _import_alone(module: str) -> tuple[str, int, str]:
    run = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=WORKERS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return module, run.returncode, run.stderr[-2000:]


def test_each_workers_module_imports_alone_in_a_fresh_interpreter() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:  # a fresh interpreter each; two at a time
        failed = {module: stderr for module, code, stderr in pool.map(_import_alone, MODULES) if code != 0}
    assert failed == {}
