"""GitLab deployments: every deploy of a component with `gitlab_deployments: true` becomes a
deployment on its GitLab project, driven by the real python-gitlab against the GitLab HTTP
fake (tests/support/fakes/gitlab_deployments.py); and GitLab answering 503 for a while
delays the records, never the deploys."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.app import App
from tests.support.deployworld import NS, DeployBed, bed, deploy_latest
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.poll import until
from tests.support.shown import said

__all__ = ["bed"]

PROJECT = "repos/cloud/toolforge/builds-api"


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#") and "working on it" not in line]


def with_gitlab(bed: DeployBed, gl: FakeGitLab, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The builds-api project in the fake, every release tag on a commit of its own."""
    monkeypatch.setenv("FAKE_GITLAB_TOKEN", gl.token)
    bed.data["gitlab"] = {"url": gl.url, "token_env": "FAKE_GITLAB_TOKEN"}
    bed.data["components"]["builds-api"]["gitlab_deployments"] = True
    pid = gl.add_project(PROJECT)
    shas = {}
    for version in bed.releases:
        sha = version.rsplit("-", 1)[1] + "0" * 32
        gl.add_commit(pid, "main", {"v": version}, f"release {version}", sha=sha)
        gl.add_tag(pid, version, sha)
        shas[version] = sha
    return shas


def recorded(gl: FakeGitLab) -> list[tuple[str, str, str, list[str]]]:
    return [
        (d.environment["name"], d.ref, d.sha, d.history)
        for d in gl.deployments.deployments.values()
    ]


async def test_deploy_and_rollback_become_gitlab_deployments(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeGitLab() as gl:
        shas = with_gitlab(bed, gl, monkeypatch)

        async def sent(app: App) -> None:  # the sender runs in the background
            await until(lambda: [h for *_, h in recorded(gl)] == [["running", "success"]],
                        "the deployment's success", within=30.0)  # fmt: skip

        bed.script({"helmfile apply": {"ack": True}})
        previous, latest = bed.pins["toolsbeta"], bed.releases[-1]
        bed.push(previous)
        bed.push(latest)
        bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=previous)
        rollout = asyncio.create_task(
            bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=latest))
        )
        s = await bed.run(["!deploy builds-api latest to toolsbeta"], inspect=sent)
        await rollout
        assert recorded(gl) == [("toolsbeta", latest, shas[latest], ["running", "success"])]
        env = next(iter(gl.deployments.environments.values()))
        assert env["external_url"].endswith("/deploys/1")
        assert s.deploys[0]["state"] == "done"

        rollback = asyncio.create_task(
            bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=previous), nth=2)
        )

        async def both(app: App) -> None:
            await until(lambda: len(recorded(gl)) == 2 and recorded(gl)[1][3][-1] == "success",
                        "the rollback's deployment", within=30.0)  # fmt: skip
            rows = await app.store.fetchall("SELECT kind FROM gitlab_deployments ORDER BY id")
            assert [r["kind"] for r in rows] == ["deploy", "rollback"]

        await bed.run(["!rollback builds-api toolsbeta"], inspect=both)
        await rollback
        # a rollback is a deployment of the older tag: GitLab shows it as a rollback
        assert recorded(gl)[1] == ("toolsbeta", previous, shas[previous], ["running", "success"])


async def test_failed_deploy_ends_failed(bed: DeployBed, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeGitLab() as gl:
        with_gitlab(bed, gl, monkeypatch)
        bed.push(bed.pins["toolsbeta"])
        bed.script({"helmfile apply": {"exit": 1, "output": "Error: UPGRADE FAILED: boom\n"}})

        async def sent(app: App) -> None:
            await until(lambda: [h for *_, h in recorded(gl)] == [["running", "failed"]],
                        "the failed deployment", within=30.0)  # fmt: skip

        s = await bed.run(["!apply builds-api toolsbeta"], inspect=sent)
        assert said(s.out)[-1].startswith("deploy #1 failed:")


async def test_gitlab_down_delays_the_records_not_the_deploys(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeGitLab() as gl:
        with_gitlab(bed, gl, monkeypatch)
        gl.fail_next("POST", f"/projects/{PROJECT}/deployments", 503, times=10**6)
        previous, latest = await deploy_latest(bed)  # done while GitLab answers 503
        assert recorded(gl) == []
        rollout = asyncio.create_task(
            bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=previous), nth=2)
        )
        started = time.monotonic()

        async def after_outage(app: App) -> None:
            rows = await app.store.fetchall("SELECT attempts, gitlab_id FROM gitlab_deployments")
            assert len(rows) == 2 and all(r["gitlab_id"] is None for r in rows)
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - started)))  # a 5 s outage
            gl.clear_faults()
            await until(lambda: [h for *_, h in recorded(gl)] == [["running", "success"]] * 2,
                        "every record after the outage", within=30.0)  # fmt: skip

        s = await bed.run(["!rollback builds-api toolsbeta"], inspect=after_outage)
        await rollout
        assert said(s.out)[-1].startswith("deploy #2 done: rollback")
        assert [d[1] for d in recorded(gl)] == [latest, previous]  # in order, each once
        posts = [r for r in gl.requests if r.method == "POST" and r.path.endswith("/deployments")]
        assert len(posts) > 2  # it was refused, retried, and then sent once each
