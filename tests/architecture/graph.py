"""The AST import graph of `bot/` and `commands/` and the layering the README's "Layout"
table states (the table is the one source: floors, units, and what each unit may import).

`python -m tests.architecture.graph` prints the floors, and the edges of each unit.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "commands")
DYNAMIC = {"import_module", "__import__"}  # importlib.import_module, __import__
_ROW = re.compile(r"^\|\s*(\d+)\s+([^|]+?)\s*\|\s*`([^`]+)`\s*\|[^|]*\|\s*([^|]+?)\s*\|\s*$")


@dataclass(frozen=True)
class Unit:
    name: str  # the README's spelling: bot/core, bot/http, commands, bot
    floor: int
    floor_name: str
    may_import: frozenset[str]

    @property
    def module(self) -> str:
        return self.name.replace("/", ".")


@dataclass(frozen=True)
class Layout:
    units: dict[str, Unit]  # module prefix -> unit

    def unit_of(self, module: str) -> Unit:
        """The unit `module` belongs to: its longest listed prefix (`bot` is only `bot`)."""
        parts = module.split(".")
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            found = self.units.get(key)
            if found is not None and (key != "bot" or module == "bot"):
                return found
        raise LookupError(f"{module} is in no row of the README's Layout table")

    def floors(self) -> dict[int, list[Unit]]:
        out: dict[int, list[Unit]] = {}
        for u in self.units.values():
            out.setdefault(u.floor, []).append(u)
        return dict(sorted(out.items()))


def read_layout(readme: str) -> Layout:
    """Parse the "### Layout" table: `| floor name | `unit` | what | may import |`."""
    section = readme.split("### Layout", 1)[1].split("\n#", 1)[0]
    rows = [m.groups() for line in section.splitlines() if (m := _ROW.match(line.strip()))]
    if not rows:
        raise ValueError("the README's Layout table has no rows")
    floor_names = {name.strip(): int(floor) for floor, name, _, _ in rows}
    by_floor: dict[int, set[str]] = {}
    for floor, _, unit, _ in rows:
        by_floor.setdefault(int(floor), set()).add(unit.strip().rstrip("/"))
    units: dict[str, Unit] = {}
    for floor, floor_name, unit, allowed in rows:
        name = unit.strip().rstrip("/")
        may: set[str] = set()
        for item in (i.strip() for i in allowed.split(",")):
            if item == "nothing":
                continue
            if item.startswith("`"):
                may.add(item.strip("`").rstrip("/"))
            elif item in floor_names:
                may |= by_floor[floor_names[item]]
            else:
                raise ValueError(f"Layout row {name}: {item!r} is neither a unit nor a floor")
        may.discard(name)
        units[name.replace("/", ".")] = Unit(name, int(floor), floor_name.strip(), frozenset(may))
    return Layout(units)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(root: Path) -> dict[str, Path]:
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    return {module_name(root, p): p for p in files}


def imports_of(name: str, path: Path, tree: ast.AST, modules: Iterable[str]) -> set[str]:
    """The project modules `tree` imports (at any depth, TYPE_CHECKING included)."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        deps.update(t for t in targets if t in known and t != name)
    return deps


def dynamic_imports(tree: ast.AST) -> list[str]:
    """`importlib.import_module(...)` / `__import__(...)` calls naming a project module, or a
    name computed at run time (which the graph could not see)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called not in DYNAMIC:
            continue
        arg = node.args[0] if node.args else None
        target = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
        if target is None or target.split(".")[0] in PACKAGES:
            found.append(f"line {node.lineno}: {called}({target or '<computed>'})")
    return found


def parsed(path: Path) -> ast.AST:
    """The file's syntax tree (parsed once per version of the file: several checks walk the
    same ~200 modules; do not change the tree)."""
    stat = path.stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2048)
def _parse(path: str, mtime_ns: int, size: int) -> ast.AST:
    return ast.parse(Path(path).read_text(), path)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (computed again when a file changed)."""
    modules = sources(root)
    stamps = tuple((name, str(p), p.stat().st_mtime_ns, p.stat().st_size)
                   for name, p in modules.items())  # fmt: skip
    return {name: set(deps) for name, deps in _graph(stamps).items()}


@functools.lru_cache(maxsize=8)
def _graph(stamps: tuple[tuple[str, str, int, int], ...]) -> dict[str, frozenset[str]]:
    modules = {name: Path(path) for name, path, _, _ in stamps}
    return {
        name: frozenset(imports_of(name, path, parsed(path), modules))
        for name, path in modules.items()
    }


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


def unit_edges(g: dict[str, set[str]], layout: Layout) -> dict[str, set[str]]:
    """unit -> the other units its modules import."""
    out: dict[str, set[str]] = {u.name: set() for u in layout.units.values()}
    for module, deps in g.items():
        a = layout.unit_of(module).name
        out[a] |= {layout.unit_of(d).name for d in deps} - {a}
    return out


def violations(g: dict[str, set[str]], layout: Layout) -> list[str]:
    """Every import its row does not allow, and every module in no row."""
    bad = []
    for module, deps in sorted(g.items()):
        try:
            unit = layout.unit_of(module)
        except LookupError as exc:
            bad.append(str(exc))
            continue
        for dep in sorted(deps):
            try:
                target = layout.unit_of(dep)
            except LookupError as exc:
                bad.append(str(exc))
                continue
            if target.name != unit.name and target.name not in unit.may_import:
                bad.append(f"{module} -> {dep}: {unit.name} may not import {target.name}")
    return bad


def main() -> None:
    layout = read_layout((ROOT / "README.md").read_text())
    g = graph()
    edges = unit_edges(g, layout)
    print(f"{len(g)} modules, {sum(len(d) for d in g.values())} imports\n")
    for floor, units in layout.floors().items():
        print(f"floor {floor} ({units[0].floor_name})")
        for u in sorted(units, key=lambda u: u.name):
            count = sum(1 for m in g if layout.unit_of(m).name == u.name)
            uses = ", ".join(sorted(edges[u.name])) or "nothing"
            print(f"  {u.name} ({count} modules) imports: {uses}")
    problems = violations(g, layout) + [" -> ".join(c) for c in cycles(g)]
    for line in problems:
        print("VIOLATION", line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
