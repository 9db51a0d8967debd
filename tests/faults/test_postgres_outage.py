"""Two replicas while PostgreSQL is stopped: health tells the truth, nothing acknowledged is lost.

Before, the standby's `/ready` said 200 ("standby: accepting webhooks") while it answered 503
to every webhook, the leader's `/ready` and both `/metrics` gave 500, and every failed
webhook logged a 130-line traceback. Now: both `/ready` 503 naming the store, `/metrics` 200
with `deploybot_store_up 0`, no webhook answered 200 while the database was down, one log
line per failed webhook (one traceback per kind), and everything GitLab delivered (retrying
what got a 503) is announced once the database is back. A leader whose lease cannot be
renewed leaves (exit 75) as designed; the test restarts it, as Kubernetes would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.botproc import BotProcess, pipeline_hook
from tests.support.ircservers import Ngircd, RawIrcClient, ngircd_fixture, unique  # noqa: F401
from tests.support.postgres import PgServer, running_postgres
from tests.support.replicas import (  # noqa: F401 - `replicas_fixture` is a fixture
    Replicas,
    config_for,
    leader_of,
    replicas_fixture,
    wait_announced,
)

pytestmark = pytest.mark.faults

OUTAGE = 30.0  # seconds PostgreSQL is stopped (the figure)


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PgServer]:
    """A server of this test's own: it is stopped, which would break the session's one."""
    with running_postgres(tmp_path / "pg") as server:
        yield server


async def test_postgres_stopped_both_replicas_say_503_and_nothing_is_lost(
    ngircd: Ngircd, own_postgres: PgServer, replicas: Replicas
) -> None:
    pg = own_postgres
    nick, channel, watcher = unique("pgdown"), unique("#pgdown"), unique("watch")
    client = RawIrcClient(ngircd.port, watcher)
    replicas.clients.append(client)
    await client.connect()
    await client.join(channel)
    config = config_for(ngircd, nick, channel, pg.url)
    first = await replicas.bot(config)
    await leader_of([first], within=30)
    await replicas.bot(config)
    await leader_of(replicas.bots, within=10)
    assert await replicas.bots[1].post_webhook(pipeline_hook(9100, "success")) == 200

    pg.stop()
    down_at = time.monotonic()
    ready: dict[int, list[tuple[int | None, str]]] = {0: [], 1: []}
    metrics: list[int] = []
    store_up: list[float] = []
    unacked: list[int] = []
    acked_during: list[int] = []
    pipeline = 9200
    while time.monotonic() - down_at < OUTAGE:
        for n, bot in enumerate(replicas.bots[:2]):
            if not bot.running:
                continue
            pipeline += 1
            try:
                status = await bot.ready()
                if status[0] is not None:
                    ready[n].append(status)
                metrics.append(await _metrics_status(bot))
                store_up.append(await bot.metric("deploybot_store_up"))
                code = await bot.post_webhook(pipeline_hook(pipeline, "success"))
            except (OSError, TimeoutError, aiohttp.ClientError):
                code = None  # the process was leaving (lease lost: exit 75)
            (acked_during if code == 200 else unacked).append(pipeline)
        await asyncio.sleep(0.5)  # sampling pace during the outage
    pg.start()

    assert ready[0] and ready[1], ready  # both replicas were asked
    assert {s for samples in ready.values() for s, _ in samples} == {503}, ready
    assert all(pg.url.split("@")[1].split("/")[0] in why for s in ready.values() for _, why in s)
    assert set(metrics) == {200} and set(store_up) == {0.0}, (metrics, store_up)
    assert acked_during == []
    for bot in replicas.bots[:2]:  # one line per failed webhook, one traceback per kind
        lines = bot.log_text().splitlines()
        failed = [n for n, line in enumerate(lines) if "could not store a pipeline webhook" in line]
        traced = [n for n in failed if n + 1 < len(lines) and lines[n + 1].startswith("Traceback")]
        assert failed and len(traced) == 1, bot.log_tail()

    # the database is back: a replica that left is started again; GitLab retries the 503s
    for n, bot in enumerate(replicas.bots[:2]):
        if not bot.running:
            replicas.bots[n] = BotProcess(bot.dir, bot.config)
            await replicas.bots[n].start(within=60)
    await leader_of(replicas.bots[:2], within=30)
    for p in unacked:
        assert await replicas.bots[0].post_webhook(pipeline_hook(p, "success")) == 200
    await wait_announced(client, channel, watcher, [9100, *unacked], within=60)


async def _metrics_status(bot: BotProcess) -> int:
    async with bot._session().get(bot.url + "/metrics") as resp:
        await resp.read()
        return resp.status
