"""IRC manners a Sopel or Limnoria user expects, with `deploybot run` on a real ngircd:
channel replies name the asker, a private query needs no prefix, bold/colour codes are
stripped before parsing, and a packed summary line lists failures first."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    Ngircd,
    RawIrcClient,
    ngircd_fixture,
    own_source,
    unique,
)

PROJECT = "repos/cloud/toolforge/builds-api"


@pytest.fixture
async def bot_and_user(
    ngircd: Ngircd, tmp_path: Path
) -> AsyncIterator[tuple[BotProcess, RawIrcClient, str, str]]:
    nick, channel = unique("mannerbot"), unique("#manners")
    config = {
        "bot": {"nick": nick},
        "chat": {
            "default_room": channel,
            "irc": {"host": "127.0.0.1", "port": ngircd.port, "tls": False, "channels": [channel]},
        },
        "components": {"builds-api": {"project": PROJECT, "room": channel}},
        "flood": {"burst": 1, "per_second": 0.5},  # so a backlog forms and is packed
    }
    bot = BotProcess(tmp_path, config)
    user = RawIrcClient(ngircd.port, unique("alice"))
    try:
        await bot.start()
        await user.connect()
        await user.join(channel)
        yield bot, user, nick, channel
    finally:
        await user.close()
        await bot.stop()


def from_bot(nick: str, target: str) -> object:
    def check(ln: Line) -> bool:
        return ln.command == "PRIVMSG" and ln.nick == nick and ln.param(0) == target

    return check


async def answer(user: RawIrcClient, nick: str, to: str, text: str) -> str:
    mark = len(user.lines)
    await user.privmsg(to, text)
    target = user.nick if to == nick else to
    line = await user.wait_for(from_bot(nick, target), 20, mark)  # type: ignore[arg-type]
    return line.param(1)


async def test_replies_name_the_asker_private_needs_no_prefix_formatting_is_stripped(
    bot_and_user: tuple[BotProcess, RawIrcClient, str, str],
) -> None:
    bot, user, nick, channel = bot_and_user
    me = f"you are irc-host:{own_source(user)} (not logged in to a services account)"
    assert await answer(user, nick, channel, "!whoami") == f"{user.nick}: {me}; roles: anyone"
    assert await answer(user, nick, nick, "whoami") == f"{me}; roles: anyone"  # no prefix
    bold = await answer(user, nick, channel, "\x02!whoami\x02")
    assert bold == f"{user.nick}: {me}; roles: anyone"
    coloured = await answer(user, nick, channel, "\x0304,01!help\x0f \x1dsal\x1d")
    assert coloured.startswith(f"{user.nick}: !sal [component|nick] [env] [N]")
    assert bot.running


async def test_a_packed_summary_line_lists_failures_first(
    bot_and_user: tuple[BotProcess, RawIrcClient, str, str],
) -> None:
    bot, user, nick, channel = bot_and_user
    mark = len(user.lines)
    states = ["success", "success", "failed", "success", "canceled", "success", "failed"]
    for i, state in enumerate(states):
        assert await bot.post_webhook(pipeline_hook(8800 + i, state, 3)) == 200
    seen: list[str] = []

    def all_finals(ln: Line) -> bool:
        if ln.command == "PRIVMSG" and ln.nick == nick and ln.param(0) == channel:
            seen.append(ln.param(1))
        return len({m for text in seen for m in re.findall(r"\b88\d\d\b", text)}) >= len(states)

    try:
        await user.wait_for(all_finals, 40, mark)
    except TimeoutError:
        raise AssertionError(seen) from None
    packed = [text for text in seen if " | " in text]
    assert packed, seen
    for text in packed:
        items = text.split(" | ")
        failing = [re.search(r" (failed|canceled) ", item) is not None for item in items]
        assert failing == sorted(failing, reverse=True), text  # no failure after a success
    assert any(text.startswith("builds-api #") and " failed" in text.split(" | ")[0]
               for text in packed)  # fmt: skip
