"""Benchmark: GitLab webhook POST -> announcement seen by a second client, on a stock ngircd
and on InspIRCd's default (flood-limited) connect class.

`deploybot run` (a subprocess, the product's default flood settings: no `flood` nor
`chat.irc.flood` in its config, so it picks each server's line budget itself) sits in a
channel; each POST is a new pipeline's Pipeline Hook, one every 2 s (a lone line is followed
by one fence PING on the same budget, and ngircd's is 2 lines/s: at one POST a second every
line would wait for a token), and a raw client in the channel times the announcement from the
start of the POST. The baseline, measured in the same
run on the same server, is a bare IRC echo round trip: a raw client's PRIVMSG answered by a
second raw client. Target (issue 26): p50 <= 50 ms on both servers. The HTTP ack time of the
same requests is reported beside it. Prints one JSON object per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.chat_roundtrip import BOT_NICK, CHANNEL, bot_on_inspircd, millis, percentile
from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import IrcServer, Ngircd, RawIrcClient

POSTS = 15
ECHOES = 30
PACE_S = 2.0  # a lone line costs two of ngircd's 2 lines/s: itself and its fence PING
TARGET_P50_MS = 50.0
PROJECT = "repos/cloud/toolforge/builds-api"
COMPONENTS = {"components": {"builds-api": {"project": PROJECT, "room": CHANNEL}}}


def announces(pipeline: int) -> Callable[[Line], bool]:
    """A RawIrcClient.wait_for predicate: the bot's line about this pipeline."""
    return lambda ln: (
        ln.command == "PRIVMSG" and ln.nick == BOT_NICK and f"pipeline {pipeline} " in ln.param(1)
    )


@contextlib.asynccontextmanager
async def bot_on_ngircd(workdir: Path) -> AsyncIterator[tuple[Ngircd, BotProcess]]:
    """A stock ngircd in `workdir` and `deploybot run` (default flood settings) in CHANNEL."""
    server = Ngircd(workdir / "ngircd")
    server.dir.mkdir(parents=True)
    try:
        await asyncio.to_thread(server.start)
        irc = {"host": server.host, "port": server.port, "tls": False, "channels": [CHANNEL]}
        config = {"bot": {"nick": BOT_NICK}, "chat": {"default_room": CHANNEL, "irc": irc}}
        bot = BotProcess(workdir / "bot", {**config, **COMPONENTS})
        try:
            await bot.start()
            yield server, bot
        finally:
            await bot.stop()
    finally:
        server.kill()


async def echo_round_trips(port: int, count: int) -> list[float]:
    """A bare IRC echo: `ping i` from one raw client, `pong i` back from another."""
    asker, echo = RawIrcClient(port, "asker"), RawIrcClient(port, "echo")
    samples: list[float] = []
    try:
        for client in (asker, echo):
            await client.connect()
            await client.join(CHANNEL)
        for i in range(count):
            mark, echo_mark = len(asker.lines), len(echo.lines)
            sent = time.perf_counter()
            await asker.privmsg(CHANNEL, f"ping {i}")
            await echo.wait_for(
                lambda ln, i=i: ln.command == "PRIVMSG" and ln.param(1) == f"ping {i}",
                10,
                echo_mark,
            )
            await echo.privmsg(CHANNEL, f"pong {i}")
            await asker.wait_for(
                lambda ln, i=i: ln.command == "PRIVMSG" and ln.param(1) == f"pong {i}", 10, mark
            )
            samples.append(time.perf_counter() - sent)
            await asyncio.sleep(0.6)  # within ngircd's pace for a plain client: no line held
    finally:
        await asker.close()
        await echo.close()
    return samples


async def _posts(server: IrcServer, bot: BotProcess) -> tuple[list[float], list[float]]:
    watcher = RawIrcClient(server.port, "watcher")
    to_chat: list[float] = []
    acks: list[float] = []
    try:
        await watcher.connect()
        await watcher.join(CHANNEL)
        start = time.monotonic()
        for i in range(POSTS):
            await asyncio.sleep(max(0.0, start + i * PACE_S - time.monotonic()))  # pacing
            pipeline = 880000 + i
            mark = len(watcher.lines)
            sent = time.perf_counter()
            status = await bot.post_webhook(pipeline_hook(pipeline, "pending", 0))
            acks.append(time.perf_counter() - sent)
            if status != 200:
                raise RuntimeError(f"webhook answered {status}")
            await watcher.wait_for(announces(pipeline), within=10, since=mark)
            to_chat.append(time.perf_counter() - sent)
    finally:
        await watcher.close()
    return to_chat, acks


def figures(
    server: str, to_chat: list[float], acks: list[float], echo: list[float]
) -> dict[str, Any]:
    p50, base = percentile(to_chat, 50), percentile(echo, 50)
    return {
        "bench": f"webhook_to_chat.{server}",
        "what": "POST /webhooks/gitlab -> pipeline line seen by a second IRC client",
        "server": {"ngircd": "ngircd, stock", "inspircd": "InspIRCd 3, default connect class"}[
            server
        ],
        "flood": "defaults",
        "n": len(to_chat),
        "p50_ms": millis(p50),
        "p99_ms": millis(percentile(to_chat, 99)),
        "ack_p50_ms": millis(percentile(acks, 50)),
        "ack_p99_ms": millis(percentile(acks, 99)),
        "baseline": "bare IRC echo round trip (raw client -> raw client -> back), same server",
        "baseline_p50_ms": millis(base),
        "ratio_p50": round(p50 / base, 2),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": millis(p50) <= TARGET_P50_MS,
        "pace_s": PACE_S,
    }


async def _ngircd(workdir: Path) -> dict[str, Any]:
    async with bot_on_ngircd(workdir) as (server, bot):
        echo = await echo_round_trips(server.port, ECHOES)
        to_chat, acks = await _posts(server, bot)
    return figures("ngircd", to_chat, acks, echo)


async def _inspircd(workdir: Path) -> dict[str, Any]:
    async with bot_on_inspircd(workdir, default_class=True, extra=COMPONENTS) as (server, bot):
        echo = await echo_round_trips(server.port, ECHOES)
        to_chat, acks = await _posts(server, bot)
    return figures("inspircd", to_chat, acks, echo)


def main() -> None:
    for name, run in (("ngircd", _ngircd), ("inspircd", _inspircd)):
        with tempfile.TemporaryDirectory(prefix=f"bench-webhook-chat-{name}-") as tmp:
            try:
                result = asyncio.run(run(Path(tmp)))
            except (pytest.skip.Exception, pytest.fail.Exception) as exc:
                result = {"bench": f"webhook_to_chat.{name}", "skipped": str(exc)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
