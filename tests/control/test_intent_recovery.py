"""What a restart does with a bump intent left by a crash, on both forges (one shared flow,
`bot.control.recovery`), in the cases the kill -9 tests (tests/faults/test_bump_crash*.py)
do not reach: the bump MR merged (and its branch deleted) before the restart, an existing MR
that got the commit but not its new title, an older identical bump that is already in the
SAL, and a git remote that cannot be reached at the restart.

The crash here is the bump's task cancelled while FakeGitLab holds its request; the restart
is a new App over the same state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.config.model import Config
from bot.control.bumper import Bumper
from bot.control.intents import Intent
from bot.control.recovery import Recovery
from bot.core.git import git
from bot.store.sal import SalEntry
from tests.support.bumpworld import FIXTURE, base_config, git_config, make_repos
from tests.support.fakes.gitlab import FakeGitLab

TOKEN = "glpat-recovery-t0ken"
CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BUILDS = "repos/cloud/toolforge/builds-api"
BRANCH = "bump_builds-api"
COMMITS = f"/projects/{CONTROL}/repository/commits"
MRS = f"/projects/{CONTROL}/merge_requests"
TOOLSBETA = "components/builds-api/values/toolsbeta.yaml"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(token=TOKEN) as gl:
        files = {str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*")
                 if p.is_file()}  # fmt: skip
        gl.add_project(CONTROL, files=files)
        gl.add_project(BUILDS)
        yield gl


@pytest.fixture
def releases(fake: FakeGitLab) -> list[str]:
    out = []
    for i, n in enumerate(range(132, 134)):
        sha = fake.add_commit(BUILDS, "main", {"CHANGES": f"change {n}\n"}, f"change {n}")
        out.append(f"0.0.{n}-202402{20 + i}120000-{sha[:8]}")
        fake.add_tag(BUILDS, out[-1], sha)
    return out


@pytest.fixture
def config(tmp_path: Path, fake: FakeGitLab, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    return base_config(
        tmp_path,
        {"forge": "gitlab", "project": CONTROL, "branch": "main"},
        {"builds-api": {"project": BUILDS}},
        gitlab={"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"},
    )


class Restarted:
    """A new App over the same state directory, with its store open."""

    def __init__(self, config: Config) -> None:
        self.app = App(config)
        self.said: list[tuple[str, str]] = []

    @property
    def bumper(self) -> Bumper:
        assert self.app.bumper is not None
        return self.app.bumper

    async def announce(self, component: str, line: str) -> None:
        self.said.append((component, line))

    def recovery(self) -> Recovery:
        return Recovery(self.bumper, self.announce, every=0.01)

    async def bumps(self) -> list[SalEntry]:
        entries = await self.app.services.sal.query(component="builds-api", limit=50)
        return [e for e in entries if e.action == "bump"]


@contextlib.asynccontextmanager
async def started(config: Config) -> AsyncIterator[Restarted]:
    bot = Restarted(config)
    await bot.app.store.open()
    try:
        yield bot
    finally:
        await bot.app.store.close()


async def bump(config: Config, version: str) -> None:
    async with started(config) as bot:
        await bot.bumper.bump("builds-api", version, ["toolsbeta"], actor="console:tester",
                              tasks=["T9"])  # fmt: skip


async def crashed_bump(config: Config, fake: FakeGitLab, version: str, prefix: str,
                       apply: bool) -> None:  # fmt: skip
    """The bump dies while GitLab holds its `prefix` request (applied or not)."""
    held = fake.hold("POST", prefix, apply=apply)
    async with started(config) as bot:
        task = asyncio.create_task(
            bot.bumper.bump(
                "builds-api", version, ["toolsbeta"], actor="console:tester", tasks=["T9"]
            )  # fmt: skip
        )
        try:
            await asyncio.wait_for(held.reached.wait(), timeout=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            held.release()
        assert bot.bumper.intents.pending()


def mr_url(iid: int) -> str:
    return f"https://gitlab.example.org/{CONTROL}/-/merge_requests/{iid}"


async def test_mr_merged_and_its_branch_deleted_before_the_restart(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    await crashed_bump(config, fake, releases[-1], MRS, apply=True)
    head = fake.branch_head(CONTROL, BRANCH)
    async with started(config) as bot:  # someone merges it, deleting the branch
        assert bot.app.services.gitlab is not None
        await bot.app.services.gitlab.merge_mr(CONTROL, 1, remove_source_branch=True)
    assert fake.branch_head(CONTROL, BRANCH) is None
    async with started(config) as bot:
        assert await bot.recovery().once() == 0
        entries = await bot.bumps()
        assert [(e.env, e.commit_sha, e.mr_url, e.result) for e in entries] == [
            ("toolsbeta", head, mr_url(1), "mr-merged")
        ]
        assert entries[0].message.endswith("(recorded after a restart) (bump MR merged)")
        assert bot.said == [("builds-api", (
            f"builds-api {releases[-1]} (toolsbeta) was being proposed when the bot restarted:"
            f" bump MR !1 merged, {mr_url(1)}; its SAL entry is now written; nothing was"
            " applied by it — next: !apply builds-api toolsbeta"
        ))]  # fmt: skip
        assert bot.bumper.intents.pending() == []


async def test_existing_mr_got_the_commit_but_not_its_title(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    await bump(config, releases[0])  # MR !1 proposes the older release
    await crashed_bump(config, fake, releases[1], COMMITS, apply=True)
    [mr] = fake.merge_requests(CONTROL)
    assert mr["title"] == f"builds-api: bump to {releases[0]}"  # not retitled: the crash
    async with started(config) as bot:
        assert await bot.recovery().once() == 0
        [mr] = fake.merge_requests(CONTROL)
        assert mr["title"] == f"builds-api: bump to {releases[1]}"
        assert f"chartVersion: {releases[1]}" in (fake.file(CONTROL, BRANCH, TOOLSBETA) or "")
        newest = (await bot.bumps())[0]
        assert (newest.to_version, newest.commit_sha, newest.result) == (
            releases[1],
            fake.branch_head(CONTROL, BRANCH),
            "mr-updated",
        )
        assert newest.message.endswith("(bump MR updated, not merged yet)")
        assert [line for _, line in bot.said] == [
            f"builds-api {releases[1]} (toolsbeta) was being proposed when the bot restarted:"
            f" bump MR !1 updated, {mr_url(1)}; its SAL entry is now written; nothing was"
            " applied by it — next: !apply builds-api toolsbeta"
        ]


async def test_an_older_identical_bump_in_the_sal_is_not_taken_for_the_lost_one(
    config: Config, fake: FakeGitLab, releases: list[str]
) -> None:
    old = fake.file(CONTROL, "main", TOOLSBETA) or ""
    await bump(config, releases[-1])  # MR !1, recorded; merged, its branch deleted
    async with started(config) as bot:
        assert bot.app.services.gitlab is not None
        await bot.app.services.gitlab.merge_mr(CONTROL, 1, remove_source_branch=True)
    fake.add_commit(CONTROL, "main", {TOOLSBETA: old}, "revert by hand")
    # the same bump again (same message as !1's commit); it dies before GitLab gets it
    await crashed_bump(config, fake, releases[-1], COMMITS, apply=False)
    async with started(config) as bot:
        assert len(await bot.bumps()) == 1
        assert await bot.recovery().once() == 0
        assert len(await bot.bumps()) == 1 and bot.said == []
        assert bot.bumper.intents.pending() == []
    assert len(fake.merge_requests(CONTROL)) == 1


async def test_git_remote_unreachable_at_restart_keeps_the_intent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repos = await make_repos(tmp_path)
    config = git_config(tmp_path, repos)
    version = repos.releases["builds-api"][-1][0]
    work = tmp_path / "work"  # the bot's push, made just before it died
    await git("clone", "--quiet", repos.control_url, str(work))
    path = work / TOOLSBETA
    text = path.read_text()
    old = text.split("chartVersion:", 1)[1].split()[0]
    path.write_text(text.replace(old, version))
    await git("commit", "--quiet", "-am", f"builds-api: bump to {version}", cwd=work)
    sha = (await git("rev-parse", "HEAD", cwd=work)).strip()
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    away = repos.control.with_name("gone.git")
    async with started(config) as bot:
        fields: dict[str, Any] = {"olds": {"toolsbeta": old}, "actor": "console:tester"}
        intent = Intent(sha, "builds-api", version, tasks=["T9"], action="bump", **fields)
        bot.bumper.intents.write(intent)
        repos.control.rename(away)  # the remote cannot be reached
        recovery = bot.recovery()
        with caplog.at_level(logging.WARNING, logger="deploybot.intents"):
            assert await recovery.once() > 0  # asked again later
            assert await recovery.once() > 0  # asked again later
        warnings = [r for r in caplog.records if r.name == "deploybot.intents"]
        assert len(warnings) == 1 and "asked again" in warnings[0].getMessage()
        assert [i.sha for i in bot.bumper.intents.pending()] == [sha]
        assert await bot.bumps() == [] and bot.said == []
        away.rename(repos.control)  # back
        assert await recovery.once() == 0
        assert [(e.env, e.commit_sha) for e in await bot.bumps()] == [("toolsbeta", sha)]
        assert [line.split(";")[0] for _, line in bot.said] == [
            f"builds-api {version} was pushed to main in {sha[:8]} (toolsbeta) just before"
            " the bot restarted"
        ]
        assert bot.bumper.intents.pending() == []
