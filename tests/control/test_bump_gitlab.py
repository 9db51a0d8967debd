"""`!deploy` on the GitLab forge: the real python-gitlab against FakeGitLab. One bump MR per
component, reset to one commit on every deploy, CI-opened MRs reused, transient errors
retried, and a permanent failure leaves no half-made branch."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config.model import Config
from tests.support.bumpworld import FIXTURE, LOGGING_PINS, base_config
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.session import console_session
from tests.support.shown import shown

TOKEN = "glpat-bump-test-t0ken"
CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BUILDS = "repos/cloud/toolforge/builds-api"
BRANCH = "bump_builds-api"
TOOLS = "components/builds-api/values/tools.yaml"
TOOLSBETA = "components/builds-api/values/toolsbeta.yaml"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(token=TOKEN) as gl:
        files = {
            str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*") if p.is_file()
        }
        gl.add_project(CONTROL, files=files)
        gl.add_project(BUILDS)
        gl.add_project("repos/cloud/toolforge/jobs-api")
        gl.add_project("repos/cloud/toolforge/logging")
        yield gl


@pytest.fixture
def releases(fake: FakeGitLab) -> list[str]:
    out = []
    for i, n in enumerate(range(132, 136)):
        sha = fake.add_commit(BUILDS, "main", {"CHANGES": f"change {n}\n"}, f"change {n}")
        version = f"0.0.{n}-202402{20 + i}120000-{sha[:8]}"
        fake.add_tag(BUILDS, version, sha)
        out.append(version)
    return out


@pytest.fixture
def config(tmp_path: Path, fake: FakeGitLab, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    comps: dict[str, dict[str, Any]] = {
        name: {"project": f"repos/cloud/toolforge/{name}"}
        for name in ("builds-api", "jobs-api", "logging")
    }
    comps["logging"]["pins"] = LOGGING_PINS
    return base_config(
        tmp_path,
        {"forge": "gitlab", "project": CONTROL, "branch": "main"},
        comps,
        gitlab={"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"},
    )


def mr_url(fake: FakeGitLab, iid: int) -> str:
    return f"https://gitlab.example.org/{CONTROL}/-/merge_requests/{iid}"


def bump_commits(fake: FakeGitLab) -> list[str]:
    """Commits on the bump branch that are not on main."""
    head = fake.branch_head(CONTROL, BRANCH)
    main = fake.branch_head(CONTROL, "main")
    assert head is not None and main is not None
    out = []
    project = fake._project(CONTROL)  # read-only inspection of the fake's state
    sha: str | None = head
    while sha is not None and sha != main:
        out.append(sha)
        parents = project.commits[sha].parent_ids
        sha = parents[0] if parents else None
    return out


async def test_first_deploy_opens_one_mr_with_one_commit(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    main_before = fake.branch_head(CONTROL, "main")
    lines = await console_session(config, ["!deploy builds-api latest T358908"], "tester")
    latest = releases[-1]
    assert lines[0] == (  # without `to`, production (tools requires toolsbeta) keeps its pin
        f"builds-api {shown('0.0.131-20240222212602-322f874b')} -> {shown(latest)} in local,"
        " toolsbeta (T358908)"
    )
    assert (
        lines[1]
        == f"MR !1 opened: {mr_url(fake, 1)} · step 3 of 6 (bump MR open); next: pinned in local"
    )
    mrs = fake.merge_requests(CONTROL)
    assert [(m["source_branch"], m["target_branch"], m["title"]) for m in mrs] == [
        (BRANCH, "main", f"builds-api: bump to {latest}")
    ]
    assert fake.branch_head(CONTROL, "main") == main_before
    assert len(bump_commits(fake)) == 1
    head = fake.branch_head(CONTROL, BRANCH)
    message = fake._project(CONTROL).commits[head or ""].message
    assert message == (
        f"builds-api: bump to {latest}\n\n"
        f"From 0.0.131-20240222212602-322f874b\nTo {latest}\n"
        f"See {fake.url}/{BUILDS}/-/releases\n\nBug: T358908"
    )
    assert fake.file(CONTROL, BRANCH, TOOLS) == fake.file(CONTROL, "main", TOOLS)
    # only the pins' files were read: no tree listing of the control repo
    read = {r.path for r in fake.requests if "/repository/files/" in r.path}
    assert all("/components/builds-api/values/" in p for p in read), read
    assert not [r for r in fake.requests if r.path.endswith("/repository/tree")]


async def test_second_deploy_updates_the_same_mr(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    await console_session(config, [f"!deploy builds-api {releases[-1]} to tools"], "tester")
    lines = await console_session(
        config, [f"!deploy builds-api {releases[-2]} to toolsbeta T7"], "tester"
    )
    assert lines[1].startswith(f"MR !1 updated: {mr_url(fake, 1)}")
    mrs = fake.merge_requests(CONTROL)
    assert len(mrs) == 1 and mrs[0]["title"] == f"builds-api: bump to {releases[-2]}"
    assert "Bug: T7" in mrs[0]["description"]
    assert len(bump_commits(fake)) == 1  # reset onto main, one new commit
    assert fake.file(CONTROL, BRANCH, TOOLS) == fake.file(CONTROL, "main", TOOLS)
    assert f"chartVersion: {releases[-2]}" in (fake.file(CONTROL, BRANCH, TOOLSBETA) or "")
    # the same deploy again changes nothing
    head = fake.branch_head(CONTROL, BRANCH)
    lines = await console_session(
        config, [f"!deploy builds-api {releases[-2]} to toolsbeta"], "tester"
    )
    assert lines[0] == f"MR !1 already proposes this: {mr_url(fake, 1)}"
    assert fake.branch_head(CONTROL, BRANCH) == head


async def test_ci_opened_mr_is_reused(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    fake.add_commit(CONTROL, BRANCH, {TOOLS: "chartVersion: 0.0.1-x\n"}, "ci: bump")
    fake.add_merge_request(CONTROL, BRANCH, "main", "builds-api: bump (by CI)")
    lines = await console_session(config, ["!deploy builds-api latest to tools"], "tester")
    assert lines[1].startswith(f"MR !1 updated: {mr_url(fake, 1)}")
    assert len(fake.merge_requests(CONTROL)) == 1
    assert len(bump_commits(fake)) == 1
    assert f"chartVersion: {releases[-1]}\nchartRepository: tools\n" in (
        fake.file(CONTROL, BRANCH, TOOLS) or ""
    )


async def test_transient_errors_are_retried(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    fake.fail_next("GET", f"/projects/{CONTROL}/repository/files", 502, times=2)
    fake.fail_next("GET", f"/projects/{BUILDS}/repository/tags", 503)
    fake.fail_next("POST", f"/projects/{CONTROL}/repository/commits", 429, {"Retry-After": "0"})
    fake.fail_next("POST", f"/projects/{CONTROL}/merge_requests", 429, {"Retry-After": "0"})
    lines = await console_session(config, ["!deploy builds-api latest to tools"], "tester")
    assert any(line.startswith(f"MR !1 opened: {mr_url(fake, 1)}") for line in lines), lines
    assert len(fake.merge_requests(CONTROL)) == 1
    assert len(bump_commits(fake)) == 1


async def test_permanent_failure_leaves_no_branch(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    fake.fail_next("POST", f"/projects/{CONTROL}/merge_requests", 500)
    lines = await console_session(config, ["!deploy builds-api latest to tools"], "tester")
    assert len(lines) == 1, lines
    assert lines[0].startswith("deploy: nothing changed: could not open the bump MR (")
    assert lines[0].endswith(f"removed {BRANCH}")
    assert TOKEN not in lines[0]
    assert fake.branch_head(CONTROL, BRANCH) is None
    assert fake.merge_requests(CONTROL) == []
    lines = await console_session(config, ["!sal builds-api"], "tester")
    assert "bump" not in " ".join(lines)


async def test_bad_input_writes_nothing(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    lines = await console_session(
        config,
        ["!deploy builds-api 0000000", "!deploy builds-api latest to nowhere",
         "!deploy builds-api ..%2f"],
        "tester",
    )  # fmt: skip
    assert len(lines) == 3
    assert "no release version built from a commit starting with 0000000" in lines[0]
    assert "unknown environment 'nowhere'" in lines[1]
    assert "must not contain" in lines[2] or "not allowed" in lines[2]
    assert not [r for r in fake.requests if r.method != "GET"]


async def test_failed_commit_leaves_no_branch(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    fake.fail_next("POST", f"/projects/{CONTROL}/repository/commits", 502)
    lines = await console_session(config, ["!deploy builds-api latest to tools"], "tester")
    assert len(lines) == 1 and lines[0].startswith(
        f"deploy: nothing changed: could not commit to {BRANCH}: "
    ), lines
    assert fake.branch_head(CONTROL, BRANCH) is None
    assert fake.merge_requests(CONTROL) == []


def repin(fake: FakeGitLab, path: str, version: str) -> str:
    """A commit on main made outside the bot that pins `version` in `path`."""
    text = fake.file(CONTROL, "main", path) or ""
    new = re.sub(r"chartVersion: \S+", f"chartVersion: {version}", text)
    return fake.add_commit(CONTROL, "main", {path: new}, f"bump to {version} (by hand)")


async def test_previous_comes_from_the_pin_history(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    older, newer = releases[0], releases[1]
    repin(fake, TOOLS, older)
    fake.add_commit(CONTROL, "main", {"README.md": "unrelated\n"}, "docs")
    repin(fake, TOOLS, newer)
    text = fake.file(CONTROL, "main", TOOLS) or ""  # a later edit that keeps the pin
    fake.add_commit(CONTROL, "main", {TOOLS: text.replace("replicas: 3", "replicas: 4")}, "scale")
    lines = await console_session(config, ["!deploy builds-api previous to tools"], "tester")
    assert lines[0] == f"builds-api {shown(newer)} -> {shown(older)} in tools", lines
    assert lines[1].startswith(f"MR !1 opened: {mr_url(fake, 1)}"), lines
    assert f"chartVersion: {older}\n" in (fake.file(CONTROL, BRANCH, TOOLS) or "")
    assert "replicas: 4" in (fake.file(CONTROL, BRANCH, TOOLS) or "")
    listed = [r.query for r in fake.requests if r.method == "GET" and r.path.endswith("/commits")]
    assert listed and all(q.get("path") == TOOLS and q.get("ref_name") == "main" for q in listed)
    assert all(int(q["per_page"]) <= 30 for q in listed)  # one bounded page, not the whole log


async def test_no_previous_when_the_pin_never_changed(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    fake.add_commit(CONTROL, "main", {"README.md": "unrelated\n"}, "docs")
    lines = await console_session(config, ["!deploy builds-api previous to tools"], "tester")
    assert lines == ["deploy: no previous version known for this component and environment"]
    assert not [r for r in fake.requests if r.method != "GET"]
