"""Benchmark: chat round trip (`!whoami` -> reply seen by the asking client) on a real InspIRCd.

`deploybot run` (a subprocess) sits in a channel on InspIRCd's lifted connect class; a raw
client asks `!whoami` N times, one request per second (the bot's flood budget, so no line
waits for a token) and times each reply. The baseline, measured in the same run on the same
server, is a raw client -> raw client PRIVMSG round trip (ping answered by a second client).
Prints one JSON object. Also holds `bot_on_inspircd` and `percentile` for the other chat
benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess
from tests.support.ircservers import InspircdAtheme, RawIrcClient

ROUND_TRIPS = 50
BASELINE_ROUND_TRIPS = 200
PACE_S = 1.0  # the bot sends at most 1 line/s after a burst of 5
CHANNEL = "#bench"
BOT_NICK = "benchbot"


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of non-empty samples."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def millis(seconds: float) -> float:
    return round(seconds * 1000, 2)


@contextlib.asynccontextmanager
async def bot_on_inspircd(
    workdir: Path,
    *,
    default_class: bool,
    extra: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[InspircdAtheme, BotProcess]]:
    """InspIRCd+Atheme in `workdir` and `deploybot run` in CHANNEL; both stopped on exit.

    default_class: connect the bot to the flood-limited `main` class instead of the lifted one.
    """
    server = InspircdAtheme(workdir / "ircd")
    server.dir.mkdir(parents=True)
    try:
        await asyncio.to_thread(server.start)
        irc = {
            "host": server.host,
            "port": server.port if default_class else server.fast_port,
            "tls": False,
            "channels": [CHANNEL],
        }
        config = {"bot": {"nick": BOT_NICK}, "chat": {"default_room": CHANNEL, "irc": irc}}
        bot = BotProcess(workdir / "bot", {**config, **(extra or {})}, env)
        try:
            await bot.start()
            yield server, bot
        finally:
            await bot.stop()
    finally:
        server.kill()


def from_bot(text_starts: str) -> Callable[[Line], bool]:
    """A RawIrcClient.wait_for predicate: the bot said something starting with `text_starts`."""
    return lambda ln: (
        ln.command == "PRIVMSG" and ln.nick == BOT_NICK and ln.param(1).startswith(text_starts)
    )


async def _bot_round_trips(client: RawIrcClient) -> list[float]:
    samples = []
    start = time.monotonic()
    for i in range(ROUND_TRIPS):
        await asyncio.sleep(max(0.0, start + i * PACE_S - time.monotonic()))  # pacing
        mark = len(client.lines)
        sent = time.perf_counter()
        await client.privmsg(CHANNEL, "!whoami")
        await client.wait_for(from_bot("you are "), within=10, since=mark)
        samples.append(time.perf_counter() - sent)
    return samples


def text_is(text: str) -> Callable[[Line], bool]:
    return lambda ln: ln.command == "PRIVMSG" and ln.param(1) == text


async def _baseline_round_trips(asker: RawIrcClient, echo: RawIrcClient) -> list[float]:
    async def answer() -> None:
        for i in range(BASELINE_ROUND_TRIPS):
            await echo.wait_for(text_is(f"ping {i}"), within=10)
            await echo.privmsg(CHANNEL, f"pong {i}")

    responder = asyncio.create_task(answer())
    samples = []
    try:
        for i in range(BASELINE_ROUND_TRIPS):
            mark = len(asker.lines)
            sent = time.perf_counter()
            await asker.privmsg(CHANNEL, f"ping {i}")
            await asker.wait_for(text_is(f"pong {i}"), 10, mark)
            samples.append(time.perf_counter() - sent)
    finally:
        responder.cancel()
        await asyncio.gather(responder, return_exceptions=True)
    return samples


async def _run(workdir: Path) -> dict[str, Any]:
    flood = {"flood": {"burst": 5, "per_second": 1.0}}
    async with bot_on_inspircd(workdir, default_class=False, extra=flood) as (server, _):
        asker = RawIrcClient(server.fast_port, "asker")
        echo = RawIrcClient(server.fast_port, "echo")
        try:
            for client in (asker, echo):
                await client.connect()
                await client.join(CHANNEL)
            baseline = await _baseline_round_trips(asker, echo)
            bot = await _bot_round_trips(asker)
        finally:
            await asker.close()
            await echo.close()
    return {
        "bench": "chat_roundtrip",
        "what": "!whoami -> reply seen by the asking client, deploybot run on InspIRCd",
        "n": len(bot),
        "p50_ms": millis(percentile(bot, 50)),
        "p99_ms": millis(percentile(bot, 99)),
        "baseline": "raw client -> raw client PRIVMSG round trip, same server",
        "baseline_n": len(baseline),
        "baseline_p50_ms": millis(percentile(baseline, 50)),
        "baseline_p99_ms": millis(percentile(baseline, 99)),
        "ratio_p50": round(percentile(bot, 50) / percentile(baseline, 50), 2),
        "pace_s": PACE_S,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        try:
            result = asyncio.run(_run(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            result = {"bench": "chat_roundtrip", "skipped": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
