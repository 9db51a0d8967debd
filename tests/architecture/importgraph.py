"""The AST import graph of `bot/` and `commands/`, counting type-only imports too.

Used by the layering test and, with another layer map, to count upward arrows in an
older tree.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

# rank of each top-level unit; an import may point to the same or a lower rank only
LAYERS: dict[str, int] = {
    "bot.core": 0, "bot.config": 0, "bot.store": 0,
    "bot.chat": 1, "bot.gitlab": 1, "bot.cluster": 1, "bot.control": 1,
    "bot.delivery": 2, "bot.services": 2,
    "bot.model": 3,  # desired / applied / running / unapplied, and the planner
    "bot.deploy": 4, "bot.pipelines": 4,
    "bot.status": 5,
    "bot.monitors": 6,
    "commands": 7,
    "bot.web": 8, "bot.http": 8,  # the pages sit with the routes (http imports web)
    "bot.app": 9,
    "bot.demo": 10,
    "bot.cli": 11,
    "bot": 0,  # bot/__init__.py: the version string only
}  # fmt: skip


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def graph(root: Path) -> dict[str, set[str]]:
    """module -> the project modules it imports (at any depth, TYPE_CHECKING included)."""
    files = [p for pkg in ("bot", "commands") for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(root, p): p for p in files}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        out[name] = deps
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def unit(module: str, layers: dict[str, int] = LAYERS) -> str:
    """The longest layer key that `module` belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in layers:
            return key
    raise KeyError(f"{module} is in no layer; add it to LAYERS")


def upward(
    g: dict[str, set[str]], rank: Callable[[str], int] | None = None
) -> list[tuple[str, str]]:
    """Imports that point from a lower layer to a higher one."""
    rank = rank or (lambda m: LAYERS[unit(m)])
    return sorted((a, b) for a, deps in g.items() for b in deps if rank(b) > rank(a))
