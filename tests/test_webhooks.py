"""POST /webhooks/gitlab on the real app: verification, limits, dedupe, durability, metrics.

The bot runs in-process with the console adapter (its stdout is what reaches chat) and the
tests speak HTTP to its real port.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.core.config import Config, parse_config
from bot.core.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"
SECRET = "whsec-0123456789abcdef"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def config_with(path: Path, **sections: Any) -> Config:
    """The demo config at `path` with top-level sections replaced or added."""
    data = yaml.safe_load(path.read_text())
    data["monitors"] = {"enabled": False}  # no periodic checks: only webhook lines reach chat
    data.update(sections)
    return parse_config(data)


class RunningBot:
    """The real App with a console whose stdin stays open until the test ends."""

    def __init__(self, config: Config) -> None:
        self.config = config
        read_fd, self._write_fd = os.pipe()
        self._stdin = os.fdopen(read_fd)
        self.stdout = io.StringIO()
        self.app = App(config, console=ConsoleAdapter(self._stdin, self.stdout, user="tester"))
        self.base = f"http://{config.http.listen}"
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RunningBot:
        await self.app.start()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        os.close(self._write_fd)  # EOF on the console
        await self.app.stop()
        self._stdin.close()

    async def post(
        self,
        body: dict[str, Any] | bytes,
        kind: str = "Pipeline Hook",
        token: str | None = SECRET,
        **headers: str,
    ) -> tuple[int, str]:
        assert self.session is not None
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-Gitlab-Event": kind}
        if token is not None:
            sent["X-Gitlab-Token"] = token
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        async with self.session.post(self.base + "/webhooks/gitlab", data=data, headers=sent) as r:
            return r.status, await r.text()

    async def settle(self) -> None:
        """Until every stored event was processed and every queued line printed."""
        assert await self.app.events.wait_idle(10), "event worker did not finish"
        assert await self.app.services.outbox.flush(10), "outbox did not drain"

    def lines(self) -> list[str]:
        return self.stdout.getvalue().splitlines()

    async def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if re.search(pattern, line):
                    return line
            await asyncio.sleep(0.01)
        raise AssertionError(f"no line matching {pattern!r}; got {self.lines()}")

    async def events(self) -> list[sqlite3.Row]:
        return await self.app.store.fetchall("SELECT * FROM events ORDER BY id")

    async def metrics(self) -> str:
        assert self.session is not None
        async with self.session.get(self.base + "/metrics") as r:
            return await r.text()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    return "DEPLOYBOT_TEST_WEBHOOK_SECRET"


@pytest.fixture
def config(demo_config_path: Path, secret_env: str) -> Config:
    # a GitLab URL nobody listens on: these tests never need the API
    return config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": secret_env},
    )


async def test_forged_or_missing_token_gets_401_and_nothing_is_stored(config: Config) -> None:
    async with RunningBot(config) as bot:
        assert (await bot.post(fixture("pipeline_created.json"), token="forged"))[0] == 401
        assert (await bot.post(fixture("pipeline_created.json"), token=None))[0] == 401
        assert await bot.events() == []
        status, _ = await bot.post(fixture("pipeline_created.json"))
        assert status == 200
        assert len(await bot.events()) == 1
        await bot.settle()
    assert len([line for line in bot.lines() if "731205" in line]) == 1


async def raw_post(config: Config, body: bytes, chunked: bool) -> int:
    """POST over a plain socket, like GitLab's client: send everything, read the status, close."""
    host, port = config.http.host, config.http.port
    reader, writer = await asyncio.open_connection(host, port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    writer.write(
        f"POST /webhooks/gitlab HTTP/1.1\r\nHost: {host}\r\nX-Gitlab-Event: Pipeline Hook\r\n"
        f"X-Gitlab-Token: {SECRET}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    try:
        if chunked:
            for start in range(0, len(body), 1 << 20):
                chunk = body[start : start + (1 << 20)]
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(body)
        await writer.drain()
    except ConnectionError:
        pass  # the server may answer and close before the whole body went out
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_ten_megabyte_body_gets_413(config: Config, chunked: bool) -> None:
    body = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    async with RunningBot(config) as bot:
        assert await raw_post(config, body, chunked) == 413
        assert await bot.events() == []
        assert metric(await bot.metrics(), "deploybot_webhook_rejected_total",
                      reason="too_large") == 1  # fmt: skip


async def test_garbage_gets_400(config: Config) -> None:
    async with RunningBot(config) as bot:
        assert (await bot.post(b"\x00\xffnot json {"))[0] == 400
        assert (await bot.post(b'{"object_kind": "pipeline"'))[0] == 400
        assert await bot.events() == []
        assert (
            metric(await bot.metrics(), "deploybot_webhook_rejected_total", reason="bad_json") == 2
        )


async def test_unknown_kind_is_answered_200_counted_and_ignored(config: Config) -> None:
    async with RunningBot(config) as bot:
        status, _ = await bot.post({"object_kind": "note", "note": "hi"}, kind="Note Hook")
        assert status == 200
        assert await bot.events() == []
        text = await bot.metrics()
        assert metric(text, "deploybot_webhook_events_received_total", kind="unknown") == 1
        assert metric(text, "deploybot_webhook_events_processed_total",
                      kind="unknown", result="ignored") == 1  # fmt: skip


async def test_duplicate_delivery_is_stored_and_announced_once(config: Config) -> None:
    body = fixture("pipeline_running_stage2.json")
    async with RunningBot(config) as bot:
        for _ in range(3):
            status, _ = await bot.post(body, X_Gitlab_Event_UUID="7d5c1f0e-uuid-1")
            assert status == 200
        # Idempotency-Key wins over the event UUID: a retry may carry a new UUID
        for uuid in ("a", "b"):
            status, _ = await bot.post(
                fixture("pipeline_failed.json"), Idempotency_Key="retry-1", X_Gitlab_Event_UUID=uuid
            )
            assert status == 200
        await bot.settle()
        assert len(await bot.events()) == 2
        text = await bot.metrics()
    stage = [line for line in bot.lines() if "stage 2/3 test" in line]
    failed = [line for line in bot.lines() if "731205" in line and "failed" in line]
    assert len(stage) == 1 and len(failed) == 1, bot.lines()
    assert metric(text, "deploybot_webhook_events_deduped_total") == 3
    assert metric(text, "deploybot_webhook_events_received_total", kind="pipeline") == 2
    assert metric(text, "deploybot_webhook_events_processed_total",
                  kind="pipeline", result="handled") == 2  # fmt: skip


async def test_pipeline_without_stages_is_stored_marked_malformed_and_harmless(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="deploybot.events")
    async with RunningBot(config) as bot:
        status, _ = await bot.post(fixture("pipeline_no_stages.json"))
        assert status == 200
        await bot.settle()
        rows = await bot.events()
        assert [(r["status"], r["error"]) for r in rows] == [
            ("malformed", "object_attributes.stages: missing")
        ]
        # the bot keeps working: the next event is announced
        assert (await bot.post(fixture("pipeline_running_stage2.json")))[0] == 200
        await bot.wait_line(r"builds-api: pipeline 731205 .*stage 2/3 test")
        text = await bot.metrics()
    assert metric(text, "deploybot_webhook_events_processed_total",
                  kind="pipeline", result="malformed") == 1  # fmt: skip
    logged = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(logged) == 1


async def test_event_left_pending_by_a_crash_is_processed_on_start(config: Config) -> None:
    store = Store(config.bot.state_dir / "deploybot.sqlite3")
    await store.open()
    body = json.dumps(fixture("pipeline_running_stage2.json")).encode()
    await store.execute(
        "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)",
        ("uuid-before-crash", "Pipeline Hook", body, time.time()),
    )
    await store.close()
    async with RunningBot(config) as bot:
        await bot.wait_line(r"pipeline 731205 .*stage 2/3 test")
        await bot.settle()
        assert [r["status"] for r in await bot.events()] == ["processed"]
        # the dedupe key survived the restart too
        await bot.post(
            fixture("pipeline_running_stage2.json"), X_Gitlab_Event_UUID="uuid-before-crash"
        )
        assert metric(await bot.metrics(), "deploybot_webhook_events_deduped_total") == 1


async def test_secret_named_but_missing_refuses_everything(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOYBOT_TEST_UNSET_SECRET", raising=False)
    cfg = config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_TEST_UNSET_SECRET"},
    )
    async with RunningBot(cfg) as bot:
        assert (await bot.post(fixture("pipeline_created.json"), token=None))[0] == 401
        assert (await bot.post(fixture("pipeline_created.json"), token=""))[0] == 401
        assert await bot.events() == []


async def test_without_a_secret_configured_deliveries_are_accepted(demo_config_path: Path) -> None:
    cfg = config_with(demo_config_path)  # the demo: no gitlab section at all
    async with RunningBot(cfg) as bot:
        assert (await bot.post(fixture("pipeline_tag_success.json"), token=None))[0] == 200
        await bot.wait_line(r"pipeline 731230 on tag 0\.0\.131-20240222212602-322f874b: success")
