"""Pipeline progress, artifacts, MR notes and control-repo MR lines, end to end.

The real app (console chat) receives webhooks over HTTP and talks to FakeGitLab through the
real python-gitlab client; assertions are on what reaches chat and what GitLab was asked.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config.model import Config, parse_config
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.shown import shown, shown_all
from tests.support.webhookbot import SECRET, RunningBot, fixture

TOKEN = "glpat-test-token-0123456789"
BUILDS = "repos/cloud/toolforge/builds-api"
SHA = "322f874b1f5e3a6c9d0e2b7a8c4f6d1e0b9a7c35"
VERSION = "0.0.131-20240222212602-322f874b"
URL = f"https://gitlab.wikimedia.org/{BUILDS}/-/pipelines/731205"
HEAD = "[#builds] builds-api: pipeline 731205 on main (322f874b)"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(token=TOKEN) as gl:
        gl.add_project(BUILDS)
        gl.add_commit(BUILDS, "retry-pushes", {"retry.py": "x\n"}, "builds: retry pushes", sha=SHA)
        gl.add_merge_request(BUILDS, "retry-pushes", "main", "builds: retry pushes on 502",
                             state="merged")  # fmt: skip
        yield gl


def make_config(path: Path, **changes: Any) -> Config:
    """The demo config with builds-api announced in #builds, plus `changes` (dotted keys)."""
    data = yaml.safe_load(path.read_text())
    data["components"]["builds-api"]["room"] = "#builds"
    data["monitors"] = {"enabled": False}  # no periodic checks: only webhook lines reach chat
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_config(data)


@pytest.fixture
def gitlab_config(
    demo_config_path: Path, fake: FakeGitLab, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)
    return make_config(
        demo_config_path,
        gitlab={"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN",
                "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET"},
        registry={"url": "https://tools-harbor.wmcloud.org", "kind": "harbor"},
    )  # fmt: skip


async def deliver(bot: RunningBot, *names: str, kind: str = "Pipeline Hook") -> None:
    """Deliver fixtures one at a time, each processed and printed before the next."""
    for name in names:
        status, _ = await bot.post(fixture(name), kind=kind)
        assert status == 200
        await bot.settle()


def requests_to(fake: FakeGitLab, method: str, suffix: str) -> int:
    return sum(1 for r in fake.requests if r.method == method and r.path.endswith(suffix))


async def test_pipeline_progress_artifacts_and_mr_note(
    gitlab_config: Config, fake: FakeGitLab
) -> None:
    fake.add_tag(BUILDS, "v1-not-a-release", SHA)
    fake.add_tag(BUILDS, VERSION, SHA)
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_created.json", "pipeline_running_stage2.json",
                      "pipeline_success.json")  # fmt: skip
        row = await bot.app.store.fetchone(
            "SELECT component, status, stage, version FROM pipelines WHERE pipeline_id=731205"
        )
    assert bot.lines() == [
        f"{HEAD} started by gitlab:raymond-ndibe: builds: retry registry pushes on 502",
        f"{HEAD}: stage 2/3 test",
        f"{HEAD}: success in 7m25s {URL}",
        f"[#builds] builds-api {shown(VERSION)}: image tools-harbor.wmcloud.org/toolforge/builds-api:"
        f"{VERSION} · chart oci://tools-harbor.wmcloud.org/toolforge/builds-api:{VERSION}"
        " · next: !deploy builds-api 322f874b",
    ]
    assert row is not None
    assert tuple(row) == ("builds-api", "success", "3/3 publish", VERSION)
    [note] = fake.notes(BUILDS, 1)
    assert f"`{VERSION}`" in note["body"] and URL in note["body"]
    assert "`oci://tools-harbor.wmcloud.org/toolforge/builds-api:" in note["body"]
    assert "`!deploy builds-api 322f874b`" in note["body"]


