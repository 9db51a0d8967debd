"""A GitLab that accepts connections and never answers holds up only its own look-ups.

Before, the serial event worker spent ~53 s per artifact look-up against such a GitLab and
every later event waited behind it. Now final states are announced at once and the
artifacts follow (or a line says why they could not be looked up).
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from bot.config.model import Config, parse_config
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.session import free_port
from tests.support.webhookbot import SECRET, RunningBot, fixture

pytestmark = pytest.mark.faults

BUILDS = "repos/cloud/toolforge/builds-api"


class SilentGitLab:
    """Accepts every request and answers none until `release()` (then 503s)."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.waiting = 0
        self.url = ""

    async def handler(self, request: web.Request) -> web.Response:
        self.waiting += 1
        await self.released.wait()
        return web.Response(status=503, text="gone")


@pytest.fixture
async def silent() -> AsyncIterator[SilentGitLab]:
    gl = SilentGitLab()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gl.handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    gl.url = f"http://127.0.0.1:{port}"
    yield gl
    gl.released.set()
    await runner.cleanup()


def config(path: Path, url: str, lookup_timeout: float, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", "glpat-silent-0123456789")
    data = yaml.safe_load(path.read_text())
    data["monitors"] = {"enabled": False}
    data["components"]["builds-api"] = {"project": BUILDS, "room": "#builds"}
    data["gitlab"] = {
        "url": url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN", "mr_notes": False,
        "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET", "lookup_timeout": lookup_timeout,
    }  # fmt: skip
    return parse_config(data)


def pipeline(n: int) -> dict[str, object]:
    body = copy.deepcopy(fixture("pipeline_success.json"))
    body["object_attributes"]["id"] = 800000 + n
    body["object_attributes"]["sha"] = f"{n:08x}" + "0" * 32
    return body


async def test_finals_are_announced_while_a_lookup_hangs(
    demo_config_path: Path, silent: SilentGitLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(demo_config_path, silent.url, 300.0, monkeypatch)
    async with RunningBot(cfg) as bot:
        assert (await bot.post(pipeline(0)))[0] == 200
        await bot.wait_line(r"pipeline 800000 on main \(00000000\): success")
        for n in range(1, 21):
            assert (await bot.post(pipeline(n)))[0] == 200
        for n in range(1, 21):
            await bot.wait_line(rf"pipeline {800000 + n} on main .*: success", timeout=20)
        # every final is out while the first look-up still waits on GitLab
        assert silent.waiting >= 1
        assert not [line for line in bot.lines() if "artifacts" in line or "image " in line]
        assert not await bot.app.pipelines.wait_idle(0)


async def test_a_lookup_past_its_deadline_says_why(
    demo_config_path: Path, silent: SilentGitLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(demo_config_path, silent.url, 1.0, monkeypatch)
    async with RunningBot(cfg) as bot:
        assert (await bot.post(pipeline(1)))[0] == 200
        line = await bot.wait_line(r"could not be looked up", timeout=20)
        assert line == (
            "[#builds] builds-api 00000001: artifacts could not be looked up within 1s"
            " (GitLab slow or unreachable); try !where builds-api 00000001"
        )
        final = await bot.wait_line(r"pipeline 800001 .*: success")
        assert bot.lines().index(final) < bot.lines().index(line)


async def test_a_read_command_waiting_on_a_silent_gitlab_gives_up_in_one_line(
    demo_config_path: Path, silent: SilentGitLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(demo_config_path, silent.url, 300.0, monkeypatch)
    cfg = cfg.model_copy(update={"bot": cfg.bot.model_copy(update={"read_timeout": 1.0})})
    async with RunningBot(cfg) as bot:
        os.write(bot._write_fd, b"!where builds-api 322f874b\n!whoami\n")
        line = await bot.wait_line(r"^where: no answer", timeout=20)
        assert line == (
            "where: no answer within 1s (GitLab, the cluster or the registry is slow);"
            " nothing changed; try again later"
        )
        await bot.wait_line(r"^you are console:tester")


async def test_a_429_with_a_long_retry_after_gives_up_within_the_deadline_saying_why(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeGitLab(token="glpat-silent-0123456789") as gl:
        gl.fail_next("GET", "/projects/", 429, {"Retry-After": "3600"}, times=1000)
        cfg = config(demo_config_path, gl.url, 2.0, monkeypatch)
        async with RunningBot(cfg) as bot:
            assert (await bot.post(pipeline(2)))[0] == 200
            final = await bot.wait_line(r"pipeline 800002 on main \(00000002\): success")
            line = await bot.wait_line(r"could not be looked up", timeout=20)
            assert line == (
                "[#builds] builds-api 00000002: artifacts could not be looked up within 2s"
                " (GitLab rate-limits the bot: 429 with Retry-After 3600s, retries wait at"
                " most 30s); try !where builds-api 00000002"
            )
            assert bot.lines().index(final) < bot.lines().index(line)
            # Retry-After was honoured (up to the cap): no second request while it waited
            assert [r.path for r in gl.requests] == [f"/projects/{BUILDS}/repository/tags"]


async def test_a_lookup_gitlab_refused_does_not_claim_there_is_no_version(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call rate-limited (Retry-After: 0, so the retries run out before the deadline):
    the line says the artifacts could not be looked up and why, not that none exist."""
    async with FakeGitLab(token="glpat-silent-0123456789") as gl:
        gl.fail_next("GET", "/projects/", 429, {"Retry-After": "0"}, times=1000)
        cfg = config(demo_config_path, gl.url, 60.0, monkeypatch)
        async with RunningBot(cfg) as bot:
            assert (await bot.post(pipeline(3)))[0] == 200
            line = await bot.wait_line(r"builds-api 00000003: ", timeout=30)
            assert line == (
                "[#builds] builds-api 00000003: artifacts could not be looked up (GitLab list"
                f" tags of {BUILDS} failed after 5 attempts: 429 Too Many Requests (rate"
                " limited)); try !where builds-api 00000003"
            )
