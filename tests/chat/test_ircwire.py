"""After a reconnect (bot.chat.irc.wire): a reply goes ahead of the lines waiting to be sent
again (announcements said earlier); the next announcement goes behind them; the lines sent
again wait for the dead connection's last word."""

from __future__ import annotations

import asyncio

from bot.chat.irc.fence import MARKER
from bot.chat.irc.wire import WireSender
from bot.chat.pacing import WirePacer


def wire() -> tuple[WireSender, list[str]]:
    """A sender whose socket records the PRIVMSG lines written (fence PINGs aside)."""
    written: list[str] = []

    def write(line: str, paced: bool) -> None:
        if line.startswith("PRIVMSG"):
            written.append(line)

    sender = WireSender(
        WirePacer((100, 100.0), now=0.0),
        write,
        lambda target: True,
        lambda: 40,
    )
    return sender, written


async def test_a_reply_goes_ahead_of_the_lines_sent_again_and_an_announcement_behind() -> None:
    sender, written = wire()
    await sender.send(["PRIVMSG #ops :builds-api #7 stage 2/3"], frozenset({"pipeline:7"}))
    await sender.send(["PRIVMSG #ops :builds-api #7 success"], frozenset({"pipeline:7"}))
    sender.lost()  # neither was confirmed: only the newer state goes again
    written.clear()
    await sender.send(["PRIVMSG #ops :alice: you are irc-host:alice"], reply=True)
    assert written == ["PRIVMSG #ops :alice: you are irc-host:alice"]
    await sender.send(["PRIVMSG #ops :builds-api #8 started"], frozenset({"pipeline:8"}))
    assert written[1:] == [
        "PRIVMSG #ops :builds-api #7 success" + MARKER,
        "PRIVMSG #ops :builds-api #8 started",
    ]
    await sender.stop()


async def test_lines_sent_again_wait_for_the_dead_connections_last_word() -> None:
    sender, written = wire()
    await sender.send(["PRIVMSG #ops :deploy #3 done"], frozenset({"deploy:3"}))
    connection = sender.fence.connection
    sender.lost()
    last_word: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sender.settling = last_word
    written.clear()
    later = asyncio.create_task(sender.send(["PRIVMSG #ops :next"]))
    await sender.send(["PRIVMSG #ops :bob: a reply"], reply=True)  # not held up
    assert written == ["PRIVMSG #ops :bob: a reply"] and not later.done()
    sender.fence.confirmed_late(connection)  # the old socket: ERROR answering our QUIT
    last_word.set_result(None)
    await asyncio.wait_for(later, 5)
    assert written == ["PRIVMSG #ops :bob: a reply", "PRIVMSG #ops :next"], "nothing repeats"
    await sender.stop()
