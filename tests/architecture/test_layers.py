"""The layering the README's "Layout" table states, checked on the AST import graph: the
table is read here (floors, units, each unit's "may import"), never restated."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.architecture.graph import (
    ROOT,
    cycles,
    dynamic_imports,
    graph,
    parsed,
    read_layout,
    sources,
    violations,
)

LAYOUT = read_layout((ROOT / "README.md").read_text())
ADAPTERS = {"bot.chat.irc.adapter", "bot.chat.xmpp", "bot.chat.console"}
UNITS = {
    "bot", "bot/core", "bot/config", "bot/store", "bot/chat", "bot/gitlab", "bot/cluster",
    "bot/control", "bot/delivery", "bot/services", "bot/model", "bot/deploy", "bot/pipelines",
    "bot/status", "bot/monitors", "commands", "bot/web", "bot/http", "bot/app", "bot/demo",
    "bot/cli",
}  # fmt: skip
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 600
# functions allowed to be longer, each with why
LONG_FUNCTIONS = {
    "bot/store/migrations/versions/r0001_baseline.py:upgrade": "a migration is frozen history:"
    " the baseline schema as it shipped, table after table",
    "bot/delivery/outbox.py:drain_once": "the delivery plan of one round; being reworked"
    " (folding and pacing) on another branch, split after that lands",
    "bot/cluster/runner.py:run": "the argv runner's process lifecycle (spawn, stream, time"
    " out, kill the group, reap) reads best in one piece",
}


def test_the_table_lists_every_unit_on_at_most_seven_floors() -> None:
    assert {u.name for u in LAYOUT.units.values()} == UNITS
    core, cli = LAYOUT.units["bot.core"].floor, LAYOUT.units["bot.cli"].floor
    assert cli - core + 1 <= 7, (core, cli)
    for unit in LAYOUT.units.values():
        for allowed in unit.may_import:
            target = LAYOUT.units.get(allowed.replace("/", "."))
            assert target is not None, f"{unit.name} may import unknown {allowed}"
            assert target.floor <= unit.floor, f"{unit.name} may import {allowed}, floors above"


def test_the_graph_is_the_real_one() -> None:
    g = graph()
    assert len(g) >= 100, len(g)
    for a, b in [
        ("bot.app", "commands.dispatch"),
        ("bot.app", "bot.http"),
        ("bot.http", "bot.web.pages"),
        ("commands.dispatch", "bot.services"),
        ("bot.delivery.outbox", "bot.store.db"),
        ("bot.cli", "bot.app"),
    ]:
        assert b in g[a], f"{a} -> {b} missing: the graph lost imports"


def test_every_import_is_one_its_row_allows() -> None:
    assert violations(graph(), LAYOUT) == []


def test_the_edges_import_only_the_core_tier() -> None:
    core_tier = {u.name for u in LAYOUT.units.values() if u.floor == 0}
    for edge in ("bot.chat", "bot.gitlab", "bot.cluster", "bot.control"):
        assert LAYOUT.units[edge].may_import <= core_tier, edge


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_project_module_is_imported_by_name_at_run_time() -> None:
    for name, path in sources(ROOT).items():
        assert dynamic_imports(parsed(path)) == [], name


def test_the_checks_fail_on_a_forbidden_edge_an_unknown_package_and_importlib(
    tmp_path: Path,
) -> None:
    files = {
        "bot/__init__.py": "",
        "bot/core/__init__.py": "",
        "bot/core/zz.py": "import importlib\nimportlib.import_module('bot.deploy.deployer')\n",
        "bot/chat/__init__.py": "",
        "bot/chat/zz.py": "from bot.control.bumper import Bumper\n",
        "bot/control/__init__.py": "",
        "bot/control/bumper.py": "from bot.core import zz\n",
        "bot/zzz/__init__.py": "from bot.core import zz\n",
        "bot/deploy/__init__.py": "",
        "bot/deploy/deployer.py": "__import__(name)\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = violations(graph(tmp_path), LAYOUT)
    assert "bot.chat.zz -> bot.control.bumper: bot/chat may not import bot/control" in found
    assert "bot.zzz is in no row of the README's Layout table" in found
    dynamic = {n: dynamic_imports(parsed(p)) for n, p in sources(tmp_path).items()}
    assert dynamic["bot.core.zz"] == ["line 2: import_module(bot.deploy.deployer)"]
    assert dynamic["bot.deploy.deployer"] == ["line 1: __import__(<computed>)"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


def test_only_the_composition_root_knows_the_chat_adapters() -> None:
    g = graph()
    users = {m for m, deps in g.items() if deps & ADAPTERS} - ADAPTERS
    assert users <= {"bot.app", "bot.chat.irc.adapter", "bot.demo.setup", "bot.cli"}, users


def test_functions_and_files_stay_short() -> None:
    top = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert len(top) <= 8, top
    long = {}
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "commands").rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_FILE_LINES, f"{rel}: over {MAX_FILE_LINES} lines"
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{rel}:{node.name}"] = lines
    assert set(long) <= set(LONG_FUNCTIONS), {k: v for k, v in long.items()}
    assert set(LONG_FUNCTIONS) <= set(long), "an exception no longer needed: remove it"


def test_no_test_module_imports_another_test_module() -> None:
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
                last = (node.module or "").rsplit(".", 1)[-1]
                assert not last.startswith("test_"), f"{path} imports {node.module}"
                assert last != "conftest", f"{path} imports {node.module}"
