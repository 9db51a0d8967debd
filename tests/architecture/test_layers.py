"""The layering the README's "Layout" table states, checked on the AST import graph."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.architecture.importgraph import LAYERS, cycles, graph, unit, upward

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = {"bot.chat.irc.adapter", "bot.chat.xmpp", "bot.chat.console"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(graph(ROOT)) == []


def test_every_module_belongs_to_a_layer() -> None:
    for module in graph(ROOT):
        assert unit(module) in LAYERS


def test_imports_point_down_only() -> None:
    assert upward(graph(ROOT)) == []


def test_core_imports_no_other_bot_package() -> None:
    g = graph(ROOT)
    for module, deps in g.items():
        if module.startswith("bot.core"):
            assert {d for d in deps if not d.startswith("bot.core") and d != "bot"} == set(), module


def test_only_the_composition_root_knows_the_chat_adapters() -> None:
    g = graph(ROOT)
    users = {m for m, deps in g.items() if deps & ADAPTERS} - ADAPTERS
    assert users <= {"bot.app", "bot.chat.irc.adapter", "bot.demo.setup", "bot.cli"}, users
    assert not any(d.startswith("commands") for m, deps in g.items() if m in ADAPTERS for d in deps)


def test_adapters_and_edges_never_import_commands_or_capabilities() -> None:
    g = graph(ROOT)
    edges = ("bot.core", "bot.chat", "bot.gitlab", "bot.cluster", "bot.control")
    above = ("commands", "bot.deploy", "bot.status", "bot.monitors", "bot.services", "bot.app")
    for module, deps in g.items():
        if module.startswith(edges):
            assert not [d for d in deps if d.startswith(above)], module


def test_top_level_stays_small_and_modules_stay_short() -> None:
    top = sorted(p.name for p in (ROOT / "bot").glob("*.py"))
    assert len(top) <= 8, top
    for path in [*(ROOT / "bot").rglob("*.py"), *(ROOT / "commands").rglob("*.py")]:
        lines = len(path.read_text().splitlines())
        assert lines <= 600, f"{path.relative_to(ROOT)} has {lines} lines"


def test_no_test_module_imports_another_test_module() -> None:
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
                last = (node.module or "").rsplit(".", 1)[-1]
                assert not last.startswith("test_"), f"{path} imports {node.module}"
                assert last != "conftest", f"{path} imports {node.module}"
