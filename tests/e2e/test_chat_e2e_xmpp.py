"""`deploybot run` as a subprocess on a real prosody: commands in a MUC room and by direct message.

The identity a user gets is the bare real JID (`xmpp:alice@localhost`), and roles follow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.botproc import BotProcess
from tests.support.xmppserver import ProsodyServer, TestClient, wait_for

ROOM = "ops@conference.localhost"
BOT_NICK = "deploybot"
PASSWORD_ENV = "DEPLOYBOT_E2E_XMPP_PASSWORD"


@pytest.fixture
async def bot(prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[BotProcess]:
    config: dict[str, Any] = {
        "bot": {"nick": BOT_NICK},
        "chat": {
            "default_room": ROOM,
            "xmpp": {
                "jid": prosody.jid("bot"),
                "password_env": PASSWORD_ENV,
                "host": "127.0.0.1",
                "port": prosody.port,
                "tls": False,
                "rooms": [ROOM],
            },
        },
        "auth": {"rules": [{"who": ["xmpp:alice@localhost"], "role": "deployer"}]},
    }
    process = BotProcess(tmp_path / "bot", config, {PASSWORD_ENV: prosody.password("bot")})
    try:
        await process.start()
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def clients(prosody: ProsodyServer) -> AsyncIterator[dict[str, TestClient]]:
    users = {name: TestClient(prosody, name) for name in ("alice", "bob")}
    try:
        for client in users.values():
            await client.connect()
        yield users
    finally:
        for client in users.values():
            await client.close()


async def answer(client: TestClient, kind: str, sender: str, prefix: str, since: int = 0) -> str:
    """The first body of type `kind` from `sender` (bare JID or room/nick) starting with prefix."""

    def found() -> list[str]:
        return [
            r.body
            for r in client.received[since:]
            if r.type == kind and r.sender.startswith(sender) and r.body.startswith(prefix)
        ]

    await wait_for(found, timeout=15, what=f"{prefix!r} from {sender}")
    return found()[0]


async def test_help_and_whoami_in_a_room_and_by_direct_message(
    bot: BotProcess, prosody: ProsodyServer, clients: dict[str, TestClient]
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    await alice.join(ROOM, "alice")
    await bob.join(ROOM, "bob")
    in_room = f"{ROOM}/{BOT_NICK}"

    alice.say(ROOM, "!help")
    listed = await answer(alice, "groupchat", in_room, "alice: commands: ")
    assert {"help", "whoami", "log"} <= set(listed.split())
    alice.say(ROOM, "!whoami")
    assert await answer(alice, "groupchat", in_room, "alice: you are ") == (
        "alice: you are xmpp:alice@localhost; roles: deployer on */*"
    )  # in a room, a reply names whom it answers
    bob.say(ROOM, "!whoami")
    assert await answer(bob, "groupchat", in_room, "bob: you are xmpp:bob") == (
        "bob: you are xmpp:bob@localhost; roles: anyone"
    )

    bot_jid = prosody.jid("bot")
    alice.tell(bot_jid, "!whoami")
    assert await answer(alice, "chat", bot_jid, "you are ") == (
        "you are xmpp:alice@localhost; roles: deployer on */*"
    )
    alice.tell(bot_jid, "!help whoami")
    syntax = await answer(alice, "chat", bot_jid, "!whoami")
    assert "role: anyone" in syntax
    # direct answers stay direct: nothing about them reached the room
    assert "!help whoami" not in [r.body for r in bob.received]
    assert not [r for r in bob.received if r.body.startswith("!whoami —")]


async def test_line_breaks_and_a_2kb_argument_get_one_refusal_each(
    bot: BotProcess, clients: dict[str, TestClient]
) -> None:
    alice = clients["alice"]  # a deployer: only the input itself can be refused
    await alice.join(ROOM, "alice")
    in_room = f"{ROOM}/{BOT_NICK}"
    hostile = {
        "!log x\r\nQUIT :bye\r\n!log y": "refused: control characters are not allowed in commands",
        "!log " + "A" * 2048: "refused: command longer than 1000 characters",
    }
    for text, refusal in hostile.items():
        mark = len(alice.received)
        alice.say(ROOM, text)
        alice.say(ROOM, "!whoami")
        await answer(alice, "groupchat", in_room, "alice: you are ", since=mark)
        said = [r.body for r in alice.received[mark:] if r.sender == in_room]
        assert said == [
            f"alice: {refusal}",
            "alice: you are xmpp:alice@localhost; roles: deployer on */*",
        ]
    assert [e for e in await bot.sal_entries() if e["action"] == "log"] == []
    assert await bot.ready_status() == 200
