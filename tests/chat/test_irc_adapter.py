"""IrcAdapter against real servers: ngircd (plain RFC) and InspIRCd + Atheme (SASL, accounts).

A raw test client plays the human; the adapter runs in-process.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat.base import Message
from bot.chat.irc.adapter import WANTED_CAPS, IrcAdapter
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    InspircdAtheme,
    IrcServer,
    Ngircd,
    RawIrcClient,
    inspircd_atheme_fixture,
    ngircd_fixture,
    own_source,
    unique,
)
from tests.support.poll import until

PASSWORD = "s3cret-pw"
Things = list[IrcAdapter | RawIrcClient]


class Inbox:
    """Collects what the adapter hands to on_message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Condition()

    async def __call__(self, msg: Message) -> None:
        async with self._changed:
            self.messages.append(msg)
            self._changed.notify_all()

    async def next(self, predicate: Callable[[Message], bool], within: float = 10.0) -> Message:
        async with asyncio.timeout(within), self._changed:
            while True:
                for msg in self.messages:
                    if predicate(msg):
                        return msg
                await self._changed.wait()


def in_rooms(adapter: IrcAdapter) -> bool:
    """Connected and in every configured channel (a session can be up with channels out)."""
    return adapter.connected and all(adapter.room_states().values())


async def started(adapter: IrcAdapter, inbox: Inbox, within: float = 20.0) -> IrcAdapter:
    await adapter.start(inbox)
    await until(lambda: in_rooms(adapter), "adapter connected", within=within)
    return adapter


@pytest.fixture
async def cleanup() -> AsyncIterator[Things]:
    things: Things = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, IrcAdapter):
            await thing.stop()
        else:
            await thing.close()


async def joined_client(
    server: IrcServer, nick: str, channel: str, things: Things, **kw: Any
) -> RawIrcClient:
    client = RawIrcClient(server.port, nick, **kw)
    things.append(client)
    await client.connect()
    await client.join(channel)
    return client


@pytest.mark.parametrize("server_name", ["ngircd", "inspircd_atheme"])
async def test_channel_and_private_round_trip(
    server_name: str, request: pytest.FixtureRequest, cleanup: Things
) -> None:
    server: IrcServer = request.getfixturevalue(server_name)
    channel, inbox = unique("#rt"), Inbox()
    bot = IrcAdapter(server.host, server.port, unique("bot"), [channel], reconnect_max=2)
    cleanup.append(bot)
    await started(bot, inbox)
    user = await joined_client(server, unique("user"), channel, cleanup)

    await user.privmsg(channel, "!hello")
    msg = await inbox.next(lambda m: m.text == "!hello")
    assert (msg.adapter, msg.room, msg.nick, msg.private) == ("irc", channel, user.nick, False)
    assert msg.identities == (f"irc-host:{own_source(user)}",)
    assert bot.owns(channel)

    await bot.send(channel, "hi there")
    said = await user.wait_for(lambda ln: ln.command == "PRIVMSG" and ln.param(1) == "hi there")
    assert (said.nick, said.param(0)) == (bot.nick, channel)

    # CTCP requests and NOTICEs are neither delivered nor answered; ACTION is delivered.
    await user.privmsg(bot.nick, "\x01VERSION\x01")
    user.send(f"NOTICE {bot.nick} :!status")
    await user.privmsg(channel, "\x01ACTION waves\x01")
    await user.privmsg(bot.nick, "!whoami")
    private = await inbox.next(lambda m: m.text == "!whoami")
    assert (private.room, private.private, private.nick) == (user.nick, True, user.nick)
    assert [m.text for m in inbox.messages] == ["!hello", "waves", "!whoami"]
    assert bot.owns(user.nick) and not bot.owns("#never-seen") and not bot.owns("stranger")

    mark = len(user.lines)
    await bot.send(user.nick, "you are nobody special")
    reply = await user.wait_for(lambda ln: ln.command == "PRIVMSG", since=mark)
    assert (reply.nick, reply.param(0), reply.param(1)) == (
        bot.nick,
        user.nick,
        "you are nobody special",
    )
    assert not any(ln.nick == bot.nick and ln.command == "NOTICE" for ln in user.lines)


async def test_sasl_account_is_the_identity_never_the_nick(
    inspircd_atheme: InspircdAtheme, cleanup: Things
) -> None:
    server = inspircd_atheme
    bot_account, op_account = unique("botacct"), unique("op")
    await server.register_account(bot_account, PASSWORD)
    await server.register_account(op_account, PASSWORD)
    channel, inbox = unique("#sasl"), Inbox()
    watcher = await joined_client(server, unique("watch"), channel, cleanup, caps={"extended-join"})
    bot = IrcAdapter(
        server.host, server.port, unique("bot"), [channel],
        sasl_username=bot_account, sasl_password=PASSWORD,
    )  # fmt: skip
    cleanup.append(bot)
    await started(bot, inbox)
    # the bot logged in: extended-join shows its account to others
    bot_join = await watcher.wait_for(lambda ln: ln.command == "JOIN" and ln.nick == bot.nick)
    assert bot_join.param(1) == bot_account

    someone = await joined_client(
        server, unique("someone"), channel, cleanup, sasl=(op_account, PASSWORD)
    )
    await someone.privmsg(channel, "!deploy x")
    msg = await inbox.next(lambda m: m.nick == someone.nick)
    assert msg.identities == (f"irc:{op_account}", f"irc-host:{own_source(someone)}")

    # somebody using the account's name as nick, without logging in, gets no account identity
    impostor = await joined_client(server, op_account, channel, cleanup)
    await impostor.privmsg(channel, "!deploy y")
    fake = await inbox.next(lambda m: m.text == "!deploy y")
    assert fake.nick == op_account
    assert fake.identities == (f"irc-host:{own_source(impostor)}",)


