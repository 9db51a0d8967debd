"""Hostile webhook deliveries: undecodable tokens, over-deep JSON, long dedupe keys, huge ints.

Each of these gave a 500, a traceback or a wrong dedupe before; now each is one clear answer
and changes nothing it should not.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.config.model import Config
from tests.support.webhookbot import SECRET, RunningBot, config_with, fixture

pytestmark = pytest.mark.faults


@pytest.fixture
def config(demo_config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    return config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET"},
    )


async def raw_request(config: Config, head: bytes, body: bytes) -> int:
    reader, writer = await asyncio.open_connection(config.http.host, config.http.port)
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize("token", [b"caf\xc3\xa9-token", b"\xff\xfe\x80bad", b"\xe2\x82"])
async def test_undecodable_token_gets_401(config: Config, token: bytes) -> None:
    head = (
        b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Event: Pipeline Hook\r\n"
        b"Content-Type: application/json\r\nX-Gitlab-Token: " + token + b"\r\n"
    )
    async with RunningBot(config) as bot:
        assert await raw_request(config, head, b"{}") == 401
        assert await bot.events() == []


async def test_json_nested_5000_deep_gets_400(config: Config) -> None:
    body = b"[" * 5000 + b"]" * 5000
    async with RunningBot(config) as bot:
        status, text = await bot.post(body)
        assert (status, text.strip()) == (400, "JSON nested too deeply")
        status, _ = await bot.post(fixture("pipeline_created.json"))  # still serving
        assert status == 200


async def test_long_dedupe_keys_sharing_a_prefix_do_not_collide(config: Config) -> None:
    prefix = "k" * 300
    async with RunningBot(config) as bot:
        first = fixture("pipeline_created.json")
        second = fixture("pipeline_created.json")
        second["object_attributes"]["id"] += 1
        assert (await bot.post(first, Idempotency_Key=prefix + "-a"))[1].strip() == "stored"
        assert (await bot.post(second, Idempotency_Key=prefix + "-b"))[1].strip() == "stored"
        again = await bot.post(second, Idempotency_Key=prefix + "-b")
        assert again[1].startswith("duplicate")
        assert len(await bot.events()) == 2


async def test_integer_beyond_sqlite_range_is_one_clear_line_not_a_failure(
    config: Config,
) -> None:
    body = fixture("pipeline_created.json")
    body["object_attributes"]["id"] = 2**70
    async with RunningBot(config) as bot:
        assert (await bot.post(body))[0] == 200
        await bot.settle()
        row = (await bot.events())[0]
        assert row["status"] == "malformed"
        assert row["error"] == "object_attributes.id: integer out of range"
        ok = fixture("pipeline_created.json")
        assert (await bot.post(json.dumps(ok).encode()))[0] == 200
        await bot.settle()
        assert (await bot.events())[1]["status"] == "processed"
