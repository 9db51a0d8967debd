"""The XMPP adapter against a real prosody on loopback, with alice as a second client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slixmpp import JID

from bot.chat.base import Message
from bot.chat.xmpp import XmppAdapter, clean_text, split_body
from tests.support.xmppserver import ProsodyServer, TestClient, wait_for

ROOM = "ops@conference.localhost"


def in_rooms(adapter: XmppAdapter) -> bool:
    """Connected and in every configured room (a session can be up with rooms still out)."""
    return adapter.connected and all(adapter.room_states().values())


class Inbox:
    """The on_message callback: records every Message the adapter hands over."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def texts(self) -> list[str]:
        return [m.text for m in self.messages]


def make_adapter(server: ProsodyServer, password: str | None = None) -> XmppAdapter:
    return XmppAdapter(
        server.jid("bot"),
        password if password is not None else server.password("bot"),
        [ROOM],
        host="127.0.0.1",
        port=server.port,
        tls=False,
        reconnect_max=1.0,
    )


@pytest.fixture
async def alice(prosody: ProsodyServer) -> AsyncIterator[TestClient]:
    client = TestClient(prosody, "alice")
    await client.connect()
    yield client
    await client.close()


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def bot(prosody: ProsodyServer, inbox: Inbox) -> AsyncIterator[XmppAdapter]:
    adapter = make_adapter(prosody)
    await adapter.start(inbox)
    await wait_for(lambda: in_rooms(adapter), what="adapter connected")
    yield adapter
    await adapter.stop()


def occupants(client: TestClient) -> list[str]:
    return list(client.xmpp.plugin["xep_0045"].get_roster(JID(ROOM)))


async def test_whoami_in_room_carries_alice_real_jid(
    bot: XmppAdapter, alice: TestClient, inbox: Inbox
) -> None:
    await alice.join(ROOM, "alice")
    await wait_for(lambda: "deploybot" in occupants(alice), what="bot in room")

    alice.say(ROOM, "!whoami")

    await wait_for(lambda: inbox.messages, what="message delivered")
    assert inbox.messages == [
        Message(
            "xmpp",
            ROOM,
            "alice",
            "!whoami",
            ("xmpp:alice@localhost",),
            private=False,
            to_nick="deploybot",
        )  # fmt: skip
    ]
    assert bot.owns(inbox.messages[0].room)


async def test_send_to_room_reaches_alice(bot: XmppAdapter, alice: TestClient) -> None:
    await alice.join(ROOM, "alice")

    await bot.send(ROOM, "deployed builds-api 1.2.3 to tools")

    await wait_for(lambda: alice.bodies("groupchat"), what="groupchat at alice")
    [got] = [r for r in alice.received if r.type == "groupchat"]
    assert (got.sender, got.body) == (f"{ROOM}/deploybot", "deployed builds-api 1.2.3 to tools")


async def test_direct_message_round_trip(bot: XmppAdapter, alice: TestClient, inbox: Inbox) -> None:
    alice.tell("bot@localhost", "!status builds-api")

    await wait_for(lambda: inbox.messages, what="direct message delivered")
    [msg] = inbox.messages
    assert msg == Message(
        "xmpp", "alice@localhost", "alice", "!status builds-api", ("xmpp:alice@localhost",), True
    )
    assert bot.owns(msg.room)

    await bot.send(msg.room, "builds-api: tools 1.2.3")

    await wait_for(lambda: alice.bodies("chat"), what="reply at alice")
    [reply] = [r for r in alice.received if r.type == "chat"]
    assert JID(reply.sender).bare == "bot@localhost"
    assert reply.body == "builds-api: tools 1.2.3"


async def test_private_message_from_room_occupant_uses_real_jid(
    bot: XmppAdapter, alice: TestClient, inbox: Inbox
) -> None:
    await alice.join(ROOM, "alice")
    await wait_for(lambda: "deploybot" in occupants(alice), what="bot in room")

    alice.tell(f"{ROOM}/deploybot", "!whoami")

    await wait_for(lambda: inbox.messages, what="MUC private message delivered")
    [msg] = inbox.messages
    assert (msg.room, msg.nick, msg.identities, msg.private) == (
        f"{ROOM}/alice",
        "alice",
        ("xmpp:alice@localhost",),
        True,
    )
    await bot.send(msg.room, "you are alice@localhost")
    await wait_for(lambda: alice.bodies("chat"), what="private reply at alice")
    assert alice.received[-1].sender == f"{ROOM}/deploybot"


