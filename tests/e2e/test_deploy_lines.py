"""What a component's room sees of `!deploy` (auto-applying), `!apply` with a diff and
`!rollback`, from scripted clients on real ngircd and Prosody, with a deploy that takes a
few seconds and one that takes none.

What a user notices: every state of each deploy reaches the room once, in the order start
-> diff -> (upgrade scripts) -> brings -> done; no reply describes a pin as "not applied"
while the auto-apply it started runs; every line fits one IRC message (400 bytes with its
`PRIVMSG <room> :` prefix).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.demo.setup import prepare
from tests.support.botproc import BotProcess
from tests.support.ircservers import (  # noqa: F401  (fixtures)
    Ngircd,
    RawIrcClient,
    ngircd_fixture,
    unique,
)
from tests.support.xmppserver import ProsodyServer, TestClient, wait_for

LINE_BYTES = 400
SLOW = 2.0  # seconds the slow deploy's apply/rollback command takes
STEPS = ("start", "diff", "scripts", "brings", "done")
XMPP_PASSWORD_ENV = "DEPLOYBOT_E2E_XMPP_PASSWORD"


async def world(directory: Path, room: str, slow: bool) -> dict[str, Any]:
    """The demo's world (control repo, releases, simulated live state) speaking in `room`;
    with `slow`, its apply and rollback commands take SLOW seconds."""
    config: dict[str, Any] = yaml.safe_load((await prepare(directory)).read_text())
    config["components"]["builds-api"]["room"] = room
    config["monitors"] = {"enabled": False}  # only the deploys speak
    if slow:
        for step in ("apply", "rollback"):
            config["deploy"][step] = ["sh", "-c", 'sleep "$0"; exec "$@"', str(SLOW),
                                      *config["deploy"][step]]  # fmt: skip
    return config


def step_of(line: str, n: int) -> str | None:
    """Which of deploy #n's states `line` is (None: not one of them)."""
    if f"deploy #{n} done" in line or f"deploy #{n} failed" in line:
        return "done"
    if f"deploy #{n} diff:" in line:
        return "diff"
    if f"deploy #{n} brings " in line:
        return "brings"
    if f"deploy #{n} of " in line and "upgrade script" in line:
        return "scripts"
    if re.search(rf"^(deploying|rolling back|emergency rollback of) .*\(deploy #{n}\b", line):
        return "start"
    return None


def states(lines: list[str], n: int) -> list[str]:
    items = [part for line in lines for part in line.split(" | ")]  # a packed line's items
    return [s for s in (step_of(item, n) for item in items) if s is not None]


Say = Callable[[str], Awaitable[None]]
Heard = Callable[[], list[str]]
Wait = Callable[[str, float], Awaitable[None]]


async def session(say: Say, heard: Heard, wait: Wait) -> list[str]:
    """The README's deploy path: pin+auto-apply toolsbeta, promote and apply tools, roll it
    back. Returns every line the bot said in the room."""
    await say("!deploy builds-api latest to toolsbeta")
    await wait(r"deploy #1 done", 60)
    await say("!promote builds-api")
    await wait(r"!apply builds-api tools", 30)
    await say("!apply builds-api tools")
    await wait(r"deploy #2 done", 60)
    await say("!rollback builds-api tools")
    await wait(r"deploy #3 done", 60)
    return heard()


def check(lines: list[str], room: str) -> None:
    for n, brings in ((1, True), (2, True), (3, False)):  # a rollback brings nothing
        seen = states(lines, n)
        expected = ["start", "diff", *(["brings"] if brings else []), "done"]
        assert [s for s in seen if s != "scripts"] == expected, (n, lines)
        assert seen == sorted(seen, key=STEPS.index), (n, lines)  # scripts, if any, in place
    assert not any("pinned in toolsbeta, not applied" in line for line in lines), lines
    assert any("applying now in toolsbeta" in line for line in lines), lines
    for line in lines:
        assert len(f"PRIVMSG {room} :{line}".encode()) <= LINE_BYTES, line


@pytest.fixture
async def bots() -> AsyncIterator[list[BotProcess]]:
    started: list[BotProcess] = []
    try:
        yield started
    finally:
        for bot in started:
            await bot.stop()


@pytest.mark.parametrize("slow", [False, True], ids=["instant", "slow"])
async def test_irc_room_hears_every_deploy_state_once_in_order(
    ngircd: Ngircd, bots: list[BotProcess], tmp_path: Path, slow: bool
) -> None:
    nick, channel, alice_nick = unique("dbot"), unique("#deploys"), unique("alice")
    config = await world(tmp_path / "world", channel, slow)
    config["bot"]["nick"] = nick
    irc = {"host": "127.0.0.1", "port": ngircd.port, "tls": False, "channels": [channel]}
    config["chat"] = {"default_room": channel, "irc": irc}
    config["flood"] = {"burst": 5, "per_second": 1.0}
    config["auth"] = {
        "rules": [{"who": [f"irc-host:{alice_nick}!*"], "role": "admin", "trust": "hostmask"}]
    }  # ngircd has no accounts
    bot = BotProcess(tmp_path / "bot", config)
    bots.append(bot)
    await bot.start()
    alice = RawIrcClient(ngircd.port, alice_nick)
    await alice.connect()
    try:
        await alice.join(channel)
        mark = len(alice.lines)

        def heard() -> list[str]:
            out = []
            for ln in alice.lines[mark:]:
                if ln.command == "PRIVMSG" and ln.nick == nick and ln.param(0) == channel:
                    text = ln.param(1)
                    out.append(text.removeprefix(f"{alice_nick}: "))
            return out

        async def wait(pattern: str, within: float) -> None:
            await alice.wait_for(
                lambda ln: ln.command == "PRIVMSG" and ln.nick == nick
                and re.search(pattern, ln.param(1)) is not None, within, mark,
            )  # fmt: skip

        lines = await session(lambda text: alice.privmsg(channel, text), heard, wait)
    finally:
        await alice.close()
    check(lines, channel)


@pytest.mark.parametrize("slow", [False, True], ids=["instant", "slow"])
async def test_xmpp_room_hears_every_deploy_state_once_in_order(
    prosody: ProsodyServer, bots: list[BotProcess], tmp_path: Path, slow: bool
) -> None:
    room = "deploys@conference.localhost"
    config = await world(tmp_path / "world", room, slow)
    config["bot"]["nick"] = "deploybot"
    xmpp = {"jid": prosody.jid("bot"), "password_env": XMPP_PASSWORD_ENV, "host": "127.0.0.1",
            "port": prosody.port, "tls": False, "rooms": [room]}  # fmt: skip
    config["chat"] = {"default_room": room, "xmpp": xmpp}
    config["auth"] = {"rules": [{"who": ["xmpp:alice@localhost"], "role": "admin"}]}
    bot = BotProcess(tmp_path / "bot", config, {XMPP_PASSWORD_ENV: prosody.password("bot")})
    bots.append(bot)
    await bot.start()
    alice = TestClient(prosody, "alice")
    await alice.connect()
    try:
        await alice.join(room, "alice")
        mark = len(alice.received)

        def heard() -> list[str]:
            return [r.body for r in alice.received[mark:] if r.sender == f"{room}/deploybot"]

        async def wait(pattern: str, within: float) -> None:
            def found() -> bool:
                return any(re.search(pattern, line) for line in heard())

            await wait_for(found, timeout=within, what=pattern)

        async def say(text: str) -> None:
            alice.say(room, text)

        lines = await session(say, heard, wait)
    finally:
        await alice.close()
    check(lines, room)