async def test_account_tracked_without_account_tag(
    inspircd_atheme: InspircdAtheme, cleanup: Things
) -> None:
    """With account-tag off, accounts come from WHOX (earlier joiners), extended-join, ACCOUNT."""
    server = inspircd_atheme
    early_acct, late_acct = unique("early"), unique("late")
    await server.register_account(early_acct, PASSWORD)
    await server.register_account(late_acct, PASSWORD)
    channel, inbox = unique("#track"), Inbox()
    early = await joined_client(server, unique("e"), channel, cleanup, sasl=(early_acct, PASSWORD))
    bot = IrcAdapter(
        server.host, server.port, unique("bot"), [channel], caps=WANTED_CAPS - {"account-tag"}
    )
    cleanup.append(bot)
    await started(bot, inbox)
    late = await joined_client(server, unique("l"), channel, cleanup, sasl=(late_acct, PASSWORD))

    async def identities_of(client: RawIrcClient, text: str) -> tuple[str, ...]:
        await client.privmsg(channel, text)
        msg = await inbox.next(lambda m: m.text == text)
        assert "account" not in msg.tags  # proves the account did not come from account-tag
        return msg.identities

    assert (await identities_of(early, "!a1"))[0] == f"irc:{early_acct}"  # via WHOX
    assert (await identities_of(late, "!a2"))[0] == f"irc:{late_acct}"  # via extended-join

    late.send(f"NICK {unique('renamed')}")
    await late.wait_for(lambda ln: ln.command == "NICK")
    assert (await identities_of(late, "!a3"))[0] == f"irc:{late_acct}"  # survives NICK

    late.send("PRIVMSG NickServ :LOGOUT")  # account-notify: ACCOUNT *
    await late.wait_for(lambda ln: ln.command == "NOTICE" and ln.nick == "NickServ")
    assert len(await identities_of(late, "!a4")) == 1

    early.send(f"PART {channel}")  # no longer shares a channel: forgotten, even if it comes back
    await early.wait_for(lambda ln: ln.command == "PART")
    await early.privmsg(bot.nick, "!a5")
    assert len((await inbox.next(lambda m: m.text == "!a5")).identities) == 1


@pytest.mark.parametrize("kind", [Ngircd, InspircdAtheme])
async def test_reconnects_after_server_is_killed(
    kind: type[IrcServer], tmp_path: Path, cleanup: Things
) -> None:
    server = kind(tmp_path)
    try:
        server.start()
        channel, inbox = unique("#rc"), Inbox()
        bot = IrcAdapter(server.host, server.port, unique("bot"), [channel], reconnect_max=2)
        cleanup.append(bot)
        await started(bot, inbox)

        await asyncio.to_thread(server.kill)
        await until(lambda: not bot.connected, "adapter noticing the dead server", within=10)
        with pytest.raises(ConnectionError):
            await bot.send(channel, "lost")

        await asyncio.to_thread(server.start)
        await until(lambda: in_rooms(bot), "adapter reconnected and rejoined", within=15)
        user = await joined_client(server, unique("user"), channel, cleanup)
        names = await user.wait_for(lambda ln: ln.command == "353")
        assert bot.nick in [n.lstrip("@+") for n in names.params[-1].split()]
        await bot.send(channel, "back again")
        await user.wait_for(lambda ln: ln.command == "PRIVMSG" and ln.param(1) == "back again")
    finally:
        for thing in cleanup:
            if isinstance(thing, IrcAdapter):
                await thing.stop()
        server.kill()


async def test_injected_line_breaks_stay_text(
    inspircd_atheme: InspircdAtheme, cleanup: Things
) -> None:
    server = inspircd_atheme
    channel, inbox = unique("#inj"), Inbox()
    bot = IrcAdapter(server.host, server.fast_port, unique("bot"), [channel])
    cleanup.append(bot)
    await started(bot, inbox)
    user = await joined_client(server, unique("user"), channel, cleanup)

    text = "é" * 300 + " payload\r\nQUIT :x\r\nPRIVMSG #other :owned\x00 " + "word " * 300 + "END"
    await bot.send(channel, text)
    await user.wait_for(lambda ln: ln.command == "PRIVMSG" and ln.param(1).endswith("END"))
    from_bot = [
        (ln, size) for ln, size in zip(user.lines, user.sizes, strict=True) if ln.nick == bot.nick
    ]
    assert len(from_bot) >= 4
    assert all(ln.command == "PRIVMSG" and ln.param(0) == channel for ln, _ in from_bot)
    assert all(size <= 512 for _, size in from_bot)
    joined_text = "".join(ln.param(1) for ln, _ in from_bot)
    assert "QUIT :x" in joined_text and "PRIVMSG #other :owned" in joined_text
    assert bot.connected


