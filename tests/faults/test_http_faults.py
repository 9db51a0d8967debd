"""Slow and many HTTP clients: bounded connections, head/body timeouts, bounded logging.

Before, half-sent requests stayed open forever and, past the file descriptor limit, starved
`/healthz` and the webhooks while asyncio logged "Too many open files" without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
import yaml

from bot.config.model import Config
from bot.core.logbudget import LogBudget
from tests.support.webhookbot import SECRET, RunningBot, config_with

pytestmark = pytest.mark.faults

HEAD = b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture
def config(demo_config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    return config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET"},
        http={"listen": config_listen(demo_config_path), "max_connections": 20,
              "header_timeout": 1.0, "body_timeout": 1.0},
    )  # fmt: skip


def config_listen(path: Path) -> str:
    listen: str = yaml.safe_load(path.read_text())["http"]["listen"]
    return listen


async def get(config: Config, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(config.http.host, config.http.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_slow_heads_cannot_lock_out_healthz_and_are_cut(config: Config) -> None:
    async with RunningBot(config) as bot:
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(60):  # three times the cap of heads that never end
                reader, writer = await asyncio.open_connection(config.http.host, config.http.port)
                writer.write(HEAD)
                await writer.drain()
                slow.append((reader, writer))
            # each new connection took the place of the oldest slow head
            for _ in range(5):
                assert (await get(config, "/healthz")).startswith(b"HTTP/1.1 200 ")
            guard = bot.app.http_guard
            assert guard is not None and guard.open <= 20
            for reader, _ in slow:  # every slow head is closed (EOF), none answered
                assert await asyncio.wait_for(reader.read(), 10) == b""
            assert guard.open == 0 and guard.evicted >= 40
        finally:
            for _, writer in slow:
                writer.close()


async def test_slow_webhook_body_gets_408(config: Config) -> None:
    async with RunningBot(config) as bot:
        reader, writer = await asyncio.open_connection(config.http.host, config.http.port)
        writer.write(
            HEAD
            + f"X-Gitlab-Token: {SECRET}\r\nX-Gitlab-Event: Pipeline Hook\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.startswith(b"HTTP/1.1 408 ")
        assert await bot.events() == []


def test_log_budget_bounds_repeats_per_kind_and_says_how_many_were_dropped() -> None:
    now = [0.0]
    budget = LogBudget(burst=5, per=60.0, clock=lambda: now[0])
    records = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(budget)
    logger = logging.getLogger("test.logbudget")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(10_000):
            logger.error("socket.accept() out of system resource: %s", n)
        logger.error("another kind")
        now[0] = 61.0
        logger.error("socket.accept() out of system resource: %s", "again")
    finally:
        logger.removeHandler(handler)
        with contextlib.suppress(Exception):
            logger.propagate = True
    texts = [r.getMessage() for r in records]
    assert len(texts) == 7
    assert texts[5] == "another kind"
    assert texts[6] == (
        "socket.accept() out of system resource: again [9995 similar messages suppressed]"
    )
