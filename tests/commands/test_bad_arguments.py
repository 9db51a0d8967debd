"""Every bad argument gets one line with the usage or a did-you-mean, never an empty result
that looks like an answer (console sessions over the demo's repos)."""

from __future__ import annotations

from bot.config.model import Config
from tests.support.session import console_session
from tests.support.shown import replies


async def test_sal_reads_component_env_and_count_or_says_what_is_wrong(
    demo_config: Config,
) -> None:
    lines = replies(
        await console_session(
            demo_config,
            [
                "!lock builds-api tools cluster upgrade",
                "!lock jobs-api toolsbeta disk full",
                "!sal builds-api tools",
                "!sal builds-api -1",
                "!sal builds-api 0",
                "!sal tolls",
            ],
        )
    )
    assert lines[2].startswith("#1 ") and "[lock builds-api tools]" in lines[2]
    assert len(lines) == 6, lines  # one entry for builds-api in tools, nothing else
    assert lines[3] == (
        "sal: N must be a whole number from 1 to 20, not '-1'; "
        "usage: !sal [component|nick] [env] [N]"
    )
    assert lines[4].startswith("sal: N must be a whole number from 1 to 20, not '0'")
    assert lines[5] == "no SAL entries by tolls; did you mean tools?"


async def test_where_an_unknown_commit_says_so(demo_config: Config) -> None:
    lines = replies(await console_session(demo_config, ["!where builds-api deadbeef"]))
    assert lines == [
        "builds-api deadbeef: no such commit or build in its repository; check the sha, "
        "or try !where builds-api latest"
    ]


async def test_unlock_without_env_names_the_locks_there_are(demo_config: Config) -> None:
    lines = replies(
        await console_session(
            demo_config,
            ["!lock builds-api tools cluster upgrade", "!unlock builds-api", "!unlock jobs-api"],
        )
    )
    assert lines[1].startswith("builds-api is not locked in all environments; builds-api locked")
    assert "builds-api locked in tools by console:tester" in lines[1]
    assert lines[1].endswith("cluster upgrade (!unlock builds-api tools)")
    assert lines[2] == "jobs-api is not locked anywhere"


async def test_misspelt_option_and_help_topic_get_a_suggestion(demo_config: Config) -> None:
    lines = replies(
        await console_session(
            demo_config,
            [
                "!apply builds-api tools --frce",
                "!apply builds-api tools --nosuch",
                "!help nosuch",
                "!help statu",
            ],
        )  # fmt: skip
    )
    assert lines[0] == "apply: unknown option --frce; did you mean --force?"
    assert lines[1] == (
        "apply: unknown option --nosuch; usage: !apply <component> <env> [confirm] [--queue]"
        ' [--emergency] [--force ["reason"]] [T123]'
    )
    assert lines[2].startswith("no command 'nosuch'; commands: ack apply ")
    assert lines[3] == "no command 'statu'; did you mean !help status?"
