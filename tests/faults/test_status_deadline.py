"""`!status` answers within one `monitors.source_timeout`, however slow GitLab is.

With the control repo on GitLab and GitLab slow, every answer took three source timeouts
(15 s against 5 s): the open bump MR, then each cell's pins, then the pins on the bump
branch were asked one after another. Now every source starts at once and one that can only
start later gets what is left of the answer's time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.bumpworld import base_config
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.webhookbot import RunningBot

pytestmark = pytest.mark.faults

TIMEOUT = 3.0  # monitors.source_timeout
SLOW = 5.0  # every GitLab answer: over the timeout and its margin
MARGIN = 1.5  # scheduling slack on a busy machine; two timeouts (the old floor) is 6 s


async def test_status_with_a_slow_gitlab_answers_within_one_source_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "glpat-slow-status-0123"
    control, builds = "ops/toolforge-deploy", "ops/builds-api"
    async with FakeGitLab(token=token) as gl:
        gl.add_project(
            control,
            files={
                f"components/builds-api/values/{env}.yaml": "chartVersion: 0.0.1-20240101000000-aaaaaaaa\n"
                for env in ("local", "toolsbeta", "tools")
            },
        )
        gl.add_project(builds)
        monkeypatch.setenv("DEPLOYBOT_SLOW_TOKEN", token)
        config = base_config(
            tmp_path,
            {"forge": "gitlab", "project": control},
            {"builds-api": {"project": builds}},
            gitlab={"url": gl.url, "token_env": "DEPLOYBOT_SLOW_TOKEN"},
            monitors={"enabled": False, "source_timeout": TIMEOUT},
            bot={"state_dir": str(tmp_path / "var"), "read_timeout": 30, "reply_timeout": 30},
        )
        async with RunningBot(config) as bot:
            gl.delay = SLOW
            started = time.monotonic()
            bot.say("!status builds-api")
            line = await bot.wait_line(r"^builds-api tools:", timeout=30)
            elapsed = time.monotonic() - started
            gl.delay = 0.0
        assert f"unknown (no answer within {TIMEOUT:g}s)" in line, bot.lines()
        assert elapsed < TIMEOUT + MARGIN, f"!status took {elapsed:.1f}s: {bot.lines()}"
