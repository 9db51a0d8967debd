"""`!logs <component> <env>`: a page with the failing pods' last lines and recent events,
read through the real kubernetes client from FakeKube, with secrets redacted."""

from __future__ import annotations

import re

import aiohttp

from bot.app import App
from bot.core.shapes import scrub
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.kube import pod_json

__all__ = ["bed"]

LOG = "".join(f"line {i}\n" for i in range(1, 80)) + (
    "connecting with password=hunter2 and token: abc123\n"
    "Authorization: Bearer eyJhbGciOi.payload\n"
    "registry password is s3cr3t-registry-password\n"
    "panic: cannot reach the database\n"
)


def test_scrub_masks_values_after_secret_keys() -> None:
    assert scrub('{"password": "x1", "user": "u"} api_key=abc Authorization: Basic Zm9v') == (
        '{"password": "[redacted]", "user": "u"} api_key=[redacted] Authorization: Basic [redacted]'
    )


async def test_logs_page_has_the_failing_pods_tail_and_events_redacted(bed: DeployBed) -> None:
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=bed.pins["toolsbeta"])
    crash = pod_json(NS, "builds-api-7f9c-crash", None, "harbor.example.org/toolforge/builds-api:x",
                     waiting={"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}, restarts=4)  # fmt: skip
    bed.kube.add_pod(NS, crash)
    bed.kube.set_pod_log(NS, "builds-api-7f9c-crash", LOG)
    bed.kube.add_event(NS, "Pod", "builds-api-7f9c-crash", "BackOff", "Back-off restarting failed"
                       " container", at="2026-11-20T10:00:00Z")  # fmt: skip
    bed.kube.add_event(NS, "Pod", "builds-api-old", "Killing", "Stopping container",
                       at="2026-11-19T10:00:00Z", type_="Normal")  # fmt: skip
    pages: list[str] = []

    async def fetch(app: App) -> None:
        console = app.console
        assert console is not None
        said = console.stdout.getvalue().splitlines()
        url = next(line for line in said if line.startswith("logs of ")).rsplit(" ", 1)[1]
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            pages.append(await resp.text())

    s = await bed.run(["!logs builds-api toolsbeta"], inspect=fetch)
    reply = next(line for line in s.out if line.startswith("logs of "))
    assert re.fullmatch(
        r"logs of builds-api in toolsbeta: 1 failing pod \(builds-api-7f9c-crash"
        r" CrashLoopBackOff\), last 50 lines each, and 2 recent events: http://\S+/diffs/\w+",
        reply,
    ), reply
    page = pages[0]
    assert "== pod builds-api-7f9c-crash container main (CrashLoopBackOff, 4 restarts)" in page
    assert "panic: cannot reach the database" in page and "\nline 34\n" in page
    assert "\nline 33\n" not in page  # only the last 50 lines
    for secret in ("hunter2", "abc123", "eyJhbGciOi", "s3cr3t-registry-password"):
        assert secret not in page
    events = page.split("most recent events in builds-api\n", 1)[1].splitlines()
    assert events[0].startswith("2026-11-20 10:00:00 Warning BackOff Pod/builds-api-7f9c-crash")
    assert events[1].startswith("2026-11-19 10:00:00 Normal Killing Pod/builds-api-old")
