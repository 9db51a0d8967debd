"""The monitors against the real edges: FakeKube through a kubeconfig, FakeRegistry, the
demo's git repos. Each alert is raised once, reminded on schedule and cleared when fixed."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.monitors.checks import Monitors
from tests.support.fakes.kube import pod_json
from tests.support.monitorworld import CHARTS, Clock, World, world
from tests.support.shown import shown

REMIND = 7200.0


def _timings(data: dict[str, Any]) -> None:
    data["monitors"].update(drift_grace=900, remind_every=REMIND, undeployed_after=86400)


def _undeployed_at_once(data: dict[str, Any]) -> None:
    _timings(data)
    data["monitors"]["undeployed_after"] = 0


def _verbs(lines: list[str]) -> list[tuple[str, str, str, str]]:
    """(verb, kind, component, env) of each alert line."""
    out = []
    for line in lines:
        words = line.replace("still ALERT", "REMIND").split()
        out.append((words[0], words[1], words[2], words[3].rstrip(":")))
    return sorted(out)


async def _new_lines(w: World, app: Any, seen: list[str]) -> list[str]:
    lines = await w.outbox(app)
    fresh = lines[len(seen) :]
    seen.extend(fresh)
    return fresh


def _gauge(app: Any, kind: str) -> float:
    text = app.metrics.render().decode()
    line = next(
        x for x in text.splitlines() if x.startswith(f'deploybot_monitor_alerts{{kind="{kind}"}}')
    )
    return float(line.split()[-1])


async def test_each_alert_is_raised_once_reminded_and_cleared(tmp_path: Path) -> None:
    async with world(tmp_path, _undeployed_at_once) as w:
        beta = w.kubes["toolsbeta"]
        jobs_tools = w.pins[("jobs-api", "tools")]
        # builds-api in toolsbeta still runs the release before its pin: drift
        beta.add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=w.releases["builds-api"][-3]
        )
        # a jobs-api rollout whose image cannot be pulled
        beta.start_rollout(
            "jobs-api", "jobs-api", version=w.pins[("jobs-api", "toolsbeta")],
            ready_after_polls=None, failure=("ImagePullBackOff", 'Back-off pulling image "x"'),
        )  # fmt: skip
        # a retention rule pruned the chart that tools runs
        w.registry.delete_tag(f"{CHARTS}/jobs-api", jobs_tools)
        app = await w.app()
        t0 = w.release_time(w.releases["jobs-api"][-1]) + 3600  # jobs-api 0.0.412 is 1h old
        clock = Clock(t0)
        monitors = Monitors(app.services, app.bumper, clock=clock)
        seen: list[str] = []

        await monitors.check_now()
        first = await _new_lines(w, app, seen)
        assert _verbs(first) == [
            ("ALERT", "missing-artifact", "jobs-api", "tools"),
            ("ALERT", "undeployed", "builds-api", "tools"),
            ("ALERT", "undeployed", "jobs-api", "tools"),
            ("ALERT", "unhealthy", "jobs-api", "toolsbeta"),
        ]
        missing = next(x for x in first if "missing-artifact" in x)
        assert f"chart {CHARTS}/jobs-api:{jobs_tools} (live, pinned) is gone" in missing
        assert "ImagePullBackOff" in next(x for x in first if "unhealthy" in x)
        undeployed = next(x for x in first if "undeployed" in x)
        assert "2 releases merged but not deployed to tools" in undeployed
        assert "next: !deploy builds-api 0.0.134-" in undeployed

        clock.now = t0 + 1000  # past the drift grace period
        await monitors.check_now()
        drift = await _new_lines(w, app, seen)
        assert _verbs(drift) == [("ALERT", "drift", "builds-api", "toolsbeta")]
        assert f"main pins {shown(w.pins[('builds-api', 'toolsbeta')])}" in drift[0]

        clock.now = t0 + 1800
        await monitors.check_now()
        assert await _new_lines(w, app, seen) == []  # nothing repeated

        clock.now = t0 + REMIND + 100
        await monitors.check_now()
        assert _verbs(await _new_lines(w, app, seen)) == [
            ("REMIND", "missing-artifact", "jobs-api", "tools"),
            ("REMIND", "undeployed", "builds-api", "tools"),
            ("REMIND", "undeployed", "jobs-api", "tools"),
            ("REMIND", "unhealthy", "jobs-api", "toolsbeta"),
        ]
        assert [_gauge(app, k) for k in ("drift", "undeployed", "unhealthy")] == [1, 2, 1]
        assert _gauge(app, "missing-artifact") == 1

        beta.fault = "error"  # toolsbeta unreachable: its alerts are unknown, not resolved
        clock.now = t0 + REMIND + 200
        await monitors.check_now()
        assert await _new_lines(w, app, seen) == []
        assert _gauge(app, "drift") == 1

        beta.fault = None  # fixed: deployed as pinned, rollout done, chart pushed again
        beta.add_deployment(
            "builds-api", "builds-api", chart="builds-api",
            version=w.pins[("builds-api", "toolsbeta")],
        )  # fmt: skip
        beta.start_rollout(
            "jobs-api", "jobs-api", version=w.pins[("jobs-api", "toolsbeta")], ready_after_polls=1
        )
        w.registry.push(f"{CHARTS}/jobs-api", jobs_tools)
        clock.now = t0 + REMIND + 300
        await monitors.check_now()
        cleared = await _new_lines(w, app, seen)
        assert _verbs(cleared) == [
            ("RESOLVED", "drift", "builds-api", "toolsbeta"),
            ("RESOLVED", "missing-artifact", "jobs-api", "tools"),
            ("RESOLVED", "unhealthy", "jobs-api", "toolsbeta"),
        ]
        assert [_gauge(app, k) for k in ("drift", "unhealthy", "missing-artifact")] == [0, 0, 0]
        assert _gauge(app, "undeployed") == 2

        # the state is stored: a restarted bot neither repeats nor forgets
        again = Monitors(app.services, app.bumper, clock=clock)
        clock.now += 60
        await again.check_now()
        assert await _new_lines(w, app, seen) == []


async def test_undeployed_release_alerts_after_the_bot_saw_it_for_the_threshold(
    tmp_path: Path,
) -> None:
    """The age counts from when the bot first saw the release merged, not from the tag's
    build time: a bot started 18 days after the tag does not say "for 18d"."""
    async with world(tmp_path, _timings) as w:
        app = await w.app()
        newest = w.releases["jobs-api"][-1]
        start = w.release_time(newest) + 18 * 86400
        clock = Clock(start)
        monitors = Monitors(app.services, app.bumper, clock=clock)
        await monitors.check_now()
        clock.now = start + 86400 - 60
        await monitors.check_now()
        lines = await w.outbox(app)
        assert not any("jobs-api" in line for line in lines)  # seen for 23h59m: not yet

        clock.now = start + 86400 + 60
        await monitors.check_now()
        jobs = [line for line in await w.outbox(app) if "jobs-api" in line]
        assert len(jobs) == 1
        assert jobs[0].startswith("ALERT undeployed jobs-api tools: 1 release merged")
        assert f"newest {shown(newest)}" in jobs[0] and "(for 1d)" in jobs[0]


async def test_rising_restart_counts_alert_and_then_quiet_down(tmp_path: Path) -> None:
    async with world(tmp_path, _timings) as w:
        prod = w.kubes["tools"]
        image = "harbor.example.org/toolforge/builds-api:x"
        prod.add_pod(
            "builds-api", pod_json("builds-api", "builds-api-cron-1", None, image, restarts=2)
        )
        app = await w.app()
        clock = Clock(w.release_time(w.releases["jobs-api"][-1]) + 86400 * 3)
        monitors = Monitors(app.services, app.bumper, clock=clock)
        await monitors.check_now()
        assert not any("unhealthy" in line for line in await w.outbox(app))  # steady count

        prod.add_pod(
            "builds-api", pod_json("builds-api", "builds-api-cron-1", None, image, restarts=5)
        )
        clock.now += 300
        await monitors.check_now()
        unhealthy = [line for line in await w.outbox(app) if "unhealthy" in line]
        assert unhealthy == [
            "ALERT unhealthy builds-api tools: pod builds-api-cron-1: Restarting: "
            "5 restarts, rising"
        ]

        clock.now += 3 * app.config.monitors.interval + 1  # no new restarts since
        await monitors.check_now()
        unhealthy = [line for line in await w.outbox(app) if "unhealthy" in line]
        assert unhealthy[-1].startswith("RESOLVED unhealthy builds-api tools after")


async def test_a_webhook_triggers_a_check_without_waiting_for_the_interval(tmp_path: Path) -> None:
    def drift_now(data: dict[str, Any]) -> None:
        data["monitors"].update(drift_grace=0, interval=3600)

    async with world(tmp_path, drift_now) as w:
        stdin = io.StringIO("")  # the console reads EOF at once; the app runs until stopped
        app = App(w.config, console=ConsoleAdapter(stdin, io.StringIO(), user="tester"))
        await app.start()
        try:
            assert await app.monitors.wait_first_check(10)
            old = w.releases["builds-api"][-3]
            w.kubes["toolsbeta"].add_deployment(
                "builds-api", "builds-api", chart="builds-api", version=old
            )
            payload = Path(__file__).parents[2] / "config/demo/payloads/pipeline_running.json"
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://{w.config.http.listen}/webhooks/gitlab",
                    data=payload.read_bytes(),
                    headers={"X-Gitlab-Event": "Pipeline Hook", "Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 200
            deadline = time.monotonic() + 15
            while not any("ALERT drift builds-api toolsbeta" in x for x in await w.outbox(app)):
                assert time.monotonic() < deadline, await w.outbox(app)
                await asyncio.sleep(0.05)
        finally:
            await app.stop()
