"""The delivery fence on a real ngircd: a PING after a burst, not after every line.

The outbox drives the adapter as in the bot. Each PING the adapter writes takes one of the
connection's lines (ngircd: 2 a second), so the fence may only ask when no line waits for the
wire: a burst of lines is followed by one PING, and its PONG confirms every line of it (no
line would be sent again after a reconnect).
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.chat.base import Message
from bot.chat.irc.adapter import IrcAdapter
from bot.chat.irc.fence import TOKEN_PREFIX
from bot.config.model import FloodConfig
from bot.delivery.outbox import Outbox
from bot.store.db import Store
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    Ngircd,
    RawIrcClient,
    ngircd_fixture,
    unique,
)


async def ignore(msg: Message) -> None:
    pass


def fence_log(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    """Fence PINGs written (what ">> PING") or PONGs received ("PONG")."""
    return [
        r.getMessage()
        for r in caplog.records
        if TOKEN_PREFIX in r.getMessage() and what in r.getMessage()
    ]


async def test_a_burst_is_followed_by_one_ping_whose_pong_confirms_it(
    ngircd: Ngircd, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="deploybot.irc")
    channel = unique("#fence")
    bot = IrcAdapter(ngircd.host, ngircd.port, unique("fence"), [channel])
    alice = RawIrcClient(ngircd.port, unique("alice"))
    outbox = Outbox(store, [bot], FloodConfig(burst=20, coalesce=0))
    runner: asyncio.Task[None] | None = None
    try:
        await bot.start(ignore)
        async with asyncio.timeout(20):
            while not (bot.connected and all(bot.room_states().values())):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polling a flag, with a deadline
        await alice.connect()
        await alice.join(channel)
        runner = asyncio.create_task(outbox.run())
        said = [f"deploy #{n}: " + "; ".join([f"{n} resources changed"] * 12) for n in range(6)]
        for text in said:  # long enough that each goes alone
            await outbox.enqueue(channel, text)

        def seen() -> list[str]:
            return [
                ln.param(1) for ln in alice.lines if ln.command == "PRIVMSG" and ln.nick == bot.nick
            ]

        await alice.wait_for(lambda _: len(seen()) == len(said), 20)
        async with asyncio.timeout(10):
            while not fence_log(caplog, "PONG"):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polling the log, with a deadline
        pings = fence_log(caplog, ">> PING")
    finally:
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await bot.stop()
        await alice.close()
    assert seen() == said
    # one after the burst; a second only if the outbox was very late for a line (a loaded
    # machine); one per line would halve the rate
    assert 1 <= len(pings) <= 2, pings
    assert bot._wire.fence.unconfirmed == 0, "the PONG confirmed every line of the burst"
