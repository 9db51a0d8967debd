"""A merged bump MR (GitLab webhook) auto-applies the new pin in `auto_apply` environments.

End to end: the real App behind its real HTTP port receives a Merge Request Hook; the control
repo is on FakeGitLab (pins are read through the API) and is also a bare git repo the
deployer checks out (`control_repo.url`), both with the same commits; the recording helmfile
runs the deploy, FakeKube is toolsbeta's cluster and a real OCI registry (docker-registry)
holds the artifacts.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bot.control.pins import replace_pin
from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.shown import shown
from tests.support.webhookbot import SECRET, RunningBot, fixture, metric

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL

__all__ = ["bed"]

CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BRANCH = "bump_builds-api"
MR_HOOK = "Merge Request Hook"
TOKEN = "glpat-merged-bump-test"
VALUES = "components/builds-api/values/{env}.yaml"


async def tree_at(bare: Path, sha: str) -> dict[str, str]:
    """Every file of the commit, as FakeGitLab serves it."""
    names = (await git("ls-tree", "-r", "--name-only", sha, cwd=bare)).split()
    return {name: await git("show", f"{sha}:{name}", cwd=bare) for name in names}


async def merge_bump(bed: DeployBed, version: str) -> str:
    """Push to main what merging the bump MR does: toolsbeta and tools pin `version`."""
    work = bed.tmp / "work-merge"
    await git("clone", "--quiet", str(bed.control_repo), str(work))
    await git("config", "user.email", "merger@example.org", cwd=work)
    await git("config", "user.name", "Merger", cwd=work)
    for env in ("toolsbeta", "tools"):
        path = work / VALUES.format(env=env)
        path.write_text(replace_pin(path.read_text(), "chartVersion", version))
    await git("commit", "--quiet", "-am", f"builds-api: bump to {version}", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return (await git("rev-parse", "HEAD", cwd=work)).strip()


def mr_hook(iid: int, source_branch: str) -> dict[str, Any]:
    body = fixture("mr_merged.json")
    attrs = body["object_attributes"]
    attrs.update(iid=iid, source_branch=source_branch)
    attrs["url"] = f"https://gitlab.wikimedia.org/{CONTROL}/-/merge_requests/{iid}"
    return body


async def wait_for(what: str, check: Any, timeout: float = 20.0) -> None:
    """Poll `check()` (another process's output, the bot's state) until true or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def deploying() -> bool:
    """Whether the bot's auto-apply or one of its deploys is still running."""
    names = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
    return any(n == "auto-apply" or n.startswith("deploy-") for n in names)


