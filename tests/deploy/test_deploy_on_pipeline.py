"""Staging from CI: a successful default-branch pipeline whose artifacts are found deploys the
environments with `deploy_on_pipeline: true` (and only those), under the same gates as
`!deploy`: a frozen environment refuses with the freeze's line. The real app, webhooks over
HTTP, FakeGitLab for the pipeline's tags, a FakeRegistry with the artifacts, the demo's git
repos and deploy command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config.model import Config, parse_config
from bot.core.git import git
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.fakes.registry import FakeRegistry
from tests.support.releases import new_release
from tests.support.shown import shown
from tests.support.webhookbot import SECRET, RunningBot, fixture

TOKEN = "glpat-test-token-0123456789"
BUILDS = "repos/cloud/toolforge/builds-api"
PIPELINE = 731205


@pytest.fixture
async def registry() -> AsyncIterator[FakeRegistry]:
    async with FakeRegistry() as reg:
        yield reg


async def setup(
    path: Path, tmp: Path, fake: FakeGitLab, registry: FakeRegistry, **extra: Any
) -> tuple[Config, str, dict[str, Any]]:
    """A new builds-api release (git tag, GitLab tag, image and chart pushed), the config
    with GitLab and the registry, and the success webhook of its main pipeline."""
    data = yaml.safe_load(path.read_text())
    repo = Path(data["components"]["builds-api"]["repo_url"].removeprefix("file://"))
    version = await new_release(repo, tmp / "work", 135)
    full = (await git("rev-parse", "HEAD", cwd=tmp / "work")).strip()
    fake.add_project(BUILDS)
    fake.add_commit(BUILDS, "main", {"CHANGES": "change 135\n"}, "change 135", sha=full)
    fake.add_tag(BUILDS, version, full)
    registry.push("toolforge/builds-api", version)  # the demo's image and chart repository
    data["gitlab"] = {"url": fake.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN",
                      "webhook_secret_env": "DEPLOYBOT_TEST_WEBHOOK_SECRET"}  # fmt: skip
    data["registry"] = {"url": registry.url, "kind": "oci"}
    data["monitors"] = {"enabled": False}
    data.update(extra)
    body = fixture("pipeline_success.json")
    body["object_attributes"]["sha"] = full
    body["commit"]["id"] = full
    return parse_config(data), version, body


async def run(config: Config, body: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]]]:
    """Deliver the webhook; what reached chat, and (env, state) of every deploy."""
    async with RunningBot(config) as bot:
        status, _ = await bot.post(body, kind="Pipeline Hook")
        assert status == 200
        await bot.settle()
        assert await bot.app.pipeline_deploys.wait_idle(60)
        assert await bot.app.services.outbox.flush(10)
        rows = await bot.app.store.fetchall("SELECT env, state FROM deploys ORDER BY id")
    return bot.lines(), [(r["env"], r["state"]) for r in rows]


@pytest.fixture
def env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("DEPLOYBOT_TEST_WEBHOOK_SECRET", SECRET)


def with_pipeline_deploys(data: dict[str, Any], envs: set[str]) -> list[dict[str, Any]]:
    return [e | {"deploy_on_pipeline": e["name"] in envs} for e in data["environments"]]


async def test_a_successful_pipeline_deploys_toolsbeta_where_the_config_says_so(
    demo_config_path: Path, tmp_path: Path, registry: FakeRegistry, env_vars: None
) -> None:
    data = yaml.safe_load(demo_config_path.read_text())
    async with FakeGitLab(token=TOKEN) as fake:
        config, version, body = await setup(
            demo_config_path, tmp_path, fake, registry,
            environments=with_pipeline_deploys(data, {"toolsbeta"}),
        )  # fmt: skip
        lines, deploys = await run(config, body)
    said = [x for x in lines if f"because pipeline #{PIPELINE} succeeded" in x]
    assert said == [
        f"[#toolforge-deploy] deploying builds-api {shown(version)} to toolsbeta because pipeline"
        f" #{PIPELINE} succeeded"
    ], lines
    assert deploys == [("toolsbeta", "done")], lines
    live = yaml.safe_load((demo_config_path.parent / "live" / "toolsbeta.yaml").read_text())
    assert version in str(live)


async def test_no_deploy_where_the_config_does_not_say_so(
    demo_config_path: Path, tmp_path: Path, registry: FakeRegistry, env_vars: None
) -> None:
    async with FakeGitLab(token=TOKEN) as fake:
        config, version, body = await setup(demo_config_path, tmp_path, fake, registry)
        lines, deploys = await run(config, body)
    assert any(f"builds-api {shown(version)}: image" in x for x in lines), lines  # it was found
    assert not any("because pipeline" in x for x in lines) and deploys == []


async def test_a_frozen_environment_refuses_with_the_freeze_line(
    demo_config_path: Path, tmp_path: Path, registry: FakeRegistry, env_vars: None
) -> None:
    data = yaml.safe_load(demo_config_path.read_text())
    now = datetime.now(UTC)  # a freeze around now, whatever the date (was: until 2099-01-01)
    freeze = {"envs": ["toolsbeta"], "start": (now - timedelta(days=1)).isoformat(),
              "end": (now + timedelta(days=365)).isoformat(), "reason": "end of year"}  # fmt: skip
    async with FakeGitLab(token=TOKEN) as fake:
        config, version, body = await setup(
            demo_config_path, tmp_path, fake, registry,
            environments=with_pipeline_deploys(data, {"toolsbeta"}), freezes=[freeze],
        )  # fmt: skip
        lines, deploys = await run(config, body)
    [line] = [x for x in lines if "although pipeline" in x]
    assert line.startswith(
        f"[#toolforge-deploy] not deploying builds-api {shown(version)} to toolsbeta although"
        " pipeline"
        f" #{PIPELINE} succeeded: "
    ), line
    assert "refused: toolsbeta is frozen: config freeze of toolsbeta" in line, line
    assert line.endswith("end of year; nothing run (--emergency, or an admin's --force with a"
                         " reason)"), line  # fmt: skip
    assert deploys == []
    control = Path(config.control_repo.url.removeprefix("file://"))  # type: ignore[union-attr]
    pin = await git("show", "main:components/builds-api/values/toolsbeta.yaml", cwd=control)
    assert version not in pin  # nothing was pinned either