async def test_tag_pipeline_of_the_same_commit_does_not_repeat_the_artifacts(
    gitlab_config: Config, fake: FakeGitLab
) -> None:
    fake.add_tag(BUILDS, VERSION, SHA)
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_success.json", "pipeline_tag_success.json")
    assert sum("pipeline 731230 on tag" in line and "success" in line for line in bot.lines()) == 1
    assert sum("!deploy builds-api 322f874b" in line for line in bot.lines()) == 1
    assert len(fake.notes(BUILDS, 1)) == 1


async def test_version_from_the_job_log_when_the_commit_has_no_release_tag(
    demo_config_path: Path, fake: FakeGitLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    config = make_config(  # no registry configured: the host comes from the log line
        demo_config_path,
        gitlab={"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN", "mr_notes": False},
    )
    fake.set_job_trace(BUILDS, 2934, f"$ publish\nPushed: registry.example.org/toolforge/"
                                     f"builds-api:{VERSION}\nJob succeeded\n")  # fmt: skip
    async with RunningBot(config) as bot:
        await deliver(bot, "pipeline_success.json")
    assert bot.lines()[-1] == (
        f"[#builds] builds-api {shown(VERSION)}: image registry.example.org/toolforge/builds-api:"
        f"{VERSION} · chart oci://registry.example.org/toolforge/builds-api:{VERSION}"
        " · next: !deploy builds-api 322f874b"
    )
    assert requests_to(fake, "GET", "/jobs/2934/trace") == 1
    assert requests_to(fake, "POST", "/notes") == 0, "mr_notes: false"


async def test_no_version_found_is_said_plainly(gitlab_config: Config, fake: FakeGitLab) -> None:
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_success.json")
    assert bot.lines()[-1] == (
        "[#builds] builds-api 322f874b: no release version found for this commit"
        " (no release tag on it, no matching line in the job logs)"
    )
    assert fake.notes(BUILDS, 1) == []


async def test_failing_mr_note_is_logged_not_fatal(
    gitlab_config: Config, fake: FakeGitLab, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add_tag(BUILDS, VERSION, SHA)
    fake.fail_next("POST", f"/projects/{BUILDS}/merge_requests/1/notes", 500)
    caplog.set_level(logging.WARNING, logger="deploybot.pipelines")
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_success.json")
        assert [r["status"] for r in await bot.events()] == ["processed"]
    assert "!deploy builds-api 322f874b" in bot.lines()[-1]
    assert any("cannot comment on the MR" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


async def test_failed_pipeline_names_the_failed_job(gitlab_config: Config) -> None:
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_running_stage2.json", "pipeline_failed.json")
    assert bot.lines() == [
        f"{HEAD}: stage 2/3 test",
        f"{HEAD}: failed in 4m57s (failed: pytest) {URL}",
    ]


async def test_late_and_repeated_deliveries_are_not_announced(gitlab_config: Config) -> None:
    async with RunningBot(gitlab_config) as bot:
        await deliver(bot, "pipeline_failed.json", "pipeline_running_stage2.json",
                      "pipeline_created.json", "pipeline_failed.json")  # fmt: skip
        row = await bot.app.store.fetchone("SELECT status FROM pipelines WHERE pipeline_id=731205")
    assert bot.lines() == [f"{HEAD}: failed in 4m57s (failed: pytest) {URL}"]
    assert row is not None and row["status"] == "failed"


async def test_mr_and_feature_branch_pipelines_only_when_configured(
    demo_config_path: Path,
) -> None:
    branch = fixture("pipeline_running_stage2.json")
    branch["object_attributes"].update(ref="retry-pushes", id=731206)
    quiet = make_config(demo_config_path)
    async with RunningBot(quiet) as bot:
        await deliver(bot, "pipeline_mr.json")
        await bot.post(branch)
        await bot.settle()
        rows = await bot.app.store.fetchall("SELECT pipeline_id, status FROM pipelines")
    assert bot.lines() == []
    assert sorted(tuple(r) for r in rows) == [(731188, "running"), (731206, "running")]

    loud = make_config(
        demo_config_path,
        gitlab={"url": "http://127.0.0.1:9", "announce_mr_pipelines": True,
                "announce_branches": ["retry-*"]},
        bot__state_dir=str(demo_config_path.parent / "fresh-state"),
    )  # fmt: skip
    async with RunningBot(loud) as bot:
        await deliver(bot, "pipeline_mr.json")
        await bot.post(branch, token=None)
        await bot.settle()
    assert bot.lines() == [
        "[#builds] builds-api: pipeline 731188 on MR !57 (9b1e77c0): stage 1/2 build",
        "[#builds] builds-api: pipeline 731206 on retry-pushes (322f874b): stage 2/3 test",
    ]


async def test_component_matched_by_project_id(demo_config_path: Path) -> None:
    moved = fixture("pipeline_running_stage2.json")
    moved["project"].update(id=4242, path_with_namespace="elsewhere/renamed")
    config = make_config(demo_config_path, **{"components__jobs-api__project_id": 4242})
    async with RunningBot(config) as bot:
        await bot.post(moved, token=None)
        await bot.settle()
    assert bot.lines() == [
        "[#toolforge-deploy] jobs-api: pipeline 731205 on main (322f874b): stage 2/3 test"
    ]


async def test_tag_pipeline_without_gitlab_api_uses_the_tag_as_version(
    demo_config_path: Path,
) -> None:
    async with RunningBot(make_config(demo_config_path)) as bot:
        await bot.post(fixture("pipeline_tag_success.json"), token=None)
        await bot.settle()
    assert bot.lines()[-1] == (
        f"[#builds] builds-api {shown(VERSION)}: image toolforge/builds-api:{VERSION}"
        f" · chart toolforge/builds-api:{VERSION} · next: !deploy builds-api 322f874b"
    )


def mr_event(name: str, **attrs: Any) -> dict[str, Any]:
    body = copy.deepcopy(fixture(name))
    body["object_attributes"].update(attrs)
    return body


async def test_control_repo_bump_mr_lines_once_per_change(demo_config_path: Path) -> None:
    old_title = "builds-api: bump to 0.0.130-20240220101500-8e1d2c3a"
    opened = mr_event("mr_opened.json", title=old_title,
                      last_commit={"id": "1f2e3d4c5b6a79880f1e2d3c4b5a69788f1e2d3c"})  # fmt: skip
    relabelled = mr_event("mr_updated.json", labels=[{"title": "deploy"}])
    other = mr_event("mr_opened.json", iid=413, source_branch="docs", title="Fix README",
                     url="https://gitlab.wikimedia.org/x/-/merge_requests/413")  # fmt: skip
    async with RunningBot(make_config(demo_config_path)) as bot:
        for body in (opened, fixture("mr_updated.json"), relabelled, fixture("mr_merged.json"),
                     fixture("mr_merged.json"), other):  # fmt: skip
            assert (await bot.post(body, kind="Merge Request Hook", token=None))[0] == 200
            await bot.settle()
    mr = "https://gitlab.wikimedia.org/repos/cloud/toolforge/toolforge-deploy/-/merge_requests/412"
    # (a merged bump may also start an auto-apply deploy: other lines, not asserted here)
    assert [line for line in bot.lines() if " MR !" in line] == [
        f"[#builds] builds-api bump MR !412 opened by gitlab:toolforge-deploybot: {shown_all(old_title)}"
        f" {mr}",
        f"[#builds] builds-api bump MR !412 updated by gitlab:toolforge-deploybot: "
        f"builds-api: bump to {shown(VERSION)} {mr}",
        f"[#builds] builds-api bump MR !412 merged by gitlab:raymond-ndibe: "
        f"builds-api: bump to {shown(VERSION)} {mr}",
        "[#toolforge-deploy] control repo MR !413 opened by gitlab:toolforge-deploybot: Fix README"
        " https://gitlab.wikimedia.org/x/-/merge_requests/413",
    ]
