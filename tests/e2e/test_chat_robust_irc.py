"""`deploybot run` on real IRC servers when the channel is not friendly: a taken nick, an
invite-only / keyed / banned channel, an edited command, a frozen server.

What a user notices: the bot is in its channel under `<nick>_` at once (and answers when
addressed by it) and takes its nick back when it is free; `/ready` names a channel that keeps
it out and the bot walks in as soon as it may; an edited `!log` is not run; a SIGSTOPped server
turns `/ready` to 503 within 40 s.

A server frozen while two pipeline updates and a command arrive, then thawed: the channel
never shows an older state of the pipeline after a newer one (a line the bot could not see
confirmed goes again, marked, only where the frozen server's own late answers on the dead
connection do not prove it got through, and only the newest of each pipeline); the command
is not run, and the room is told once when the bot was cut off. On InspIRCd (echo-message)
nothing repeats. The freeze lasts until the bot noticed it (2 s pings); the server is always
thawed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.irc.fence import MARKER
from bot.chat.irc.proto import Line
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

EDIT_ANSWER = "edits are not run; the original was: logged #"  # names what it did


class Started:
    """Clients and bots a test started, stopped even when it fails."""

    def __init__(self) -> None:
        self.clients: list[RawIrcClient] = []
        self.bots: list[BotProcess] = []

    async def client(self, port: int, nick: str, **kw: Any) -> RawIrcClient:
        client = RawIrcClient(port, nick, **kw)
        self.clients.append(client)
        await client.connect()
        return client

    async def bot(self, directory: Path, config: dict[str, Any], expect: int = 200) -> BotProcess:
        bot = BotProcess(directory, config)
        self.bots.append(bot)
        await bot.start(expect=expect)
        return bot


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    things = Started()
    try:
        yield things
    finally:
        for client in things.clients:
            await client.close()
        for bot in things.bots:
            await bot.stop()


def irc_config(port: int, nick: str, channel: str, **irc: Any) -> dict[str, Any]:
    return {
        "bot": {"nick": nick},
        "chat": {
            "default_room": channel,
            "irc": {"host": "127.0.0.1", "port": port, "tls": False, "channels": [channel], **irc},
        },
        "auth": {"rules": [{"who": ["irc-host:*"], "role": "deployer", "trust": "hostmask"}]},
    }


def unaddressed(text: str) -> str:
    """A channel reply without the `asker: ` the bot puts in front of it."""
    return re.sub(r"^[^\s:]+: ", "", text, count=1)


def said_by(client: RawIrcClient, nick: str, channel: str, since: int) -> list[str]:
    return [
        unaddressed(ln.param(1))
        for ln in client.lines[since:]
        if ln.command == "PRIVMSG" and ln.nick == nick and ln.param(0).lower() == channel.lower()
    ]


async def answer(client: RawIrcClient, nick: str, channel: str, pattern: str, since: int) -> Line:
    def match(ln: Line) -> bool:
        return (
            ln.command == "PRIVMSG"
            and ln.nick == nick
            and re.search(pattern, unaddressed(ln.param(1))) is not None
        )

    return await client.wait_for(match, 20, since)


async def test_nick_held_at_start_fallback_at_once_then_regained(
    ngircd: Ngircd, started: Started, tmp_path: Path
) -> None:
    nick, channel = unique("dbot"), unique("#nick")
    holder = await started.client(ngircd.port, nick)  # someone has the bot's nick already
    await holder.join(channel)
    bot = await started.bot(tmp_path / "bot", irc_config(ngircd.port, nick, channel))
    user = await started.client(ngircd.port, unique("user"))
    await user.join(channel)
    mark = len(user.lines)
    await user.privmsg(channel, "!whoami")
    await answer(user, f"{nick}_", channel, "^you are ", mark)  # in, under the fallback nick
    mark = len(user.lines)
    await user.privmsg(channel, f"{nick}_: whoami")  # what tab completion gives
    await answer(user, f"{nick}_", channel, "^you are ", mark)

    await holder.close()  # the nick is free: the bot takes it back
    await user.wait_for(lambda ln: ln.command == "NICK" and ln.param(0) == nick, 20)
    mark = len(user.lines)
    await user.privmsg(channel, "!whoami")
    await answer(user, nick, channel, "^you are ", mark)
    assert await bot.ready_status() == 200


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("+i", "invite only"), ("+k sesame", "channel key"), ("+b *!*@*", "banned")],
)
async def test_a_channel_that_keeps_the_bot_out_is_named_and_retried(
    ngircd: Ngircd, started: Started, tmp_path: Path, mode: str, reason: str
) -> None:
    nick, channel = unique("dbot"), unique("#shut")
    op = await started.client(ngircd.port, unique("op"))
    await op.join(channel)  # the first one in is the channel operator
    op.send(f"MODE {channel} {mode}")
    await op.wait_for(lambda ln: ln.command == "MODE" and ln.param(1) == mode.split()[0], 10)
    config = irc_config(ngircd.port, nick, channel, join_retry=1, join_retry_max=2)
    bot = await started.bot(tmp_path / "bot", config, expect=503)
    await bot.wait_log(rf"cannot join {re.escape(channel)}: [^;]*{reason}[^;]*; retrying in", 20)
    status, why = await bot.ready()
    assert (status, why.strip()) == (503, f"not joined: irc {channel}")
    assert await bot.metric("deploybot_chat_rooms_joined", 'adapter="irc"') == 0

    op.send(f"MODE {channel} -{mode[1:]}")  # the channel opens: the next retry gets in
    await op.wait_for(lambda ln: ln.command == "JOIN" and ln.nick == nick, 20)
    await bot.wait_ready(200, 10)
    assert await bot.metric("deploybot_chat_rooms_joined", 'adapter="irc"') == 1
    mark = len(op.lines)
    await op.privmsg(channel, "!whoami")
    await answer(op, nick, channel, "^you are irc-host:", mark)


async def test_an_edited_log_is_not_run(
    inspircd_atheme: InspircdAtheme, started: Started, tmp_path: Path
) -> None:
    port = inspircd_atheme.fast_port
    nick, channel = unique("dbot"), unique("#edit")
    bot = await started.bot(tmp_path / "bot", irc_config(port, nick, channel))
    alice = await started.client(port, unique("alice"), caps={"message-tags"})
    await alice.join(channel)
    mark = len(alice.lines)
    await alice.privmsg(channel, "!log restarted builds-api in tools")
    await answer(alice, nick, channel, "^logged #", mark)
    for text in ("!log restarted builds-api in toolsbeta", "!log in toolsbeta, really"):
        alice.send(f"@+draft/edit=msg1 PRIVMSG {channel} :{text}")  # an IRCv3 message edit
    await alice.privmsg(channel, "!whoami")  # a barrier: the answers to the edits came first
    await answer(alice, nick, channel, "^you are ", mark)
    said = said_by(alice, nick, channel, mark)
    assert len(said) == 3 and said[1].startswith(EDIT_ANSWER), said  # one answer for the edits
    assert said[1].endswith("restarted builds-api in tools")  # what the original logged
    logs = [e["message"] for e in await bot.sal_entries() if e["action"] == "log"]
    assert len(logs) == 1 and logs[0].endswith("restarted builds-api in tools")


async def test_frozen_server_turns_ready_503_and_back(
    ngircd: Ngircd, started: Started, tmp_path: Path
) -> None:
    config = irc_config(
        ngircd.port, unique("dbot"), unique("#ice"), ping_interval=2, ping_timeout=2
    )
    bot = await started.bot(tmp_path / "bot", config)
    ngircd.pause()
    try:
        await bot.wait_ready(503, 40)
        assert "irc" in (await bot.ready())[1]
    finally:
        ngircd.pause(False)
    await bot.wait_ready(200, 40)


SECRET_ENV = "DEPLOYBOT_THAW_WEBHOOK_SECRET"
SECRET = "thaw-webhook-secret"
PIPELINE = 830001
BARRIER = 830002  # a later pipeline: its line goes after anything sent again
CUT_OFF = re.compile(r"I was cut off from \d\d:\d\d to \d\d:\d\d UTC: .*send it again")


def thaw_config(port: int, nick: str, channel: str) -> dict[str, Any]:
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


def bot_lines(client: RawIrcClient, nick: str) -> list[str]:
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
    bot = BotProcess(tmp_path / "bot", thaw_config(port, nick, channel), {SECRET_ENV: SECRET})
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
    said = bot_lines(alice, nick)
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
