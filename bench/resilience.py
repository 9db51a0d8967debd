"""Benchmark: a 500-event burst for 50 pipelines on a stock ngircd, with and without a slow,
silent or rate-limiting GitLab behind the artifact look-ups (issue "Resilience").

`deploybot run` (a subprocess) sits in one channel on ngircd. Each pipeline gets 10
deliveries (pending, stage updates, success) on its own commit, interleaved, posted as fast
as 32 concurrent clients manage. A raw client in the channel records what the bot says
until every pipeline's final state was seen. Figures: seconds from the last webhook ack
until every final is visible, the announcement lag per pipeline (from the ack of its final
delivery to its final state seen in the channel: p50, p99, max), lines sent, whether ngircd
disconnected the bot, and the look-up lines (artifacts, or why not): how many, when after
the last ack, and what they said (the commit left out).

Runs:
- `slow_gitlab`: pipelines on `main`, so each success triggers an artifact look-up, against
  a GitLab that answers every request after 2 s (target: all finals within 15 s).
- `silent_gitlab`: the same against a GitLab that accepts connections and never answers.
- `gitlab_429`: the same against the GitLab fake answering every request with 429 and
  `Retry-After: 3600` (retries wait at most 30 s; each look-up must give up within
  `lookup_timeout`, saying why). These two use `lookup_timeout: 10` so that the 50 look-ups
  (8 at a time) end within the bench's deadline.
- `no_lookups`: the same burst on a branch without look-ups (target: within 5 s).
All with the product's default flood settings (no `flood` or `chat.irc.flood` in the
config: the bot picks ngircd's line budget itself). Prints one JSON object per run.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.ircservers import Ngircd, RawIrcClient, free_port

PIPELINES = 50
STAGES = ("build", "test", "publish")
SEQUENCE = [("pending", 0)] + [("running", s) for s in (1, 1, 1, 2, 2, 2, 3, 3)]
SEQUENCE += [("success", 3)]
IN_FLIGHT = 32
DEADLINE_S = 120.0
CHANNEL = "#burst"
BOT_NICK = "burstbot"
SECRET_ENV = "DEPLOYBOT_BENCH_WEBHOOK_SECRET"
SECRET = "bench-webhook-secret"
ITEM_RE = re.compile(r"(?:pipeline (\d+) on .*?: |^\S+ #(\d+) )(\w+)")
LOOKUP_RE = re.compile(r"^builds-api (\w+): (.*)$")  # "builds-api <sha|version>: ..."


def schedule(ref: str, seed: int = 14) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    ids = [810000 + n for n in range(PIPELINES)]
    out = []
    for status, stage in SEQUENCE:
        rng.shuffle(ids)
        for pid in ids:
            body = pipeline_hook(pid, status, stage, stages=STAGES, ref=ref)
            body["object_attributes"]["sha"] = body["commit"]["id"] = f"{pid:040x}"
            out.append(body)
    return out


@asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """`handler` answering every path on a loopback port; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def slow_gitlab(delay: float) -> AsyncIterator[str]:
    """Every request answered after `delay` s: empty lists, no job logs."""

    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        if request.path.endswith("/trace"):
            return web.Response(status=404, text='{"message": "404 Not found"}')
        headers = {"X-Total": "0", "X-Total-Pages": "1", "X-Page": "1", "X-Per-Page": "100"}
        return web.json_response([], headers=headers)

    async with serving(handler) as url:
        yield url


async def post_all(bot: BotProcess, bodies: list[dict[str, Any]]) -> tuple[int, dict[int, float]]:
    """Post every body (32 at a time); return the non-200 count and, per pipeline, when
    its final delivery was acknowledged (time.monotonic())."""
    limit = asyncio.Semaphore(IN_FLIGHT)
    failures = 0
    acks: dict[int, float] = {}

    async def post(index: int, body: dict[str, Any]) -> None:
        nonlocal failures
        async with limit:
            headers = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event-UUID": f"res-{index}"}
            if await bot.post_webhook(body, headers=headers) != 200:
                failures += 1
            elif body["object_attributes"]["status"] == "success":
                acks[int(body["object_attributes"]["id"])] = time.monotonic()

    await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
    return failures, acks


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (q in 0..1), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 2)


@asynccontextmanager
async def silent_gitlab() -> AsyncIterator[str]:
    """Accepts every request and answers none (until the bench ends)."""
    released = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=503, text="gone")

    async with serving(handler) as url:
        try:
            yield url
        finally:
            released.set()  # held requests end before the server stops


@asynccontextmanager
async def rate_limiting_gitlab() -> AsyncIterator[str]:
    """The GitLab fake answering every API request with 429 and Retry-After: 3600."""
    async with FakeGitLab() as gl:
        gl.fail_next("GET", "/", 429, {"Retry-After": "3600"}, times=10**6)
        yield gl.url


