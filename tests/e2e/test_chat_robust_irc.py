"""`deploybot run` on real IRC servers when the channel is not friendly: a taken nick, an
invite-only / keyed / banned channel, an edited command, a frozen server.

What a user notices: the bot is in its channel under `<nick>_` at once and takes its nick back
when it is free; `/ready` names a channel that keeps it out and the bot walks in as soon as it
may; an edited `!log` is not run; a SIGSTOPped server turns `/ready` to 503 within 40 s.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    InspircdAtheme,
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
