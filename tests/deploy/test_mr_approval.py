"""`require_mr_approval: true`: an apply of an open bump MR waits for GitLab's approval (the
approvals API of FakeGitLab, read by python-gitlab)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.shown import said, shown

__all__ = ["bed"]

CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BRANCH = "bump_builds-api"
TOKEN = "glpat-approval-test"


async def tree_at(bare: Path, sha: str) -> dict[str, str]:
    names = (await git("ls-tree", "-r", "--name-only", sha, cwd=bare)).split()
    return {name: await git("show", f"{sha}:{name}", cwd=bare) for name in names}


async def test_an_open_bump_mr_must_be_approved_before_it_is_applied(
    bed: DeployBed, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = await bed.main_head()
    await git("branch", BRANCH, head, cwd=bed.control_repo)  # the bump branch of the open MR
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    async with FakeGitLab(token=TOKEN) as gl:
        gl.add_project(CONTROL, files=await tree_at(bed.control_repo, head))
        gl.add_project("repos/cloud/toolforge/builds-api")
        gl.add_commit(CONTROL, BRANCH, {}, "bump", sha=head)  # the same commit as the bare repo
        mr = gl.add_merge_request(CONTROL, BRANCH, "main", f"builds-api: bump to {new}")
        bed.data["control_repo"] = {
            "forge": "gitlab", "project": CONTROL, "url": f"file://{bed.control_repo}",
        }  # fmt: skip
        bed.data["gitlab"] = {"url": gl.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"}
        env = bed.data["environments"][0]
        env.update(require_mr_approval=True, auto_apply=False)

        first = await bed.run(["!apply builds-api toolsbeta"])
        answers = [line for line in first.out if line.startswith("apply: ")]
        assert answers == [
            f"apply: refused: bump MR !{mr['iid']} is not approved yet (1 more needed);"
            f" nothing run; approve it in GitLab ({mr['web_url']}), then !apply again"
        ]
        assert bed.records() == [] and first.deploys == []

        gl.approve(CONTROL, mr["iid"], "taavi")
        sync = asyncio.create_task(
            bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
        )
        second = await bed.run(["!apply builds-api toolsbeta"])
        await sync
    done = rf"deploy #1 done: builds-api {re.escape(shown(new))} to toolsbeta in"
    assert [x for x in said(second.out) if re.match(done, x)], second.out
    assert [d["mr_url"] for d in second.deploys] == [mr["web_url"]]
    approvals = [r for r in gl.requests if r.path.endswith("/approvals")]
    assert len(approvals) == 2