async def test_burst_on_default_class_is_paced_not_killed(
    inspircd_atheme: InspircdAtheme, cleanup: Things
) -> None:
    """40 long lines (~17 KB, twice InspIRCd's 8 KB RecvQ) sent at once via send()."""
    server = inspircd_atheme
    channel, inbox = unique("#flood"), Inbox()
    bot = IrcAdapter(server.host, server.port, unique("bot"), [channel])
    cleanup.append(bot)
    await started(bot, inbox)
    user = await joined_client(server, unique("user"), channel, cleanup)

    count = 40
    lines = [f"{i:03d} " + "x" * 420 for i in range(count)]
    await asyncio.gather(*(bot.send(channel, line) for line in lines))
    await user.wait_for(lambda ln: ln.param(1).startswith(f"{count - 1:03d} "), within=90)
    got = [ln.param(1) for ln in user.lines if ln.command == "PRIVMSG" and ln.nick == bot.nick]
    assert sorted(got) == lines
    assert bot.connected
    assert not any(ln.command == "QUIT" and ln.nick == bot.nick for ln in user.lines)


async def test_unpaced_burst_is_killed_on_default_class(
    inspircd_atheme: InspircdAtheme, cleanup: Things
) -> None:
    """Control for the test above: the same burst without pacing gets a client killed."""
    server = inspircd_atheme
    channel = unique("#flood")
    flooder = await joined_client(server, unique("flood"), channel, cleanup)
    for i in range(40):
        flooder.send(f"PRIVMSG {channel} :{i:03d} " + "x" * 420)
    error = await flooder.wait_for(lambda ln: ln.command in ("ERROR", "EOF"), within=30)
    if error.command == "ERROR":
        assert "RecvQ" in error.param(0)
    else:
        # the server closed the socket with our burst unread, so the reset can swallow its
        # ERROR line; the services it links to still record why the client was removed
        services_log = server.dir / "atheme.log"
        killed = f"removing user: {flooder.nick} -> irc.test.local (RecvQ exceeded)"
        await until(
            lambda: services_log.exists() and killed in services_log.read_text(errors="replace"),
            "the services log recording the RecvQ kill",
            within=10,
        )


async def test_nick_in_use_then_regained(ngircd: Ngircd, cleanup: Things) -> None:
    wanted, channel = unique("bot"), unique("#nick")
    holder = await joined_client(ngircd, wanted, channel, cleanup)
    bot = IrcAdapter(ngircd.host, ngircd.port, wanted, [channel])
    cleanup.append(bot)
    await started(bot, Inbox())
    assert bot.nick != wanted and bot.nick.startswith(wanted)

    await holder.close()
    await until(lambda: bot.nick == wanted, "adapter regaining its nick", within=10)
    assert bot.connected


async def test_wrong_sasl_password_connects_without_account_and_never_logs_it(
    inspircd_atheme: InspircdAtheme, cleanup: Things, caplog: pytest.LogCaptureFixture
) -> None:
    server = inspircd_atheme
    account, wrong = unique("acct"), "Wrong-Pass-123"
    await server.register_account(account, PASSWORD)
    channel = unique("#bad")
    watcher = await joined_client(server, unique("watch"), channel, cleanup, caps={"extended-join"})
    caplog.set_level("DEBUG", logger="deploybot.irc")
    bot = IrcAdapter(
        server.host,
        server.port,
        unique("bot"),
        [channel],
        sasl_username=account,
        sasl_password=wrong,
    )
    cleanup.append(bot)
    await started(bot, Inbox())
    bot_join = await watcher.wait_for(lambda ln: ln.command == "JOIN" and ln.nick == bot.nick)
    assert bot_join.param(1) == "*"  # joined, not logged in
    assert any("SASL login as" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert not any(wrong in r.getMessage() for r in caplog.records)
    payload = base64.b64encode(f"{account}\0{account}\0{wrong}".encode()).decode()
    assert not any(payload[:12] in r.getMessage() for r in caplog.records)


async def test_dead_link_is_detected_by_ping_timeout() -> None:
    """A server that accepts and then says nothing (e.g. a blackholed route) is abandoned."""
    connections: list[asyncio.StreamReader] = []
    pongs: list[bytes] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(reader)
        writer.write(b"PING :are-you-there\r\n")
        while line := await reader.readline():
            if line.startswith(b"PONG"):
                pongs.append(line)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bot = IrcAdapter(
        "127.0.0.1", port, "bot", ["#ops"], ping_interval=0.3, ping_timeout=1.0, reconnect_max=0.5
    )
    try:
        await bot.start(Inbox())
        await until(lambda: len(connections) >= 2, "a second connection attempt", within=10)
        assert pongs[0].strip() == b"PONG are-you-there"
        assert not bot.connected
    finally:
        await bot.stop()
        server.close()
        await server.wait_closed()
