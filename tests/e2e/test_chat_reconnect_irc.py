"""`deploybot run` on a real IRC server that freezes (SIGSTOP) while two pipeline updates and a
command arrive, then thaws (SIGCONT).

What a user notices: the channel never shows an older state of the pipeline after a newer one
(the lines the bot could not see confirmed are sent again, marked, only where the frozen
server's own answers, read on the dead connection, do not prove they got through, and only
the newest of each pipeline); the command typed during the freeze is not run, and the room is
told once when the bot was cut off. On InspIRCd (echo-message) nothing repeats.
The freeze lasts only until the bot noticed it (ping settings of 2 s), and the server is
always thawed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bot.chat.irc.fence import MARKER
from bot.chat.irc.proto import Line
from tests.e2e import test_chat_robust_irc as robust
from tests.e2e.test_chat_robust_irc import Started
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    InspircdAtheme,
    IrcServer,
    Ngircd,
    RawIrcClient,
    inspircd_atheme_fixture,
    ngircd_fixture,
    unique,
)

started = robust.started  # the fixture: clients and bots stopped whatever happens
SECRET_ENV = "DEPLOYBOT_THAW_WEBHOOK_SECRET"
SECRET = "thaw-webhook-secret"
PIPELINE = 830001
BARRIER = 830002  # a later pipeline: its line goes after anything sent again
CUT_OFF = re.compile(r"I was cut off from \d\d:\d\d to \d\d:\d\d UTC: .*send it again")


def config(port: int, nick: str, channel: str) -> dict[str, Any]:
    return {
        "bot": {"nick": nick},
        "chat": {
            "default_room": channel,
            "irc": {"host": "127.0.0.1", "port": port, "tls": False, "channels": [channel],
                    "ping_interval": 2, "ping_timeout": 2},
        },  # fmt: skip
        "flood": {"coalesce": 0},  # each update is written at once, into the frozen link
        "monitors": {"enabled": False},
        "components": {"builds-api": {"project": "repos/cloud/toolforge/builds-api",
                                      "room": channel}},
        "gitlab": {"url": "http://127.0.0.1:9", "webhook_secret_env": SECRET_ENV,
                   "mr_notes": False, "announce_branches": ["wip/*"]},
        "auth": {"rules": [{"who": ["irc-host:*"], "role": "deployer", "trust": "hostmask"}]},
    }  # fmt: skip


def hook(pipeline: int, status: str, stage: int = 1) -> dict[str, Any]:
    body = pipeline_hook(pipeline, status, stage, ref="wip/thaw")
    body["object_attributes"]["sha"] = body["commit"]["id"] = f"{pipeline:040x}"
    return body


def rank(text: str) -> int:
    """How far along the pipeline a line says it is (stage k: k; finished: 9)."""
    if found := re.search(r"stage (\d)/", text):
        return int(found[1])
    return 9 if "success" in text else 0


def from_bot(client: RawIrcClient, nick: str) -> list[str]:
    """Every line the bot said (under its nick or a fallback `nick_`)."""
    return [
        ln.param(1)
        for ln in client.lines
        if ln.command == "PRIVMSG" and (ln.nick or "").rstrip("_") == nick
    ]


async def freeze_and_thaw(
    server: IrcServer, port: int, started: Started, tmp_path: Path
) -> tuple[list[str], list[str]]:
    """The bot's lines about PIPELINE, and all its lines, as a user in the channel saw them."""
    nick, channel = unique("thaw"), unique("#thaw")
    alice = await started.client(port, unique("alice"))
    await alice.join(channel)
    bot = BotProcess(tmp_path / "bot", config(port, nick, channel), {SECRET_ENV: SECRET})
    started.bots.append(bot)  # stopped whatever happens
    await bot.start()
    headers = {"X-Gitlab-Token": SECRET}

    def about(line: Line, pipeline: int, what: str) -> bool:
        return (
            line.command == "PRIVMSG"
            and f"pipeline {pipeline}" in line.param(1)
            and what in line.param(1)
        )

    assert await bot.post_webhook(hook(PIPELINE, "running", 1), headers=headers) == 200
    await alice.wait_for(lambda ln: about(ln, PIPELINE, "stage 1/3"), 20)
    sent = await bot.metric("deploybot_chat_lines_sent_total")
    server.pause()
    try:
        for step, body in enumerate((hook(PIPELINE, "running", 2), hook(PIPELINE, "success"))):
            assert await bot.post_webhook(body, headers=headers) == 200
            # written into the frozen connection (before the bot notices the freeze)
            await bot.wait_metric("deploybot_chat_lines_sent_total", "", sent + step + 1, 10)
        await alice.privmsg(channel, "!whoami")  # the server holds it, frozen
        await bot.wait_ready(503, 20)  # the bot noticed the cut
    finally:
        server.pause(False)
    await bot.wait_ready(200, 30)
    assert await bot.post_webhook(hook(BARRIER, "success"), headers=headers) == 200
    await alice.wait_for(lambda ln: about(ln, BARRIER, "success"), 30)
    said = from_bot(alice, nick)
    return [s for s in said if f"pipeline {PIPELINE}" in s], said


def assert_never_older_after_newer(states: list[str]) -> None:
    ranks = [rank(s) for s in states]
    assert ranks == sorted(ranks), states
    assert ranks[-1] == 9, states  # the final state reached the channel
    assert {1, 2} <= set(ranks), states  # every state said once at least


async def test_a_frozen_ngircd_never_shows_an_older_state_after_a_newer_one(
    ngircd: Ngircd, started: Started, tmp_path: Path
) -> None:
    states, said = await freeze_and_thaw(ngircd, ngircd.port, started, tmp_path)
    assert_never_older_after_newer(states)
    # a repeat is marked; the server offers no history, so the room is told of the cut once
    assert all(s.endswith(MARKER) for s in states if states.count(s.removesuffix(MARKER)) > 1)
    assert len([s for s in said if CUT_OFF.search(s)]) == 1, said
    assert not [s for s in said if "you are " in s], "a command sent while cut off never runs"


async def test_a_frozen_inspircd_with_echo_message_repeats_nothing(
    inspircd_atheme: InspircdAtheme, started: Started, tmp_path: Path
) -> None:
    port = inspircd_atheme.fast_port
    states, said = await freeze_and_thaw(inspircd_atheme, port, started, tmp_path)
    assert_never_older_after_newer(states)
    assert not [s for s in said if MARKER in s], said
    assert len(states) == len(set(states)) == 3, states
    assert len([s for s in said if CUT_OFF.search(s)]) == 1, said
    assert not [s for s in said if "you are " in s], "a command sent while cut off never runs"
