"""A burst of webhooks is acked first and handled right after it: the event worker waits
while the intake is busy (bounded by `max_lag`), and what counts as busy includes requests
that reached the sockets but not yet the route.

The event worker's own turns hold up the event loop; requests that arrive meanwhile are read
in the same turn as the intake's quiet timer fires, before they reach the route. Counting
only requests seen by the route, such a turn looked like a pause, so a saturated intake was
interrupted for handling many times a second, in small rounds that coalesce little. The
sockets' side is injected here as "bytes keep coming" (`last_bytes`, which the app wires to
the HTTP server's connection guard), so the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.config.model import Config
from tests.support.botproc import pipeline_hook
from tests.support.poll import until
from tests.support.webhookbot import RunningBot, config_with


@pytest.fixture
def config(demo_config_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", "s3cret-for-tests")
    return config_with(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET"},
    )


async def statuses(bot: RunningBot) -> list[str]:
    return [str(row["status"]) for row in await bot.events()]


async def test_a_burst_stays_unhandled_while_bytes_keep_coming_then_is_handled(
    config: Config,
) -> None:
    async with RunningBot(config) as bot:
        assert bot.app.events is not None and bot.app.webhooks is not None
        bot.app.events.max_lag = 60.0  # only the intake's quiet may start the handling here
        loop = asyncio.get_running_loop()
        streaming = True  # requests keep arriving at the sockets, none at the route yet
        bot.app.webhooks.last_bytes = lambda: loop.time() if streaming else 0.0
        answers = await asyncio.gather(
            *(bot.post(pipeline_hook(900 + n, "running"), token="s3cret-for-tests")
              for n in range(4))
        )  # fmt: skip
        assert [status for status, _ in answers] == [200] * 4
        # nothing to wait for: a window ten times the quiet gap in which the handling must
        # not start (before the fix it started 5 ms after the last answer)
        await asyncio.sleep(0.05)
        assert await statuses(bot) == ["pending"] * 4
        streaming = False
        await until(all_handled(bot), "every event of the burst handled once quiet", within=10.0)


def all_handled(bot: RunningBot) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return "pending" not in await statuses(bot)

    return check