async def test_own_messages_history_and_subject_are_not_delivered(
    prosody: ProsodyServer, alice: TestClient, inbox: Inbox
) -> None:
    await alice.join(ROOM, "alice")
    alice.say(ROOM, "!deploy builds-api 1.0 (said before the bot came)")
    alice.set_subject(ROOM, "deploys today")
    adapter = make_adapter(prosody)
    await adapter.start(inbox)
    try:
        await wait_for(lambda: in_rooms(adapter), what="adapter connected")
        await adapter.send(ROOM, "!status from the bot itself")
        await wait_for(lambda: alice.bodies("groupchat")[-1:] == ["!status from the bot itself"])

        alice.say(ROOM, "!sal")

        await wait_for(lambda: inbox.messages, what="alice's new line")
        assert inbox.texts() == ["!sal"]
    finally:
        await adapter.stop()


async def test_reconnects_and_rejoins_after_server_restart(
    prosody: ProsodyServer, bot: XmppAdapter
) -> None:
    await prosody.stop()
    await wait_for(lambda: not bot.connected, what="adapter noticed the outage")
    with pytest.raises(ConnectionError):
        await bot.send(ROOM, "lost")

    await prosody.start()
    await wait_for(lambda: in_rooms(bot), timeout=20, what="adapter reconnected")
    alice = TestClient(prosody, "alice")
    await alice.connect()
    try:
        await alice.join(ROOM, "alice")
        assert "deploybot" in occupants(alice)

        await bot.send(ROOM, "back after restart")

        await wait_for(lambda: "back after restart" in alice.bodies("groupchat"))
    finally:
        await alice.close()


async def test_crash_of_server_is_survived(prosody: ProsodyServer, bot: XmppAdapter) -> None:
    await prosody.restart()  # SIGKILL, then start again on the same port

    await wait_for(lambda: not bot.connected, what="adapter noticed the crash")
    await wait_for(lambda: in_rooms(bot), timeout=20, what="adapter reconnected")
    alice = TestClient(prosody, "alice")
    await alice.connect()
    try:
        await alice.join(ROOM, "alice")
        await bot.send(ROOM, "still here")
        await wait_for(lambda: "still here" in alice.bodies("groupchat"))
    finally:
        await alice.close()


async def test_silent_server_is_detected_by_ping_and_reconnected(
    prosody: ProsodyServer, inbox: Inbox
) -> None:
    adapter = XmppAdapter(
        prosody.jid("bot"),
        prosody.password("bot"),
        [ROOM],
        host="127.0.0.1",
        port=prosody.port,
        tls=False,
        reconnect_max=1.0,
        timeout=2.0,
        ping_interval=0.5,
        ping_timeout=2.0,
    )
    await adapter.start(inbox)
    try:
        await wait_for(lambda: in_rooms(adapter), what="adapter connected")
        prosody.pause()
        try:
            await wait_for(lambda: not adapter.connected, what="ping timeout noticed")
        finally:
            prosody.pause(False)
        await wait_for(lambda: in_rooms(adapter), timeout=20, what="adapter reconnected")
    finally:
        await asyncio.wait_for(adapter.stop(), timeout=5)


async def test_two_kilobyte_multiline_message_with_controls_arrives_intact(
    bot: XmppAdapter, alice: TestClient, inbox: Inbox
) -> None:
    await alice.join(ROOM, "alice")
    lines = [f"line {i}: déployé ✓ " + "x" * 40 for i in range(40)]
    text = "\r\n".join(lines) + "\x07\x1b[31m"
    assert len(text.encode()) > 2000

    await bot.send(ROOM, text)

    await wait_for(lambda: alice.bodies("groupchat"), what="long message at alice")
    assert alice.bodies("groupchat") == ["\n".join(lines) + "[31m"]
    alice.say(ROOM, "!ping")  # the stream survived the control characters
    await wait_for(lambda: inbox.texts() == ["!ping"], what="adapter still reading")


async def test_oversized_message_is_split_on_utf8_boundaries(
    bot: XmppAdapter, alice: TestClient
) -> None:
    await alice.join(ROOM, "alice")
    text = "é" * 4000  # 8000 bytes, no newline

    await bot.send(ROOM, text)

    await wait_for(lambda: "".join(alice.bodies("groupchat")) == text, what="all parts")
    assert all(len(b.encode()) <= 3000 for b in alice.bodies("groupchat"))


