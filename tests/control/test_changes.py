"""What a deploy brings: the commits between the running and the new version, with subjects
and authors, in `!diff`, the bump MR description and the deploy announcement; read from the
component's repository (real git) or GitLab's compare API (FakeGitLab)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.control.pins import replace_pin
from bot.core.git import git
from tests.support.bumpworld import FIXTURE, base_config, git_config, make_repos
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.session import console_session
from tests.support.shown import shown

__all__ = ["bed"]

TOKEN = "glpat-changes-test"
CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BUILDS = "repos/cloud/toolforge/builds-api"
TOOLSBETA = "components/builds-api/values/toolsbeta.yaml"


async def test_diff_names_the_commits_from_the_component_git_repository(tmp_path: Path) -> None:
    repos = await make_repos(tmp_path)
    config = git_config(tmp_path, repos)
    (first, _), *_, (last, last_sha) = repos.releases["builds-api"]
    author = (
        await git("log", "-1", "--format=%an", last_sha, cwd=repos.components["builds-api"])
    ).strip()
    out = await console_session(
        config, [f"!deploy builds-api {first} to toolsbeta", "!diff builds-api latest toolsbeta"]
    )
    said = [line for line in out if not line.startswith("[#")]
    assert said[2] == f"builds-api: would change 1 file: toolsbeta: {shown(first)} -> {shown(last)}"
    assert said[3] == (
        f"brings 3 commits: {last_sha[:8]} builds-api: change 135 ({author});"
        f" {repos.releases['builds-api'][2][1][:8]} builds-api: change 134 ({author});"
        f" {repos.releases['builds-api'][1][1][:8]} builds-api: change 133 ({author})"
    )
    assert said[4].startswith("full diff: ")


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(token=TOKEN) as gl:
        files = {
            str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*") if p.is_file()
        }
        gl.add_project(CONTROL, files=files)
        gl.add_project(BUILDS)
        yield gl


async def test_diff_and_the_bump_mr_use_gitlabs_compare_api(
    tmp_path: Path, fake: FakeGitLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions, shas = [], []
    for i, n in enumerate(range(132, 138)):
        sha = fake.add_commit(BUILDS, "main", {"CHANGES": f"change {n}\n"}, f"fix thing {n}")
        if n != 133:  # 133 is not a release: its commit still ships with 134
            version = f"0.0.{n}-202402{20 + i}120000-{sha[:8]}"
            fake.add_tag(BUILDS, version, sha)
            versions.append(version)
        shas.append(sha)
    text = fake.file(CONTROL, "main", TOOLSBETA)
    assert text is not None
    fake.add_commit(
        CONTROL, "main", {TOOLSBETA: replace_pin(text, "chartVersion", versions[0])}, "pin"
    )
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    config = base_config(
        tmp_path,
        {"forge": "gitlab", "project": CONTROL, "branch": "main"},
        {"builds-api": {"project": BUILDS}},
        gitlab={"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"},
    )
    out = await console_session(
        config, ["!diff builds-api latest toolsbeta", "!deploy builds-api latest to toolsbeta"]
    )
    said = [line for line in out if not line.startswith("[#")]
    assert re.fullmatch(
        rf"brings 5 commits: {shas[5][:8]} fix thing 137 \(Deploy Bot\); {shas[4][:8]} fix thing"
        rf" 136 \(Deploy Bot\); {shas[3][:8]} fix thing 135 \(Deploy Bot\) and 2 more:"
        r" http://127\.0\.0\.1:9/diffs/[0-9a-f]{16}",
        said[1],
    ), said
    [mr] = fake.merge_requests(CONTROL)
    listing = mr["description"].split("\n\n")[-1].splitlines()
    assert listing[0] == f"Commits from {versions[0]} to {versions[-1]} (5):"
    assert listing[1:] == [f"- {s[:8]} fix thing {n} (Deploy Bot)" for s, n in
                           zip(reversed(shas[1:]), range(137, 132, -1), strict=True)]  # fmt: skip


async def test_the_deploy_announcement_names_what_it_brings(bed: DeployBed) -> None:
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    sync = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )
    s = await bed.run(["!apply builds-api toolsbeta"])
    await sync
    room = [line.removeprefix("[#toolforge-deploy] ") for line in s.out if line.startswith("[#")]
    brings = [line for line in room if " brings " in line]
    assert len(brings) == 1  # after the start line, which names both versions
    assert brings[0] == f"deploy #1 brings 1 commit: {new[-8:]} builds-api: change 133 (Demo Dev)"
    start = next(i for i, line in enumerate(room) if line.startswith("deploying builds-api"))
    done = next(i for i, line in enumerate(room) if line.startswith("deploy #1 done"))
    assert start < room.index(brings[0]) < done