async def test_merged_bump_mr_auto_applies_once_in_auto_apply_envs_only(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = bed.pins["toolsbeta"], bed.releases[-1]
    assert old != new and bed.pins["tools"] != new
    parent = await bed.main_head()
    head = await merge_bump(bed, new)
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)

    async with FakeGitLab(token=TOKEN) as gl:
        gl.add_project(CONTROL, files=await tree_at(bed.control_repo, parent))
        gl.add_commit(CONTROL, "main", await tree_at(bed.control_repo, head), "merge", sha=head)
        gl.add_project("repos/cloud/toolforge/builds-api")
        mr = gl.add_merge_request(CONTROL, BRANCH, "main", f"builds-api: bump to {new}")
        mr.update(state="merged", merge_commit_sha=head)
        bed.data["control_repo"] = {
            "forge": "gitlab", "project": CONTROL, "url": f"file://{bed.control_repo}",
        }  # fmt: skip
        bed.data["gitlab"] = {
            "url": gl.url,
            "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN",
            "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET",
        }
        envs = {e["name"]: e for e in bed.data["environments"]}
        envs["toolsbeta"]["auto_apply"] = True
        envs["tools"]["auto_apply"] = False
        async with RunningBot(bed.config) as bot:
            # a merged MR on another branch of the control repo deploys nothing
            other = mr_hook(411, "fix-readme")
            status, _ = await bot.post(other, MR_HOOK, X_Gitlab_Event_UUID="uuid-other-mr")
            assert status == 200
            await bot.wait_line(r"control repo MR !411 merged")
            await bot.settle()

            bump = mr_hook(mr["iid"], BRANCH)
            assert (await bot.post(bump, MR_HOOK, X_Gitlab_Event_UUID="uuid-bump-1"))[0] == 200
            await wait_for(
                "helmfile apply", lambda: any(c["sub"] == "apply" for c in bed.records())
            )
            # GitLab redelivers while the deploy is still running: deduped, nothing re-applied
            assert (await bot.post(bump, MR_HOOK, X_Gitlab_Event_UUID="uuid-bump-1"))[0] == 200
            await bot.settle()

            def rollout() -> None:
                bed.kube.start_rollout(NS, "builds-api", version=new)

            await bed.on_sync(rollout)
            done = await bot.wait_line(r"deploy #1 (done|failed|interrupted)")
            # the auto-apply goes on in the background (the deployer names its tasks): wait
            # until it has gone through every environment it queued
            await wait_for("the auto-apply to finish", lambda: not deploying())
            await bot.settle()
            assert (await bot.post(bump, MR_HOOK, X_Gitlab_Event_UUID="uuid-bump-1"))[0] == 200
            await bot.settle()
            deduped = metric(await bot.metrics(), "deploybot_webhook_events_deduped_total")
            events = [(r["dedupe_key"], r["status"]) for r in await bot.events()]
            sal = list(reversed(await bot.app.services.sal.query(limit=100)))
            deploys = await bot.app.store.fetchall("SELECT * FROM deploys ORDER BY id")
            lines = bot.lines()

    calls = bed.records()
    assert [(c["tool"], c["sub"], c["argv"][:2]) for c in calls] == [
        ("helmfile", "diff", ["-e", "toolsbeta"]),
        ("helmfile", "apply", ["-e", "toolsbeta"]),
    ]
    assert all(c["head"] == head and c["chartVersion"] == new for c in calls)
    url = f"{bed.data['bot']['public_url']}/deploys/1/log"
    assert re.fullmatch(
        rf"\[#toolforge-deploy\] deploy #1 done: builds-api {re.escape(shown(new))} to toolsbeta in"
        rf" \d+s: live version verified · log: {re.escape(url)}",
        done,
    )
    room = [line.removeprefix("[#toolforge-deploy] ") for line in lines]
    assert [line for line in room if line.startswith(("deploying ", "deploy #"))] == [
        f"deploying builds-api {shown(new)} to toolsbeta (deploy #1) from main@{head[:8]}"
        " · artifacts present",
        "deploy #1 diff: 2 resources changed: builds-api/Deployment (apps)/builds-api,"
        " builds-api/ConfigMap (v1)/builds-api-config",
        done.removeprefix("[#toolforge-deploy] "),
    ]
    assert not any(" to tools " in line or "refused" in line for line in room)
    assert f"builds-api bump MR !{mr['iid']} merged by gitlab:raymond-ndibe" in "\n".join(room)
    assert [e for e in sal if e.env == "tools"] == []
    applies = [e for e in sal if e.action == "auto-apply"]
    assert [(e.actor, e.env, e.result) for e in applies] == [
        ("gitlab:raymond-ndibe", "toolsbeta", "started"),
        ("gitlab:raymond-ndibe", "toolsbeta", "done"),
    ]
    for e in applies:
        assert (e.from_version, e.to_version, e.commit_sha, e.log_url) == (old, new, head, url)
    assert len({e.action_id for e in applies}) == 1  # one action: the merge webhook's
    assert (applies[0].action_id or "").startswith("webhook-")
    assert [(d["env"], d["state"], d["version"]) for d in deploys] == [("toolsbeta", "done", new)]
    assert events == [("uuid-other-mr", "processed"), ("uuid-bump-1", "processed")]
    assert deduped == 2
