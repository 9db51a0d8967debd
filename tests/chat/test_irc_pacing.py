"""One line budget per IRC connection, fitted to the real server it registered with.

The adapter (and the outbox in front of it) against real ngircd and InspIRCd on loopback: the
budget each server gets is logged once for the operator, an explicit `chat.irc.flood` wins,
and a reply queued while announcements wait for the wire goes out before them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from bot.chat.base import Message
from bot.chat.irc.adapter import IrcAdapter
from bot.config.model import FloodConfig
from bot.delivery.outbox import Outbox
from bot.store.db import Store
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    IrcServer,
    Ngircd,
    RawIrcClient,
    inspircd_atheme_fixture,
    ngircd_fixture,
    unique,
)

BUDGET_LOG = "IRC line budget: "
Things = list[IrcAdapter | RawIrcClient]


@pytest.fixture
async def cleanup() -> AsyncIterator[Things]:
    things: Things = []
    yield things
    for thing in reversed(things):
        await (thing.stop() if isinstance(thing, IrcAdapter) else thing.close())


async def ignore(msg: Message) -> None:
    pass


async def started(bot: IrcAdapter) -> None:
    """Start the adapter and wait (with a deadline) until it is in its channels."""
    await bot.start(ignore)
    async with asyncio.timeout(20):
        while not (bot.connected and all(bot.room_states().values())):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling a flag, with a deadline


def budget_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage().removeprefix(BUDGET_LOG)
        for r in caplog.records
        if r.getMessage().startswith(BUDGET_LOG) and r.levelno == logging.INFO
    ]


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("ngircd", "burst 1, then 2 lines/s (ngircd-26"),
        ("inspircd_atheme", "burst 8, then 1 line/s (InspIRCd-3"),
    ],
)
async def test_the_budget_fits_the_server_and_is_logged_once(
    server_name: str,
    expected: str,
    request: pytest.FixtureRequest,
    cleanup: Things,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="deploybot.irc")
    server: IrcServer = request.getfixturevalue(server_name)
    bot = IrcAdapter(server.host, server.port, unique("pace"), [unique("#pace")])
    cleanup.append(bot)
    await started(bot)
    told = budget_lines(caplog)
    assert len(told) == 1 and told[0].startswith(expected), told


async def test_an_explicit_budget_wins_over_the_servers(
    ngircd: Ngircd,
    cleanup: Things,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="deploybot.irc")
    bot = IrcAdapter(ngircd.host, ngircd.port, unique("pace"), [unique("#pace")], flood=(3, 1.5))
    cleanup.append(bot)
    await started(bot)
    assert budget_lines(caplog) == ["burst 3, then 1.5 lines/s (chat.irc.flood)"]


async def test_a_reply_goes_out_before_announcements_queued_earlier(
    ngircd: Ngircd,
    store: Store,
    cleanup: Things,
) -> None:
    """A deploy's announcements in the channel wait for the wire (ngircd: 2 lines/s, the room's
    own budget is large here); bob's private reply, queued after them, overtakes them."""
    channel = unique("#deploys")
    bot = IrcAdapter(ngircd.host, ngircd.port, unique("pace"), [channel])
    cleanup.append(bot)
    await started(bot)
    bob = RawIrcClient(ngircd.port, unique("bob"))
    cleanup.append(bob)
    await bob.connect()
    await bob.join(channel)
    outbox = Outbox(store, [bot], FloodConfig(burst=20, coalesce=0))
    runner = asyncio.create_task(outbox.run())
    try:
        # long enough that each goes alone, not packed with the next
        announcements = [
            f"deploy #{n} diff: " + "; ".join([f"{n} resources changed"] * 12) for n in range(1, 9)
        ]
        for text in announcements:
            await outbox.enqueue(channel, text)
        await bob.wait_for(lambda ln: ln.nick == bot.nick and ln.param(1) == announcements[0], 20)
        await outbox.enqueue(bob.nick, f"you are irc-host:{bob.nick}", adapter="irc", priority=1)

        def from_bot() -> list[str]:
            return [
                ln.param(1) for ln in bob.lines if ln.command == "PRIVMSG" and ln.nick == bot.nick
            ]

        await bob.wait_for(lambda _: len(from_bot()) == len(announcements) + 1, 60)
        seen = from_bot()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert sorted(seen) == sorted([*announcements, f"you are irc-host:{bob.nick}"])
    reply_at = seen.index(f"you are irc-host:{bob.nick}")
    # the wire (one line per 0.5 s) holds the announcements back for seconds: at least half
    # of those queued before the reply come after it (in queue order, none would)
    assert len(seen) - 1 - reply_at >= len(announcements) // 2, seen
