"""Benchmark: 2,000 pipeline events for 100 pipelines in 10 s into InspIRCd's default class.

`deploybot run` (a subprocess, the product's default flood settings) sits in one channel on
InspIRCd's flood-limited `main` connect class. GitLab-shaped Pipeline Hooks arrive over
HTTP: each pipeline goes pending -> stages 1..5 (job updates repeat a stage) -> a final
status (success, failed or canceled), 20 deliveries each, interleaved across pipelines, at
200 per second. A raw client in the channel records every line until each pipeline's final
state has arrived (or a deadline passes). Reported: lines sent, final states correct (the
last thing said about each pipeline is its real final status), disconnects of the bot.
Target (issue 4): <= 40 lines, 100% correct, 0 disconnects. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from bench.chat_roundtrip import BOT_NICK, CHANNEL, bot_on_inspircd
from bot.chat.irc.proto import Line
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import RawIrcClient

PIPELINES = 100
STAGES = ("build", "test", "scan", "publish", "deploy")
# (status, stage) per delivery: 20 per pipeline
SEQUENCE = [("pending", 0)] + [("running", s) for s in (1, 1, 1, 2, 2, 2, 3, 3, 3, 3)]
SEQUENCE += [("running", s) for s in (4, 4, 4, 4, 5, 5, 5, 5)] + [("final", 5)]
SPREAD_S = 10.0
IN_FLIGHT = 32
DEADLINE_S = 300.0
FINALS = ("success", "failed", "canceled")
TARGET_LINES = 40
SECRET_ENV = "DEPLOYBOT_BENCH_WEBHOOK_SECRET"
SECRET = "bench-webhook-secret"
# a full line ("builds-api: pipeline 7 on wip/x (abcd1234): success ...") or the short form
# used when a backlog is packed ("builds-api #7 success 7m25s")
ITEM_RE = re.compile(r"(?:pipeline (\d+) on \S+ \(\w+\)[: ]+|^\S+ #(\d+) )(\w+)")


def schedule(seed: int = 4) -> list[dict[str, Any]]:
    """All deliveries in arrival order: round j carries every pipeline's j-th update."""
    rng = random.Random(seed)
    ids = [700000 + n for n in range(PIPELINES)]
    out = []
    for status, stage in SEQUENCE:
        rng.shuffle(ids)
        for pid in ids:
            real = FINALS[pid % 3] if status == "final" else status
            out.append(pipeline_hook(pid, real, stage, stages=STAGES, ref="wip/burst"))
    return out


class Transcript:
    """What the channel saw from the bot: lines, and the items packed into them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.last: dict[int, str] = {}  # pipeline id -> first word of the latest item
        self.unparsed = 0

    def feed(self, line: Line) -> bool:
        """wait_for predicate: record a bot line; True once every pipeline reached a final."""
        if line.command == "PRIVMSG" and line.nick == BOT_NICK:
            self.lines.append(line.param(1))
            for item in line.param(1).split(" | "):
                found = ITEM_RE.search(item)
                if found is None:
                    self.unparsed += 1
                    continue
                self.last[int(found[1] or found[2])] = found[3]
        finals = sum(1 for state in self.last.values() if state in FINALS)
        return finals == PIPELINES


async def _post_all(bot: BotProcess, bodies: list[dict[str, Any]]) -> tuple[float, int]:
    """Deliver at SPREAD_S / len(bodies) intervals; return (seconds taken, non-200 count)."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    failures = 0
    headers = {"X-Gitlab-Token": SECRET}

    async def post(index: int, body: dict[str, Any]) -> None:
        nonlocal failures
        try:
            uuid = {"X-Gitlab-Event-UUID": f"burst-{index}"}
            if await bot.post_webhook(body, headers={**headers, **uuid}) != 200:
                failures += 1
        finally:
            limit.release()

    start = time.monotonic()
    tasks = []
    for index, body in enumerate(bodies):
        await asyncio.sleep(max(0.0, start + index * SPREAD_S / len(bodies) - time.monotonic()))
        await limit.acquire()
        tasks.append(asyncio.create_task(post(index, body)))
    await asyncio.gather(*tasks)
    return time.monotonic() - start, failures


async def _run(workdir: Path) -> dict[str, Any]:
    extra = {
        "components": {"builds-api": {"project": "repos/cloud/toolforge/builds-api",
                                      "room": CHANNEL}},
        "gitlab": {"url": "http://127.0.0.1:9", "webhook_secret_env": SECRET_ENV,
                   "announce_branches": ["wip/*"]},
    }  # fmt: skip
    bodies = schedule()
    async with bot_on_inspircd(
        workdir, default_class=True, extra=extra, env={SECRET_ENV: SECRET}
    ) as (server, bot):
        watcher = RawIrcClient(server.fast_port, "watcher")
        seen = Transcript()
        try:
            await watcher.connect()
            await watcher.join(CHANNEL)
            started = time.monotonic()
            post_s, failures = await _post_all(bot, bodies)
            complete = True
            try:
                await watcher.wait_for(seen.feed, within=DEADLINE_S - post_s)
            except TimeoutError:
                complete = False
            all_final_s = time.monotonic() - started
            bot_quits = [ln for ln in watcher.lines if ln.nick == BOT_NICK and ln.command == "QUIT"]
        finally:
            await watcher.close()
        log = bot.log_text()
    correct = sum(1 for pid, state in seen.last.items() if state == FINALS[pid % 3])
    disconnects = max(0, log.count("registered on") - 1) + len(bot_quits)
    lines = len(seen.lines)
    return {
        "bench": "burst",
        "what": f"{len(bodies)} pipeline events for {PIPELINES} pipelines in {SPREAD_S:.0f} s,"
        " InspIRCd 3 default connect class, default flood settings",
        "events": len(bodies),
        "post_seconds": round(post_s, 2),
        "http_not_200": failures,
        "lines_sent": lines,
        "items_delivered": sum(len(text.split(" | ")) for text in seen.lines),
        "max_line_bytes": max((len(text.encode()) for text in seen.lines), default=0),
        "final_states_correct_pct": round(100 * correct / PIPELINES, 1),
        "complete": complete,
        "seconds_to_all_finals": round(all_final_s, 1),
        "disconnects": disconnects,
        "unparsed_items": seen.unparsed,
        "target": {"lines": TARGET_LINES, "correct_pct": 100, "disconnects": 0},
        "meets_target": lines <= TARGET_LINES and correct == PIPELINES and disconnects == 0,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        try:
            result = asyncio.run(_run(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            result = {"bench": "burst", "skipped": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
