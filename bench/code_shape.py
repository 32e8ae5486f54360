"""Shape of the package: its largest class and function (in lines) and its import cycles.

Cycles are strongly connected components of the graph "module A imports module B" over
`src/ocrtrain`, counting every import (module level, TYPE_CHECKING and function local), so a
cycle hidden behind a lazy import still counts.

Usage: .venv/bin/python bench/code_shape.py [--src src/ocrtrain] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path, src: Path) -> str:
    rel = path.relative_to(src.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, modules: set[str]) -> set[str]:
    """The package's modules that a module imports (`from pkg import mod` counts as mod)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pkg import mod` depends on mod only (pkg is imported first either way)
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if n in modules] or [node.module]
        else:
            continue
        out.update(n for n in names if n in modules)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def largest(trees: dict[str, ast.AST], kind: type | tuple[type, ...]) -> tuple[int, str]:
    best = (0, "")
    for mod, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, kind):
                size = (node.end_lineno or node.lineno) - node.lineno + 1  # type: ignore[attr-defined]
                best = max(best, (size, f"{mod}.{node.name}"))  # type: ignore[attr-defined]
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=REPO / "src" / "ocrtrain")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    src: Path = args.src.resolve()
    paths = sorted(src.rglob("*.py"))
    names = {module_name(p, src): p for p in paths}
    trees = {m: ast.parse(p.read_text(), str(p)) for m, p in names.items()}
    graph = {m: imports_of(t, set(names)) - {m} for m, t in trees.items()}
    found = cycles(graph)
    cls = largest(trees, ast.ClassDef)
    fn = largest(trees, (ast.FunctionDef, ast.AsyncFunctionDef))
    if args.json:
        doc = {"largest_class": cls, "largest_function": fn, "cycles": found}
        print(json.dumps(doc))
        return 0
    print(f"largest class     {cls[0]:5d} lines  {cls[1]}")
    print(f"largest function  {fn[0]:5d} lines  {fn[1]}")
    print(f"import cycles     {len(found):5d}")
    for comp in found:
        print("  " + " <-> ".join(comp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
