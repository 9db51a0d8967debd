"""No false and no repeated look-up lines.

With no `gitlab:` section nothing can be looked up, yet every successful pipeline said "no
release version found for this commit (...)", once per pipeline: 148 identical lines in one
run, half the outbox. Now a success says nothing about versions without GitLab, and with
GitLab a commit's look-up note is said once, not once per pipeline on it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from bot.config.model import Config, parse_config
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.webhookbot import RunningBot, fixture

pytestmark = pytest.mark.faults

SHA = "c0ffee" + "0" * 34
LOOKUP = ("release version", "looked up", "version not")


def pipeline(n: int) -> dict[str, object]:
    body = copy.deepcopy(fixture("pipeline_success.json"))
    body["object_attributes"]["id"] = 930000 + n
    body["object_attributes"]["sha"] = SHA
    return body


def bot_config(path: Path, gitlab: dict[str, object] | None) -> Config:
    data = yaml.safe_load(path.read_text())
    data["monitors"] = {"enabled": False}
    data.pop("gitlab", None)
    if gitlab is not None:
        data["gitlab"] = gitlab
    return parse_config(data)


async def test_fifty_pipelines_on_one_commit_without_gitlab_say_nothing_about_versions(
    demo_config_path: Path,
) -> None:
    async with RunningBot(bot_config(demo_config_path, None)) as bot:
        for n in range(50):
            assert (await bot.post(pipeline(n), token=None))[0] == 200
        await bot.settle()
        lines = bot.lines()
    finals = [ln for ln in lines if f"{SHA[:8]}" in ln and "success" in ln]
    assert sum(ln.count("success") for ln in finals) >= 50, lines  # every final was said
    assert [ln for ln in lines if any(w in ln for w in LOOKUP)] == []


async def test_a_commits_lookup_note_is_said_once_not_once_per_pipeline(
    demo_config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", "glpat-notes-0123456789")
    async with FakeGitLab(token="glpat-notes-0123456789") as gl:
        gl.add_project("repos/cloud/toolforge/builds-api")  # no tags, no job logs
        config = bot_config(
            demo_config_path,
            {"url": gl.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN", "mr_notes": False},
        )
        async with RunningBot(config) as bot:
            for n in range(10):
                assert (await bot.post(pipeline(n), token=None))[0] == 200
                await bot.settle()
            lines = bot.lines()
    notes = [ln for ln in lines if any(w in ln for w in LOOKUP)]
    assert len(notes) == 1, notes
