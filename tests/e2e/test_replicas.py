"""Two real `deploybot run` replicas on one PostgreSQL and one IRC server (ngircd).

Exactly one leads (`deploybot_leader`); a webhook sent to the standby is announced by the
leader; after `kill -9` of the leader the survivor leads, joins and announces what arrived
meanwhile; a leader cut off from the database (its own TCP proxy frozen) stops speaking
before its lease can pass.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.botproc import pipeline_hook
from tests.support.fakes.kube import FakeKube
from tests.support.ircservers import Ngircd, RawIrcClient, ngircd_fixture, unique  # noqa: F401
from tests.support.postgres import PgServer
from tests.support.replicas import (  # noqa: F401 - `replicas` is a fixture
    LEASE,
    PROJECT,
    Replicas,
    announced,
    config_for,
    leader_of,
    mentions,
    replicas_fixture,
    wait_announced,
)
from tests.support.tcpproxy import TcpProxy


async def test_one_leader_speaks_and_the_survivor_of_kill_9_announces_everything(
    ngircd: Ngircd, pg_server: PgServer, store_url: str, replicas: Replicas
) -> None:
    del store_url  # a fresh database: `store_url` made it on `pg_server`
    nick, channel = unique("habot"), unique("#ha")
    watcher = unique("watch")
    client = RawIrcClient(ngircd.port, watcher)
    replicas.clients.append(client)
    await client.connect()
    await client.join(channel)
    url = pg_server.url_for(f"t_ha_{nick}")
    pg_server.create_database(f"t_ha_{nick}")
    config = config_for(ngircd, nick, channel, url)
    first = await replicas.bot(config)
    await leader_of([first], within=30)
    second = await replicas.bot(config)
    leader = await leader_of(replicas.bots, within=10)
    standby = second if leader is first else first
    assert leader is first and await standby.metric("deploybot_leader") == 0

    # a webhook delivered to the standby is stored there and announced by the leader
    assert await standby.post_webhook(pipeline_hook(8101, "success")) == 200
    await wait_announced(client, channel, watcher, [8101], within=20)

    pipeline = 8200
    for trial in range(2):
        await leader.kill()
        killed_at = time.monotonic()
        sent = []
        for _ in range(3):  # delivered to the survivor while nobody leads
            pipeline += 1
            assert await standby.post_webhook(pipeline_hook(pipeline, "success")) == 200
            sent.append(pipeline)
        new_leader = await leader_of(replicas.bots, within=LEASE + 25)
        assert new_leader is standby
        await wait_announced(client, channel, watcher, sent, within=LEASE + 25)
        assert time.monotonic() - killed_at < LEASE + 25, f"trial {trial}"
        leader, standby = new_leader, await replicas.bot(config)  # the killed pod comes back
        assert await standby.metric("deploybot_leader") == 0

    lines = announced(client, channel, watcher)
    counts = {p: mentions(lines, p) for p in [8101, *range(8201, pipeline + 1)]}
    assert all(n >= 1 for n in counts.values()), counts  # nothing lost
    assert sum(counts.values()) - len(counts) <= 2, counts  # at most one repeat per crash


async def test_a_leader_cut_off_from_the_database_stops_speaking_before_its_lease_ends(
    ngircd: Ngircd, pg_server: PgServer, replicas: Replicas
) -> None:
    nick, channel = unique("fence"), unique("#fence")
    database = f"t_fence_{nick}"
    pg_server.create_database(database)
    url = pg_server.url_for(database)
    proxy = TcpProxy(pg_server.port)
    replicas.proxies.append(proxy)
    await proxy.start()
    cut = await replicas.bot(config_for(ngircd, nick, channel, proxy.url_for(url)))
    await leader_of([cut], within=30)
    other = await replicas.bot(config_for(ngircd, nick, channel, url))
    assert await leader_of(replicas.bots, within=10) is cut

    proxy.freeze()
    frozen_at = time.monotonic()
    # the cut-off leader fences itself and leaves; only then can the other one lead
    deadline = frozen_at + LEASE + 10
    while time.monotonic() < deadline:
        if not cut.running or await other.metric("deploybot_leader") == 1:
            break
        await asyncio.sleep(0.05)  # polling the other process
    assert not cut.running or await cut.metric("deploybot_leader") == 0
    fenced_at = time.monotonic()
    stopped = await cut.wait_log(r"(\S+ \S+) ERROR deploybot.leader: .*stopped acting", within=1)
    assert fenced_at - frozen_at < LEASE + 1
    assert await leader_of([other], within=LEASE + 10) is other
    elected = await other.wait_log(r"(\S+ \S+) INFO deploybot.leader: leader: elected", within=1)
    assert stopped[1] < elected[1]  # the old leader fell silent before the new one took over
    assert cut.returncode == 75  # it left, to come back as a standby


async def test_with_a_kubernetes_lease_one_leads_and_the_survivor_takes_over(
    ngircd: Ngircd, pg_server: PgServer, replicas: Replicas, tmp_path: Path
) -> None:
    nick, channel = unique("kubebot"), unique("#kube")
    database = f"t_kube_{nick}"
    pg_server.create_database(database)
    async with FakeKube() as kube:
        config = config_for(ngircd, nick, channel, pg_server.url_for(database))
        config["leader_election"] = {
            "backend": "kubernetes", "lease_seconds": LEASE, "namespace": "deploybot",
            "kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")),
        }  # fmt: skip
        first = await replicas.bot(config)
        assert await leader_of([first], within=30) is first
        second = await replicas.bot(config)
        assert await leader_of(replicas.bots, within=10) is first
        assert await second.metric("deploybot_leader") == 0

        await first.kill()
        assert await second.post_webhook(pipeline_hook(8301, "success")) == 200
        assert await leader_of(replicas.bots, within=LEASE + 25) is second
        client = RawIrcClient(ngircd.port, unique("kwatch"))
        replicas.clients.append(client)
        await client.connect()
        await client.join(channel)
        await wait_announced(client, channel, client.nick, [8301], within=LEASE + 25)
        lease = kube.lease("deploybot", "deploybot")
        assert lease is not None
        assert lease["spec"]["holderIdentity"].endswith(f"/{second.pid}")
        assert lease["spec"]["leaseTransitions"] == 2  # first, then the survivor
        await second.kill()  # before the fake Kubernetes API goes away


async def test_a_graceful_stop_of_either_replica_exits_cleanly_and_hands_over(
    ngircd: Ngircd, pg_server: PgServer, replicas: Replicas
) -> None:
    nick, channel = unique("calm"), unique("#calm")
    database = f"t_calm_{nick}"
    pg_server.create_database(database)
    config = config_for(ngircd, nick, channel, pg_server.url_for(database))
    first = await replicas.bot(config)
    assert await leader_of([first], within=30) is first
    standby = await replicas.bot(config)
    assert await standby.stop() == 0  # SIGTERM: a standby has nothing to flush
    second = await replicas.bot(config)
    assert await first.stop() == 0  # the leader flushes, resigns, and leaves
    assert await leader_of([second], within=LEASE + 10) is second
    assert "leader lease not released" not in first.log_text()