async def test_wrong_password_never_connects_and_is_not_logged(
    prosody: ProsodyServer, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter(prosody, password="not-the-Secret-42")
    await adapter.start(inbox)
    try:
        await wait_for(lambda: "authentication failed" in caplog.text, what="auth failure log")
        assert not adapter.connected
        with pytest.raises(ConnectionError):
            await adapter.send(ROOM, "hello")
    finally:
        await adapter.stop()
    assert "not-the-Secret-42" not in caplog.text


async def test_tls_required_refuses_a_server_without_tls(
    prosody: ProsodyServer, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = XmppAdapter(
        prosody.jid("bot"), prosody.password("bot"), [ROOM], host="127.0.0.1", port=prosody.port
    )
    await adapter.start(inbox)
    try:
        await wait_for(lambda: "server offers no TLS" in caplog.text, what="TLS refusal log")
        assert not adapter.connected
    finally:
        await adapter.stop()
    assert "Authenticated as bot@localhost" not in prosody.log_tail()


async def test_stop_while_server_is_down_returns_and_leaves_no_tasks(
    prosody: ProsodyServer, inbox: Inbox
) -> None:
    before = asyncio.all_tasks()
    adapter = make_adapter(prosody)
    await adapter.start(inbox)
    await wait_for(lambda: in_rooms(adapter), what="adapter connected")
    await prosody.stop()
    await wait_for(lambda: not adapter.connected, what="adapter noticed the outage")

    await asyncio.wait_for(adapter.stop(), timeout=5)

    try:
        await wait_for(lambda: not (asyncio.all_tasks() - before), timeout=2, what="tasks gone")
    except pytest.fail.Exception:
        left = [t.get_coro() for t in asyncio.all_tasks() - before]
        pytest.fail(f"tasks left after stop(): {left}")


def test_owns_rooms_and_jids_but_not_irc_channels() -> None:
    adapter = XmppAdapter("bot@localhost", "pw", [ROOM], tls=False)
    assert adapter.owns(ROOM)
    assert adapter.owns("alice@localhost")
    assert not adapter.owns("#toolforge-deploy")


@given(st.text(max_size=3000))
def test_split_body_keeps_every_character_within_the_byte_limit(text: str) -> None:
    cleaned = clean_text(text)
    parts = split_body(cleaned, limit=64, max_chunks=10_000)
    assert all(0 < len(p.encode()) <= 64 for p in parts)
    assert "".join("".join(parts).split()) == "".join(cleaned.split())


def test_runaway_output_is_truncated_not_flooded() -> None:
    parts = split_body("\n".join(f"deploy log line {i}" for i in range(5000)))
    assert len(parts) == 8
    assert parts[-1].endswith("… (truncated)")
    assert all(len(p.encode()) <= 3000 for p in parts)
    assert parts[0].startswith("deploy log line 0\ndeploy log line 1\n")


async def test_banned_from_the_room_is_retried_until_let_in(
    prosody: ProsodyServer, alice: TestClient, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    await alice.join(ROOM, "alice")  # the first occupant owns the room
    muc = alice.xmpp.plugin["xep_0045"]
    await muc.set_affiliation(JID(ROOM), "outcast", jid=JID(prosody.jid("bot")))
    adapter = XmppAdapter(
        prosody.jid("bot"), prosody.password("bot"), [ROOM], host="127.0.0.1",
        port=prosody.port, tls=False, join_retry=0.5, join_retry_max=1.0,
    )  # fmt: skip
    caplog.set_level(logging.WARNING, "bot.chat.xmpp")
    await adapter.start(inbox)
    try:
        await wait_for(lambda: "forbidden" in caplog.text, what="the ban logged as the reason")
        assert adapter.connected and adapter.room_states() == {ROOM: False}
        with pytest.raises(ConnectionError):
            await adapter.send(ROOM, "nobody hears this")
        retries = caplog.text.count("not in ops@conference.localhost: deploybot: forbidden")
        await wait_for(
            lambda: caplog.text.count("deploybot: forbidden") > retries, what="another try"
        )
        await muc.set_affiliation(JID(ROOM), "none", jid=JID(prosody.jid("bot")))
        await wait_for(lambda: in_rooms(adapter), what="in once the ban is lifted")
        await adapter.send(ROOM, "back in")
        await wait_for(lambda: "back in" in alice.bodies("groupchat"), what="heard in the room")
    finally:
        await adapter.stop()