async def one_run(workdir: Path, name: str, ref: str, flood: dict[str, Any] | None,
                  gitlab_url: str, lookup_timeout: float = 60) -> dict[str, Any]:  # fmt: skip
    server = Ngircd(workdir / "ngircd")
    server.dir.mkdir(parents=True)
    await asyncio.to_thread(server.start)
    irc: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "tls": False,
                           "channels": [CHANNEL]}  # fmt: skip
    if flood:
        irc["flood"] = flood
    config: dict[str, Any] = {
        "bot": {"nick": BOT_NICK},
        "chat": {"default_room": CHANNEL, "irc": irc},
        "monitors": {"enabled": False},
        "components": {"builds-api": {"project": "repos/cloud/toolforge/builds-api",
                                      "room": CHANNEL}},
        "gitlab": {"url": gitlab_url, "webhook_secret_env": SECRET_ENV, "mr_notes": False,
                   "announce_branches": ["wip/*"], "lookup_timeout": lookup_timeout},
    }  # fmt: skip
    if flood:
        config["flood"] = flood
    bot = BotProcess(workdir / "bot", config, {SECRET_ENV: SECRET})
    watcher = RawIrcClient(server.port, "watcher")
    last: dict[int, str] = {}
    final_seen: dict[int, float] = {}
    lookups: list[tuple[float, str]] = []  # (when seen, text without the commit)
    lines: list[str] = []
    looks_up = ref == "main"

    def feed(line: Any) -> bool:
        if line.command == "PRIVMSG" and line.nick == BOT_NICK:
            lines.append(line.param(1))
            for item in line.param(1).split(" | "):
                found = ITEM_RE.search(item)
                if found:
                    pid = int(found[1] or found[2])
                    last[pid] = found[3]
                    if found[3] == "success":
                        final_seen.setdefault(pid, time.monotonic())
                elif lookup := LOOKUP_RE.search(item):
                    text = lookup[2].replace(lookup[1], "<sha>")
                    lookups.append((time.monotonic(), re.sub(r"\b[0-9a-f]{8}\b", "<sha>", text)))
        finals = sum(1 for s in last.values() if s == "success")
        return finals == PIPELINES and (not looks_up or len(lookups) >= PIPELINES)

    try:
        await bot.start()
        await watcher.connect()
        await watcher.join(CHANNEL)
        started = time.monotonic()
        failures, acks = await post_all(bot, schedule(ref))
        acked = time.monotonic()
        try:
            await watcher.wait_for(feed, within=DEADLINE_S)
        except TimeoutError:
            pass
        finals_at = max(final_seen.values()) if len(final_seen) == PIPELINES else None
        kills = [ln for ln in watcher.lines if ln.nick == BOT_NICK and ln.command == "QUIT"]
    finally:
        await watcher.close()
        await bot.stop()
        server.kill()
    complete = finals_at is not None
    lags = [final_seen[p] - acks[p] for p in final_seen if p in acks]
    said: dict[str, int] = {}
    for _, text in lookups:
        said[text] = said.get(text, 0) + 1
    return {
        "bench": f"resilience.{name}",
        "events": PIPELINES * len(SEQUENCE),
        "pipelines": PIPELINES,
        "http_not_200": failures,
        "post_seconds": round(acked - started, 2),
        "seconds_after_last_ack_to_all_finals": round(finals_at - acked, 2) if finals_at else None,
        "announcement_lag_s": {
            "p50": quantile(lags, 0.5),
            "p99": quantile(lags, 0.99),
            "max": quantile(lags, 1.0),
        },  # fmt: skip
        "finals_seen": len(final_seen),
        "lines_sent": len(lines),
        "bot_disconnected": len(kills),
        "flood": flood or "defaults",
        **(
            {
                "lookup_timeout": lookup_timeout,
                "lookup_lines": len(lookups),
                "lookup_lines_after_last_ack_s": {
                    "first": quantile([t - acked for t, _ in lookups], 0.0),
                    "p50": quantile([t - acked for t, _ in lookups], 0.5),
                    "last": quantile([t - acked for t, _ in lookups], 1.0),
                },
                "lookup_lines_said": said,
            }
            if looks_up
            else {}
        ),
        **(
            {
                "missing": sorted(
                    set(range(810000, 810000 + PIPELINES))
                    - {p for p, s in last.items() if s == "success"}
                ),
                "lines": lines,
            }
            if not complete
            else {}
        ),
    }


async def run_all(workdir: Path) -> list[dict[str, Any]]:
    results = []
    async with slow_gitlab(2.0) as url:
        results.append(await one_run(workdir / "a", "slow_gitlab", "main", None, url))
    async with silent_gitlab() as url:
        results.append(await one_run(workdir / "s", "silent_gitlab", "main", None, url, 10))
    async with rate_limiting_gitlab() as url:
        results.append(await one_run(workdir / "r", "gitlab_429", "main", None, url, 10))
    results.append(
        await one_run(workdir / "b", "no_lookups", "wip/burst", None, "http://127.0.0.1:9")
    )
    results[0]["target_s"], results[3]["target_s"] = 15, 5
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-resilience-") as tmp:
        try:
            results = asyncio.run(run_all(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            results = [{"bench": "resilience", "skipped": str(exc)}]
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
