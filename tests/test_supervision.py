"""Supervision of the leader's loops: a `_lead` that crashes (here: the deploy recovery is
fenced by a lease epoch the store says is newer) is restarted with backoff, and each restart
replaces the outbox, event and monitor loops instead of adding a second copy of each."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path

import pytest

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config, LeaderElectionConfig
from bot.core.supervisor import Supervisor
from bot.store.db import store_from_config
from tests.support.fakes.kube import FakeKube

LOOPS = ("outbox", "events", "monitors", "sal-retry")


def loops_running() -> dict[str, int]:
    names = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
    return {name: names.count(name) for name in LOOPS}


async def test_starting_a_running_name_replaces_it() -> None:
    supervisor = Supervisor()
    started: list[int] = []

    async def loop(n: int) -> None:
        started.append(n)
        await asyncio.Event().wait()

    for n in range(3):
        supervisor.start("outbox", lambda n=n: loop(n))  # type: ignore[misc]
    await asyncio.sleep(0)  # let them run once
    assert started == [2]  # the first two were cancelled before they ran
    assert supervisor.running() == {"outbox": 1}
    await supervisor.stop()
    assert supervisor.running() == {}


async def test_a_crashing_lead_restarted_three_times_leaves_one_loop_of_each_kind(
    demo_config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_from_config(demo_config)
    await store.open()
    await store.execute(  # a deploy in flight when the previous leader died...
        "INSERT INTO deploys (component, env, action, version, actor, tasks, state, started_at,"
        " epoch) VALUES ('builds-api', 'toolsbeta', 'deploy', '0.0.1', 'console:t', '',"
        " 'applying', ?, 1)",
        (time.time(),),
    )
    await store.execute(  # ...and a lease epoch the Kubernetes lease will not reach
        "INSERT INTO leader_lease (name, holder, epoch, renewed_at, expires_at)"
        " VALUES ('deploybot', 'elsewhere', 99, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    await store.close()
    caplog.set_level(logging.ERROR, logger="deploybot")
    async with FakeKube() as kube:
        election = LeaderElectionConfig(
            backend="kubernetes", lease_seconds=5, namespace="deploybot",
            kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
        )  # fmt: skip
        config = demo_config.model_copy(update={"leader_election": election})
        app = App(config, console=ConsoleAdapter(io.StringIO(""), io.StringIO(), "t"))
        await app.start()
        try:
            deadline = time.monotonic() + 60
            while crashes(caplog) < 4:  # the first run and three restarts
                assert time.monotonic() < deadline, f"{crashes(caplog)} crashes of lead"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0)  # replaced loops finish cancelling
            assert loops_running() == dict.fromkeys(LOOPS, 1)
            assert {k: app.supervisor.running().get(k) for k in LOOPS} == dict.fromkeys(LOOPS, 1)
        finally:
            await app.stop()
    assert loops_running() == dict.fromkeys(LOOPS, 0)


def crashes(caplog: pytest.LogCaptureFixture) -> int:
    return sum("background task lead crashed" in r.getMessage() for r in caplog.records)
