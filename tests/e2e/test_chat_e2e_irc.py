"""`deploybot run` as a subprocess on real IRC servers (ngircd, InspIRCd + Atheme).

What a user in the channel notices: commands answered, identities taken from services
accounts (never from nicks), the bot back after its server died with what was queued
meanwhile delivered once, no flood kill under a burst, and hostile lines refused once.
Raw test clients play the humans; the bot is the real program with a written config.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.chat.irc.fence import MARKER
from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess, pipeline_hook
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

CHANNEL = "#ops"
SAL_CHANNEL = "#sal"
PROJECT = "repos/cloud/toolforge/builds-api"
SASL_ENV = "DEPLOYBOT_E2E_SASL_PASSWORD"
SECRET_ENV = "DEPLOYBOT_E2E_WEBHOOK_SECRET"
WEBHOOK_SECRET = "e2e-webhook-secret-0123"
PASSWORD = "e2e-account-pw-4711"
FLOOD = {"burst": 5, "per_second": 1.0}  # InspIRCd's default class allows ~1 line/s


class Cleanup:
    """Everything a test started, stopped in reverse order even when the test fails."""

    def __init__(self) -> None:
        self.clients: list[RawIrcClient] = []
        self.bots: list[BotProcess] = []

    async def client(
        self, port: int, nick: str, channel: str | None = None, **kw: Any
    ) -> RawIrcClient:
        client = RawIrcClient(port, nick, **kw)
        self.clients.append(client)
        await client.connect()
        if channel:
            await client.join(channel)
        return client

    async def bot(
        self, directory: Path, config: dict[str, Any], env: dict[str, str] | None = None
    ) -> BotProcess:
        bot = BotProcess(directory, config, env)
        self.bots.append(bot)
        await bot.start()
        return bot

    async def close(self) -> None:
        while self.clients:
            await self.clients.pop().close()
        while self.bots:
            await self.bots.pop().stop()


@pytest.fixture
async def started() -> AsyncIterator[Cleanup]:
    things = Cleanup()
    try:
        yield things
    finally:
        await things.close()


def irc_config(port: int, nick: str, channels: list[str], **extra: Any) -> dict[str, Any]:
    """A bot on the IRC server at `port`; `extra` adds top-level config sections."""
    irc: dict[str, Any] = {"host": "127.0.0.1", "port": port, "tls": False, "channels": channels}
    config: dict[str, Any] = {
        "bot": {"nick": nick},
        "chat": {"default_room": channels[0], "irc": irc},
        "flood": FLOOD,
        **extra,
    }
    return config


def builds_api(room: str) -> dict[str, Any]:
    return {"builds-api": {"project": PROJECT, "room": room}}


def from_bot(line: Line, bot_nick: str, target: str) -> bool:
    return (
        line.command == "PRIVMSG"
        and (line.nick or "").lower() == bot_nick.lower()
        and line.param(0).lower() == target.lower()
    )


def bot_lines(client: RawIrcClient, bot_nick: str, target: str, since: int = 0) -> list[str]:
    return [ln.param(1) for ln in client.lines[since:] if from_bot(ln, bot_nick, target)]


async def said(
    client: RawIrcClient, bot_nick: str, target: str, pattern: str, since: int, within: float = 20
) -> str:
    """The first line the bot says to `target` after index `since` matching `pattern`."""
    line = await client.wait_for(
        lambda ln: from_bot(ln, bot_nick, target) and re.search(pattern, ln.param(1)) is not None,
        within,
        since,
    )
    return line.param(1)


async def ask(
    client: RawIrcClient, bot_nick: str, to: str, text: str, pattern: str, within: float = 20
) -> str:
    """Say `text` to `to` (channel or the bot's nick); return the bot's answer matching pattern.

    In a channel the answer must be addressed to the asker (`alice: ...`); that address is
    checked and removed before matching. A private answer is not addressed."""
    mark = len(client.lines)
    await client.privmsg(to, text)
    private = to.lower() == bot_nick.lower()
    reply_to = client.nick if private else to
    address = "" if private else f"{client.nick}: "

    def answer(ln: Line) -> bool:
        said = ln.param(1)
        return (
            from_bot(ln, bot_nick, reply_to)
            and said.startswith(address)
            and re.search(pattern, said.removeprefix(address)) is not None
        )

    line = await client.wait_for(answer, within, mark)
    return line.param(1).removeprefix(address)


@pytest.mark.parametrize("server_name", ["ngircd", "inspircd_atheme"])
async def test_help_and_whoami_in_channel_and_by_private_message(
    server_name: str, request: pytest.FixtureRequest, tmp_path: Path, started: Cleanup
) -> None:
    server: IrcServer = request.getfixturevalue(server_name)
    nick, channel = unique("e2ebot"), unique("#help")
    await started.bot(tmp_path, irc_config(server.port, nick, [channel]))
    user = await started.client(server.port, unique("alice"), channel)

    listed = await ask(user, nick, channel, "!help", r"^commands: ")
    assert {"help", "whoami", "log", "sal"} <= set(listed.split())
    anyone = (
        f"you are irc-host:{own_source(user)} (not logged in to a services account); roles: anyone"
    )
    assert await ask(user, nick, channel, "!whoami", r"^you are ") == anyone
    assert await ask(user, nick, nick, "!whoami", r"^you are ") == anyone
    syntax = await ask(user, nick, nick, "!help log", r"!log")
    assert "role: deployer" in syntax


async def test_roles_come_from_the_services_account_not_the_nick(
    inspircd_atheme: InspircdAtheme, tmp_path: Path, started: Cleanup
) -> None:
    server = inspircd_atheme
    nick = unique("salbot")
    await server.register_account(nick, PASSWORD)  # the bot's own account
    await server.register_account("op1", PASSWORD)
    config = irc_config(
        server.port,
        nick,
        [CHANNEL, SAL_CHANNEL],
        auth={"rules": [{"who": ["irc:op1"], "role": "deployer"}]},
        sal={
            "sinks": ["store", {"irc_channel": SAL_CHANNEL}],
            "projects": ["tools", "toolsbeta"],
            "rooms": {CHANNEL: "toolsbeta"},
        },
    )
    config["chat"]["irc"]["sasl"] = {"username": nick, "password_env": SASL_ENV}
    bot = await started.bot(tmp_path, config, {SASL_ENV: PASSWORD})
    await bot.wait_log(rf"logged in to services as {nick}", within=10)
    watcher = await started.client(server.fast_port, unique("watch"), SAL_CHANNEL)

    # logged in to op1 over SASL, under an unrelated nick
    op = await started.client(server.port, "opnick", CHANNEL, sasl=("op1", PASSWORD))
    await op.join(SAL_CHANNEL)  # so the watcher sees when opnick is free again
    who = await ask(op, nick, CHANNEL, "!whoami", r"^you are ")
    assert who.startswith("you are irc:op1; roles: deployer")
    mark = len(watcher.lines)
    near = await ask(op, nick, CHANNEL, "!log tool restarted the frobnicator", r"^log")
    assert near == (
        "log: unknown SAL project 'tool'; did you mean tools? (!log tools <message>);"
        " nothing logged"
    )
    logged = await ask(op, nick, CHANNEL, "!log tools restarted the frobnicator T42", r"^log")
    assert re.match(r"logged #\d+ to tools: op1: restarted the frobnicator T42$", logged)
    # stashbot's relay form: the real actor first, then the project (as from logmsgbot)
    sink = await said(watcher, nick, SAL_CHANNEL, r"^!log ", mark)
    assert sink == "!log op1 tools restarted the frobnicator T42"
    entries = [e for e in await bot.sal_entries() if e["action"] == "log"]
    assert [(e["actor"], e["message"], e["sal_project"]) for e in entries] == [
        ("irc:op1", "op1: restarted the frobnicator T42", "tools")
    ]
    await op.close()
    await watcher.wait_for(lambda ln: ln.command == "QUIT" and ln.nick == "opnick")

    # the same nick without a login, then somebody else taking the nick op1
    for impostor_nick in ("opnick", "op1"):
        impostor = await started.client(server.port, impostor_nick, CHANNEL)
        who = await ask(impostor, nick, CHANNEL, "!whoami", r"^you are ")
        assert who == (
            f"you are irc-host:{own_source(impostor)} (not logged in to a services account);"
            " roles: anyone"
        )
        refused = await ask(impostor, nick, CHANNEL, "!log x", r"^log")
        assert refused == "log: refused: you need the deployer role; see !whoami"
        await impostor.close()
    logs = [e for e in await bot.sal_entries() if e["action"] == "log"]
    assert [e["result"] for e in logs] == ["ok", "refused", "refused"]  # refusals: store only
    assert bot_lines(watcher, nick, SAL_CHANNEL, mark) == [sink]
    assert PASSWORD not in bot.log_text()


async def test_hostile_lines_change_nothing_and_get_one_refusal(
    inspircd_atheme: InspircdAtheme, tmp_path: Path, started: Cleanup
) -> None:
    server = inspircd_atheme
    await server.register_account("op2", PASSWORD)
    nick = unique("safebot")
    config = irc_config(
        server.port,
        nick,
        [CHANNEL],
        auth={"rules": [{"who": ["irc:op2"], "role": "deployer"}]},
        components=builds_api(CHANNEL),
    )
    bot = await started.bot(tmp_path, config)
    op = await started.client(server.fast_port, unique("op"), CHANNEL, sasl=("op2", PASSWORD))
    hostile = {
        # a client cannot put CR/LF inside a PRIVMSG; it can send their escapes as text
        "!whoami\\r\\nQUIT :bye": r"^unknown command !whoami\\r\\nquit; did you mean !whoami\?$",
        "!log x \x01QUIT\x01 \x07\x1b[31m": r"^refused: control characters are not allowed",
        "!log " + "A" * 2048: r"^refused: argument longer than 200 characters$",
    }
    for text, refusal in hostile.items():
        mark = len(op.lines)
        await op.privmsg(CHANNEL, text)
        await op.privmsg(CHANNEL, "!whoami")
        await said(op, nick, CHANNEL, rf"^{op.nick}: you are irc:op2", mark)
        answers = [a.removeprefix(f"{op.nick}: ") for a in bot_lines(op, nick, CHANNEL, mark)]
        assert len(answers) == 2, answers
        assert re.search(refusal, answers[0]), answers[0]

    # CR/LF can reach the bot in a webhook: the announcement stays one line of text
    title = "fix\r\nQUIT :pwned\r\nJOIN #evil\nPRIVMSG #ops :injected"
    mark = len(op.lines)
    assert await bot.post_webhook(pipeline_hook(9101, "pending", 0, title=title)) == 200
    line = await said(op, nick, CHANNEL, r"pipeline 9101", mark)
    assert "QUIT :pwned JOIN #evil PRIVMSG #ops :injected" in line
    await op.privmsg(CHANNEL, "!whoami")
    await said(op, nick, CHANNEL, rf"^{op.nick}: you are irc:op2", mark)

    assert bot_lines(op, nick, CHANNEL, mark) == [line, bot_lines(op, nick, CHANNEL, mark)[-1]]
    assert not [ln for ln in op.lines if ln.nick == nick and ln.command in ("QUIT", "PART")]
    assert not [ln for ln in op.lines if ln.param(1).startswith("injected")]
    assert [e for e in await bot.sal_entries() if e["action"] == "log"] == []
    assert await bot.ready_status() == 200
    assert bot.log_text().count("registered on") == 1


async def test_server_killed_and_restarted_while_the_bot_runs(
    tmp_path: Path, started: Cleanup
) -> None:
    server = Ngircd(tmp_path / "ngircd")
    server.dir.mkdir()
    server.start()
    try:
        await _outage_round_trip(server, tmp_path / "bot", started)
    finally:
        await started.close()
        server.kill()


async def _outage_round_trip(server: Ngircd, bot_dir: Path, started: Cleanup) -> None:
    nick, channel = unique("phoenix"), unique("#phoenix")
    config = irc_config(server.port, nick, [channel], components=builds_api(channel))
    bot = await started.bot(bot_dir, config)
    user = await started.client(server.port, unique("bob"), channel)
    before = await ask(user, nick, channel, "!whoami", r"^you are ")
    await user.close()

    server.kill()
    outage = len(bot.log_text())
    await bot.wait_ready(503, within=30)
    # two updates of one pipeline while chat is down: coalesced, delivered after reconnect
    for body in (pipeline_hook(7301, "pending", 0), pipeline_hook(7301, "running", 2)):
        assert await bot.post_webhook(body) == 200
    await bot.wait_metric("deploybot_queue_depth", 'queue="outbox"', 1)
    # restart the server while the bot waits >= 2 s before its next attempt, so the
    # returning user is in the channel before the bot comes back
    await bot.wait_log(r"reconnecting to IRC in ([2-9]|\d{2,})\.\d+s", within=30, since=outage)
    server.start()
    user = await started.client(server.port, unique("bob"), channel)
    await bot.wait_ready(200, within=30)
    line = await said(user, nick, channel, r"pipeline 7301", 0)
    assert line.startswith("builds-api: pipeline 7301 on main (322f874b): stage 2/3 test")
    assert await ask(user, nick, channel, "!whoami", r"^you are ") == (
        f"you are irc-host:{own_source(user)} (not logged in to a services account); roles: anyone"
    )
    # the reply said just before the kill may come again, marked: its PONG died with the
    # server, so the bot cannot know it was shown (at least once, never lost)
    seen = bot_lines(user, nick, channel)
    # back in the channel, the bot says once when it was cut off (no history to read)
    cut = [t for t in seen if t.startswith("I was cut off from ")]
    assert len(cut) == 1 and cut[0].endswith("did not reach me; send it again"), seen
    assert [t for t in seen if not t.endswith(MARKER) and t not in cut] == [line, seen[-1]]
    assert all(before in t for t in seen if t.endswith(MARKER)), seen
    assert len(re.findall(rf"joined {re.escape(channel)}", bot.log_text())) == 2


@pytest.mark.parametrize(
    ("server_name", "budget"),
    [
        ("ngircd", "burst 1, then 2 lines/s (ngircd-26"),
        ("inspircd_atheme", "burst 8, then 1 line/s (InspIRCd-3"),
    ],
)
async def test_burst_of_200_announcements_into_the_default_connect_class(
    server_name: str, budget: str, request: pytest.FixtureRequest, tmp_path: Path,
    started: Cleanup,
) -> None:  # fmt: skip
    """Stock server settings and no `chat.irc.flood`: the bot picks the server's budget."""
    server: IrcServer = request.getfixturevalue(server_name)
    nick, channel = unique("burstbot"), unique("#burst")
    config = irc_config(
        server.port,  # InspIRCd's default `main` class: ~1 line/s, killed past 8 KB of RecvQ
        nick,
        [channel],
        components=builds_api(channel),
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": SECRET_ENV,
                "announce_branches": ["wip/*"]},
    )  # fmt: skip
    del config["flood"]  # the product's defaults throughout
    bot = await started.bot(tmp_path, config, {SECRET_ENV: WEBHOOK_SECRET})
    watch_port = server.fast_port if isinstance(server, InspircdAtheme) else server.port
    watcher = await started.client(watch_port, unique("watch"), channel)
    ids = range(5001, 5101)
    want = {pid: "success failed canceled".split()[pid % 3] for pid in ids}
    bodies = [pipeline_hook(pid, "running", 1 + pid % 3, ref="wip/burst") for pid in ids]
    bodies += [pipeline_hook(pid, want[pid], 1 + pid % 3, ref="wip/burst") for pid in ids]
    limit = asyncio.Semaphore(8)

    async def post(index: int, body: dict[str, Any]) -> int:
        async with limit:
            token = {"X-Gitlab-Token": WEBHOOK_SECRET, "X-Gitlab-Event-UUID": f"burst-{index}"}
            return await bot.post_webhook(body, headers=token)

    statuses = await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
    assert set(statuses) == {200}

    final: dict[int, str] = {}
    items: list[tuple[int, str]] = []

    def all_final(line: Line) -> bool:
        if from_bot(line, nick, channel):
            for item in line.param(1).split(" | "):
                # the full line, or the short form used when a backlog is packed
                found = re.match(
                    r"builds-api: pipeline (\d+) on wip/burst \(\w+\): (.*)|builds-api #(\d+) (.*)",
                    item,
                )
                assert found, item
                pid, text = int(found[1] or found[3]), found[2] or found[4]
                items.append((pid, text))
                state = text.split()[0]
                if state in ("success", "failed", "canceled"):
                    final[pid] = state
        return len(final) == len(ids)

    await watcher.wait_for(all_final, within=150)
    assert final == want
    for pid in ids:  # each final shown once, and nothing about a pipeline after it
        states = [text.split()[0] for p, text in items if p == pid]
        assert states[-1] == want[pid] and states.count(want[pid]) == 1, states
    sent = bot_lines(watcher, nick, channel)
    assert len(sent) <= 40, f"{len(sent)} lines: the backlog was not packed"
    assert max(len(text.encode()) for text in sent) <= 400
    assert not [ln for ln in watcher.lines if ln.nick == nick and ln.command == "QUIT"]
    assert await bot.ready_status() == 200
    log = bot.log_text()
    assert log.count("registered on") == 1 and "connection to" not in log, log[-2000:]
    assert log.count("IRC line budget: ") == 1 and f"IRC line budget: {budget}" in log
