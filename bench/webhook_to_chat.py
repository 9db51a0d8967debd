"""Benchmark: GitLab webhook POST -> announcement seen by a second client on a real InspIRCd.

`deploybot run` (a subprocess) sits in a channel on InspIRCd's default (flood-limited)
connect class; each POST is a new pipeline's Pipeline Hook, one per second (within the bot's
flood budget, so no line waits for a token), and a raw client in the channel times the
announcement from the start of the POST. Target (issue 4): p50 <= 50 ms. The HTTP ack time
of the same requests is reported beside it. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.chat_roundtrip import BOT_NICK, CHANNEL, bot_on_inspircd, millis, percentile
from bot.chat.irc.proto import Line
from tests.support.botproc import pipeline_hook
from tests.support.ircservers import RawIrcClient

POSTS = 30
PACE_S = 1.0
TARGET_P50_MS = 50.0
PROJECT = "repos/cloud/toolforge/builds-api"


def announces(pipeline: int) -> Callable[[Line], bool]:
    """A RawIrcClient.wait_for predicate: the bot's line about this pipeline."""
    return lambda ln: (
        ln.command == "PRIVMSG" and ln.nick == BOT_NICK and f"pipeline {pipeline} " in ln.param(1)
    )


async def _run(workdir: Path) -> dict[str, Any]:
    extra = {
        "flood": {"burst": 5, "per_second": 1.0},
        "components": {"builds-api": {"project": PROJECT, "room": CHANNEL}},
    }
    async with bot_on_inspircd(workdir, default_class=True, extra=extra) as (server, bot):
        watcher = RawIrcClient(server.fast_port, "watcher")
        try:
            await watcher.connect()
            await watcher.join(CHANNEL)
            to_chat: list[float] = []
            acks: list[float] = []
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
    p50 = millis(percentile(to_chat, 50))
    return {
        "bench": "webhook_to_chat",
        "what": "POST /webhooks/gitlab -> pipeline line seen by a second IRC client",
        "server": "InspIRCd 3, default connect class",
        "n": len(to_chat),
        "p50_ms": p50,
        "p99_ms": millis(percentile(to_chat, 99)),
        "ack_p50_ms": millis(percentile(acks, 50)),
        "ack_p99_ms": millis(percentile(acks, 99)),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": p50 <= TARGET_P50_MS,
        "pace_s": PACE_S,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-webhook-chat-") as tmp:
        try:
            result = asyncio.run(_run(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            result = {"bench": "webhook_to_chat", "skipped": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
