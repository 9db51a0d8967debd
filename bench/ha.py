"""Benchmark: high availability on PostgreSQL.

- `ha_ingest_postgres`: webhook ingest (verified, deduped, persisted in PostgreSQL, acked)
  by the real App, as a ratio to the bare aiohttp handler measured in the same run (the
  load generator and the bare handler are `bench.ingest`'s).
- `ha_failover`: two real `deploybot run` replicas on one PostgreSQL and one IRC server
  (ngircd), `kill -9` of the leader, 10 trials: seconds until the survivor's
  `deploybot_leader` is 1 and until a webhook posted to it right after the kill is seen in
  the channel (p50, max), with lines lost and repeated counted.

Everything runs on loopback, bounded in count and time, and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest import (
    CONCURRENCY,
    SECRET,
    THROUGHPUT_REQUESTS,
    _bare_server,
    _free_port,
    _load,
)
from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import Ngircd, RawIrcClient
from tests.support.postgres import running_postgres

TRIALS = 10
LEASE = 3.0
PROJECT = "repos/cloud/toolforge/builds-api"


async def _ingest(url: str) -> dict[str, Any]:
    from bot.app import App
    from bot.chat.console import ConsoleAdapter
    from bot.config.model import parse_config

    os.environ["DEPLOYBOT_BENCH_WEBHOOK_SECRET"] = SECRET
    async with _bare_server() as bare_url:
        bare = await _load(bare_url, "closed", THROUGHPUT_REQUESTS, CONCURRENCY)
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({
            "bot": {"state_dir": tmp},
            "http": {"listen": f"127.0.0.1:{port}"},
            "chat": {"default_room": "#bench", "console": {}},
            "gitlab": {"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_BENCH_WEBHOOK_SECRET"},
            "components": {"builds-api": {"project": PROJECT}},
            "store": {"url": url},
        })  # fmt: skip
        read_fd, write_fd = os.pipe()
        stdin = os.fdopen(read_fd)
        app = App(config, console=ConsoleAdapter(stdin, io.StringIO(), user="bench"))
        await app.start()
        try:
            bot = await _load(f"http://127.0.0.1:{port}/webhooks/gitlab", "closed",
                              THROUGHPUT_REQUESTS, CONCURRENCY)  # fmt: skip
            row = await app.store.fetchone("SELECT count(*) FROM events")
        finally:
            os.close(write_fd)
            await app.stop()
            stdin.close()
    bare_rps, bot_rps = bare["requests"] / bare["seconds"], bot["requests"] / bot["seconds"]
    return {
        "bench": "ha_ingest_postgres",
        "what": f"verified+deduped+persisted(PostgreSQL)+acked Pipeline Hooks, {CONCURRENCY} concurrent",
        "bot_per_s": round(bot_rps, 1),
        "bare_aiohttp_per_s": round(bare_rps, 1),
        "ratio_to_baseline": round(bot_rps / bare_rps, 2),
        "requests": bot["requests"],
        "statuses": bot["statuses"],
        "events_stored": int(row[0]) if row else 0,
    }


def _mentions(lines: list[str], pipeline: int) -> int:
    return sum(len(re.findall(rf"(?:pipeline |#){pipeline}\b", ln)) for ln in lines)


async def _single_leader(bots: list[BotProcess], within: float) -> BotProcess:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        running = [b for b in bots if b.running]
        values = [await b.metric("deploybot_leader") for b in running]
        if sorted(values) == [0.0] * (len(values) - 1) + [1.0]:
            return running[values.index(1.0)]
        await asyncio.sleep(0.05)
    raise TimeoutError("no single leader")


async def _failover(tmp: Path, url: str, irc: Ngircd) -> dict[str, Any]:
    nick, channel, watcher = "habench", "#habench", "hawatch"
    client = RawIrcClient(irc.port, watcher)
    await client.connect()
    await client.join(channel)
    config = {
        "bot": {"nick": nick},
        "chat": {"default_room": channel,
                 "irc": {"host": "127.0.0.1", "port": irc.port, "tls": False, "channels": [channel]}},
        "flood": {"burst": 5, "per_second": 1.0},
        "components": {"builds-api": {"project": PROJECT, "room": channel}},
        "monitors": {"enabled": False},
        "store": {"url": url},
        "leader_election": {"backend": "postgres", "lease_seconds": LEASE},
    }  # fmt: skip
    bots: list[BotProcess] = []

    async def replica() -> BotProcess:
        bot = BotProcess(tmp / f"replica{len(bots)}", config)
        bots.append(bot)
        await bot.start()
        return bot

    def lines() -> list[str]:
        return [ln.param(1) for ln in client.lines
                if ln.command == "PRIVMSG" and ln.param(0) == channel and ln.nick != watcher]  # fmt: skip

    to_leader: list[float] = []
    to_line: list[float] = []
    try:
        await replica()
        leader = await _single_leader(bots, 30)
        standby = await replica()
        for trial in range(TRIALS):
            pipeline = 9000 + trial
            await leader.kill()
            killed = time.monotonic()
            assert await standby.post_webhook(pipeline_hook(pipeline, "success")) == 200
            leader = await _single_leader(bots, LEASE + 25)
            to_leader.append(time.monotonic() - killed)
            while not _mentions(lines(), pipeline):
                if time.monotonic() - killed > LEASE + 25:
                    raise TimeoutError(f"pipeline {pipeline} not announced")
                await asyncio.sleep(0.05)
            to_line.append(time.monotonic() - killed)
            standby = await replica()
        seen = lines()
        counts = [_mentions(seen, 9000 + t) for t in range(TRIALS)]
    finally:
        for bot in bots:
            if bot.running:
                await bot.kill()
        await client.close()
    return {
        "bench": "ha_failover",
        "what": f"kill -9 of the leader, {TRIALS} trials, lease_seconds {LEASE:g}",
        "leader_again_p50_s": round(statistics.median(to_leader), 2),
        "leader_again_max_s": round(max(to_leader), 2),
        "announced_p50_s": round(statistics.median(to_line), 2),
        "announced_max_s": round(max(to_line), 2),
        "bound_s": LEASE + 25,
        "events_lost": sum(1 for c in counts if c == 0),
        "lines_repeated": sum(max(0, c - 1) for c in counts),
    }


async def _run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.chmod(base, 0o755)
        with running_postgres(base / "pg") as pg:
            pg.create_database("ingest")
            pg.create_database("failover")
            ingest = await _ingest(pg.url_for("ingest"))
            irc = Ngircd(base / "irc")
            irc.dir.mkdir()
            irc.start()
            try:
                failover = await _failover(base, pg.url_for("failover"), irc)
            finally:
                irc.kill()
    return [ingest, failover]


def main() -> None:
    for figure in asyncio.run(_run()):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
