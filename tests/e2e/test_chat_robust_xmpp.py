"""`deploybot run` on a real prosody when the room is not friendly: taken nicks, corrections,
offline messages, a frozen server, and a `!deploy` in the component's own room.

What a user notices: the bot gets into its room as soon as a nick is free (and takes its own
back), `/ready` names the room while it is out, a corrected command never runs again, and a
deploy shows each state once, in order. After a freeze (SIGSTOP, thawed once the bot noticed
it), the bot reads the room's history since the last line it saw and answers a command sent
while it was cut off with one "missed" line addressed to the asker; it never runs it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.demo.setup import prepare
from tests.support.botproc import BotProcess
from tests.support.xmppserver import ProsodyServer, TestClient, wait_for

ROOM = "ops@conference.localhost"
NICK = "deploybot"
PASSWORD_ENV = "DEPLOYBOT_E2E_XMPP_PASSWORD"
EDIT_ANSWER = "edits are not run; the original was: logged #"  # names what it did


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


@pytest.fixture
async def bots() -> AsyncIterator[list[BotProcess]]:
    started: list[BotProcess] = []
    try:
        yield started
    finally:
        for bot in started:
            await bot.stop()


def xmpp_config(prosody: ProsodyServer, **xmpp: Any) -> dict[str, Any]:
    return {
        "bot": {"nick": NICK},
        "chat": {
            "default_room": ROOM,
            "xmpp": {
                "jid": prosody.jid("bot"),
                "password_env": PASSWORD_ENV,
                "host": "127.0.0.1",
                "port": prosody.port,
                "tls": False,
                "rooms": [ROOM],
                **xmpp,
            },  # fmt: skip
        },
        "auth": {"rules": [{"who": ["xmpp:alice@localhost"], "role": "admin"}]},
    }


async def start_bot(
    bots: list[BotProcess], prosody: ProsodyServer, directory: Path, config: dict[str, Any],
    expect: int = 200,
) -> BotProcess:  # fmt: skip
    bot = BotProcess(directory, config, {PASSWORD_ENV: prosody.password("bot")})
    bots.append(bot)
    await bot.start(expect=expect)
    return bot


def from_bot(client: TestClient, nick: str, since: int = 0) -> list[str]:
    """What the bot said in the room, a reply without the `asker: ` in front of it."""
    said = [r for r in client.received[since:] if r.sender == f"{ROOM}/{nick}"]
    return [re.sub(r"^[^\s:]+: ", "", r.body, count=1) for r in said]


async def answer(
    client: TestClient, nick: str, pattern: str, since: int, within: float = 15
) -> str:
    def found() -> list[str]:
        return [b for b in from_bot(client, nick, since) if re.search(pattern, b)]

    await wait_for(found, timeout=within, what=f"{pattern!r} from {nick}")
    return found()[0]


async def test_taken_nicks_keep_the_bot_out_only_until_one_is_free(
    prosody: ProsodyServer, clients: dict[str, TestClient], bots: list[BotProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    alice, bob = clients["alice"], clients["bob"]
    await alice.join(ROOM, NICK)  # someone sits on the bot's nick ...
    await bob.join(ROOM, f"{NICK}_")  # ... and on its fallback nick
    config = xmpp_config(prosody, join_retry=1, join_retry_max=2)
    bot = await start_bot(bots, prosody, tmp_path / "bot", config, expect=503)
    await bot.wait_log(r"not in ops@conference\.localhost: deploybot: conflict", 20)
    status, why = await bot.ready()
    assert (status, why.strip()) == (503, f"not joined: xmpp {ROOM}")
    assert await bot.metric("deploybot_chat_rooms_joined", 'adapter="xmpp"') == 0

    bob.leave(ROOM, f"{NICK}_")  # the fallback nick is free: the bot is in on the next retry
    await bot.wait_ready(200, 30)
    assert await bot.metric("deploybot_chat_rooms_joined", 'adapter="xmpp"') == 1
    mark = len(alice.received)
    alice.say(ROOM, "!whoami")
    assert await answer(alice, f"{NICK}_", "^you are ", mark) == (
        "you are xmpp:alice@localhost; roles: admin on */*"
    )

    alice.leave(ROOM, NICK)  # the nick is free: the bot takes it back at once ...
    await alice.join(ROOM, "alice")
    await bot.wait_log(r"regained nick deploybot in ops@conference\.localhost", 20)
    mark = len(alice.received)
    alice.say(ROOM, "!whoami")
    await answer(alice, NICK, "^you are xmpp:alice@localhost", mark)  # ... and it is its own
    assert await bot.ready_status() == 200


async def test_a_corrected_log_writes_one_entry_and_gets_one_answer(
    prosody: ProsodyServer, clients: dict[str, TestClient], bots: list[BotProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    alice = clients["alice"]
    bot_jid = prosody.jid("bot")
    alice.tell(bot_jid, "!log said while the bot was away")  # stored offline, then delayed
    bot = await start_bot(bots, prosody, tmp_path / "bot", xmpp_config(prosody))
    await alice.join(ROOM, "alice")

    mark = len(alice.received)
    first = alice.say(ROOM, "!log restarted builds-api in tools")
    await answer(alice, NICK, "^logged #", mark)
    alice.correct(ROOM, first, "!log restarted builds-api in toolsbeta")
    edit_answer = await answer(alice, NICK, "edits are", mark)
    assert edit_answer.startswith(EDIT_ANSWER) and edit_answer.endswith("builds-api in tools")
    alice.correct(ROOM, first, "!log restarted builds-api in toolsbeta, really")
    alice.say(ROOM, "!whoami")  # a barrier: anything said about the edits came before this
    await answer(alice, NICK, "^you are ", mark)
    said = from_bot(alice, NICK, mark)
    assert said.count(edit_answer) == 1 and len(said) == 3, said

    logs = [e["message"] for e in await bot.sal_entries() if e["action"] == "log"]
    assert logs == ["alice: restarted builds-api in tools"]  # not the edits, not the delayed one
    assert not [r for r in alice.received if r.type == "chat" and r.body.startswith("logged")]


async def test_frozen_server_turns_ready_503_and_back(
    prosody: ProsodyServer, bots: list[BotProcess], tmp_path: Path
) -> None:
    config = xmpp_config(prosody, ping_interval=2, ping_timeout=2)
    bot = await start_bot(bots, prosody, tmp_path / "bot", config)
    prosody.pause()
    try:
        await bot.wait_ready(503, 40)
        status, why = await bot.ready()
        assert "xmpp" in why
    finally:
        prosody.pause(False)
    await bot.wait_ready(200, 40)


async def test_deploy_in_the_component_room_shows_each_state_once_in_order(
    prosody: ProsodyServer, clients: dict[str, TestClient], bots: list[BotProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    demo = yaml.safe_load((await prepare(tmp_path / "world")).read_text())
    config = xmpp_config(prosody)
    config = {**demo, **config, "bot": {**demo["bot"], **config["bot"]}}
    config["components"]["builds-api"]["room"] = ROOM
    config["monitors"] = {"enabled": False}
    bot = await start_bot(bots, prosody, tmp_path / "bot", config)
    alice = clients["alice"]
    await alice.join(ROOM, "alice")

    mark = len(alice.received)
    alice.say(ROOM, "!deploy builds-api latest to toolsbeta")
    await answer(alice, NICK, r"deploy #1 done", mark, within=60)
    lines = [part for body in from_bot(alice, NICK, mark) for part in body.split(" | ")]
    if "working on it" in lines[0]:  # only when the pin took longer than bot.reply_timeout
        lines = lines[1:]
    states = [
        next(
            (s for s in ("pushed", "deploying", "diff", "brings", "done", " -> ") if s in line),
            line,
        )  # fmt: skip
        for line in lines
    ]
    # pin, then push, then every state of the deploy, each once and in order
    assert states == [" -> ", "pushed", "deploying", "diff", "brings", "done"], lines
    assert bot.running


MISSED = re.compile(
    r"^alice: missed while I was disconnected \(\d\d:\d\d–\d\d:\d\d UTC\): send it again$"
)


def said_in_room(client: TestClient) -> list[str]:
    """What the bot said in the room (under its nick or the fallback `nick_`)."""
    return [r.body for r in client.received if r.sender in (f"{ROOM}/{NICK}", f"{ROOM}/{NICK}_")]


async def test_a_command_sent_while_cut_off_gets_the_missed_line_from_muc_history(
    prosody: ProsodyServer, clients: dict[str, TestClient], bots: list[BotProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    alice = clients["alice"]
    await alice.join(ROOM, "alice")
    config = xmpp_config(prosody, ping_interval=2, ping_timeout=2)
    bot = await start_bot(bots, prosody, tmp_path / "bot", config)
    alice.say(ROOM, "!whoami")  # a line the bot sees before the cut
    await wait_for(lambda: [b for b in said_in_room(alice) if "you are " in b], 15, "an answer")
    prosody.pause()
    try:
        alice.say(ROOM, "!whoami")  # the server holds it, frozen: the bot never sees it live
        await bot.wait_ready(503, 20)  # the bot noticed the cut
    finally:
        prosody.pause(False)
    await bot.wait_ready(200, 40)
    await wait_for(
        lambda: [b for b in said_in_room(alice) if MISSED.match(b)], 20, "the missed line"
    )
    alice.say(ROOM, "!whoami")  # a barrier: anything about the missed command came before
    await wait_for(
        lambda: len([b for b in said_in_room(alice) if "you are " in b]) == 2, 15, "an answer"
    )
    said = said_in_room(alice)
    assert len([b for b in said if MISSED.match(b)]) == 1, said
    # the command said while cut off never ran: one answer before the cut, one after
    assert [b for b in said if "you are " in b] == ["alice: you are xmpp:alice@localhost; "
                                                    "roles: admin on */*"] * 2, said  # fmt: skip
