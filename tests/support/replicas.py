"""The bed of the replica tests: `deploybot run` processes on one PostgreSQL and one IRC
server, the leader among them, and what a watcher in the channel saw."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.botproc import BotProcess
from tests.support.ircservers import Ngircd, RawIrcClient
from tests.support.tcpproxy import TcpProxy

LEASE = 3.0
PROJECT = "repos/cloud/toolforge/builds-api"


class Replicas:
    """Bots, clients and proxies a test started, all stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bots: list[BotProcess] = []
        self.clients: list[RawIrcClient] = []
        self.proxies: list[TcpProxy] = []
        self.count = 0

    async def bot(self, config: dict[str, Any]) -> BotProcess:
        self.count += 1
        bot = BotProcess(self.tmp / f"replica{self.count}", config)
        self.bots.append(bot)
        await bot.start()
        return bot

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for bot in self.bots:
            if bot.running:
                await bot.kill()
        for proxy in self.proxies:
            await proxy.close()


@pytest.fixture(name="replicas")
async def replicas_fixture(tmp_path: Path) -> AsyncIterator[Replicas]:
    things = Replicas(tmp_path)
    try:
        yield things
    finally:
        await things.close()


def config_for(server: Ngircd, nick: str, channel: str, store_url: str) -> dict[str, Any]:
    return {
        "bot": {"nick": nick},
        "chat": {
            "default_room": channel,
            "irc": {"host": "127.0.0.1", "port": server.port, "tls": False, "channels": [channel]},
        },
        "flood": {"burst": 5, "per_second": 1.0},
        "components": {"builds-api": {"project": PROJECT, "room": channel}},
        "monitors": {"enabled": False},
        "store": {"url": store_url},
        "leader_election": {"backend": "postgres", "lease_seconds": LEASE},
    }


async def leader_of(bots: list[BotProcess], within: float) -> BotProcess:
    """The one running bot whose metric says it leads (all others say 0)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        running = [b for b in bots if b.running]
        values = [await b.metric("deploybot_leader") for b in running]
        if sorted(values) == [0.0] * (len(values) - 1) + [1.0]:
            return running[values.index(1.0)]
        await asyncio.sleep(0.1)  # polling other processes' /metrics
    raise TimeoutError(f"no single leader within {within}s")


def announced(client: RawIrcClient, channel: str, observer: str) -> list[str]:
    return [
        ln.param(1)
        for ln in client.lines
        if ln.command == "PRIVMSG"
        and ln.param(0).lower() == channel.lower()
        and (ln.nick or "").lower() != observer.lower()
    ]


def mentions(lines: list[str], pipeline: int) -> int:
    """How often `pipeline` was announced (full form "pipeline N" or packed "#N")."""
    return sum(len(re.findall(rf"(?:pipeline |#){pipeline}\b", ln)) for ln in lines)


async def wait_announced(
    client: RawIrcClient, channel: str, observer: str, pipelines: list[int], within: float
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        lines = announced(client, channel, observer)
        if all(mentions(lines, p) for p in pipelines):
            return
        await asyncio.sleep(0.1)  # the IRC client reads on its own task
    missing = [p for p in pipelines if not mentions(announced(client, channel, observer), p)]
    raise TimeoutError(f"pipelines {missing} not announced within {within}s")
