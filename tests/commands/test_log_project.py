"""`!log [<project>] <message>` in stashbot's form: projects checked, defaults named."""

from __future__ import annotations

import pytest

from bot.config.model import Config, ConfigError, parse_config
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry, stashbot_line
from tests.support.session import console_session


def _with(config: Config, **sal: object) -> Config:
    return config.model_copy(update={"sal": config.sal.model_copy(update=sal)})


async def _entries(config: Config) -> list[SalEntry]:
    store = Store(config.bot.state_dir / "deploybot.sqlite3")
    await store.open()
    try:
        return await Sal(store, [], Redactor()).query(limit=20)
    finally:
        await store.close()


async def test_a_named_project_is_where_the_entry_lands(demo_config: Config) -> None:
    out = await console_session(demo_config, ["!log tools restarted builds-api pods T123"])
    assert out[0] == "logged #1 to tools: tester: restarted builds-api pods T123"
    [entry] = await _entries(demo_config)
    assert (entry.sal_project, entry.message, entry.tasks, entry.component) == (
        "tools", "tester: restarted builds-api pods T123", ["T123"], "builds-api",
    )  # fmt: skip


async def test_a_near_miss_is_refused_with_did_you_mean_and_logs_nothing(
    demo_config: Config,
) -> None:
    out = await console_session(demo_config, ["!log tool restarted pods", "!log toolsbeta"])
    out = [line for line in out if not line.startswith("[#")]  # announcements to other rooms
    assert out == [
        "log: unknown SAL project 'tool'; did you mean tools? (!log tools <message>);"
        " nothing logged",
        "log: nothing to log for toolsbeta: !log toolsbeta <message>",
    ]
    assert await _entries(demo_config) == []


async def test_without_a_project_the_room_default_is_used_and_named(demo_config: Config) -> None:
    config = _with(demo_config, rooms={"console": "tools"})
    out = await console_session(config, ["!log restarted the pods"])
    assert out[0].startswith("logged #1 to tools (default for console; ")
    assert (await _entries(config))[0].sal_project == "tools"


async def test_a_component_sal_project_is_the_default_when_the_message_names_it(
    demo_config: Config,
) -> None:
    comps = dict(demo_config.components)
    comps["builds-api"] = comps["builds-api"].model_copy(update={"sal_project": "tools.builds"})
    config = demo_config.model_copy(update={"components": comps})
    out = await console_session(config, ["!log restarted builds-api", "!log tools.builds x"])
    assert out[0].startswith("logged #1 to tools.builds (default for builds-api; ")
    assert out[1] == "logged #2 to tools.builds: tester: x"  # and it is a known project now


def test_the_irc_sink_line_names_the_actor_the_way_stashbot_reads_a_relay_bot() -> None:
    entry = SalEntry(
        actor="irc:taavi", action="deploy", sal_project="tools",
        message="taavi: builds-api A -> B in tools (!12, T358908)",
    )  # fmt: skip
    assert stashbot_line(entry) == "!log taavi tools builds-api A -> B in tools (!12, T358908)"
    assert stashbot_line(entry, relay=False) == (
        "!log tools taavi: builds-api A -> B in tools (!12, T358908)"
    )
    gitlab = SalEntry(actor="gitlab:some one", action="x", message="x", sal_project="tools")
    assert stashbot_line(gitlab).split()[1] == "gitlab:someone"  # one word, not a chat nick


def test_a_stashbot_sink_needs_a_sal_project() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"sal": {"sinks": [{"irc_channel": "#feed"}]}})
    assert "stashbot rejects unknown projects" in str(err.value)
    ok = parse_config({"sal": {"sinks": [{"irc_channel": "#feed"}], "projects": ["tools"]}})
    assert ok.sal_projects == ["tools"]
