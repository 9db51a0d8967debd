"""Unapplied changes where a cluster is configured: the periodic `helmfile diff`, run by the
recording helmfile stand-in (tests/support/bin; no real API server can run here). It passes
`--selector name=<release>` for each of the component's releases, asks helm-diff for its
three-way merge (hand edits show), never runs more than `cluster.max_parallel_helm` at once
on one cluster, and says what the diff names (or that the cluster was changed by hand)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import App
from bot.config.model import parse_config
from bot.core.git import git
from tests.support.fakes.kube import FakeKube
from tests.support.procs import most_at_once

BIN = Path(__file__).parents[1] / "support" / "bin"


@pytest.fixture
async def app(
    demo_config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[App]:
    """The demo with toolsbeta on a cluster (a FakeKube; only helmfile would talk to it) and
    a third component made of two releases; the stand-in helmfile first on PATH."""
    data: dict[str, Any] = yaml.safe_load(demo_config_path.read_text())
    data.pop("demo", None)
    data.pop("deploy", None)  # the default deploy.diff: `helmfile ... diff --detailed-exitcode`
    data["monitors"] = {"unapplied_every": 600}
    data["cluster"] = {"max_parallel_helm": 2}
    data["components"]["builds-worker"] = {
        "repo_url": data["components"]["builds-api"]["repo_url"],
        "releases": ["builds-worker", "builds-worker-jobs"],
    }
    async with FakeKube() as kube:
        beta = next(e for e in data["environments"] if e["name"] == "toolsbeta")
        beta.pop("live_file")
        beta.update(kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")), kube_context="fake")
        monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_HELM_RECORD", str(tmp_path / "calls.jsonl"))
        monkeypatch.setenv("FAKE_HELM_CONTROL", str(tmp_path / "control.json"))
        monkeypatch.setenv("FAKE_HELM_SPANS", str(tmp_path / "spans.jsonl"))
        (tmp_path / "control.json").write_text(json.dumps({"helmfile diff": {"sleep": 0.5}}))
        app = App(parse_config(data))
        await app.store.open()
        try:
            yield app
        finally:
            for cluster in app.services.clusters.values():
                await cluster.close()
            await app.store.close()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_diffs_select_the_releases_and_respect_the_cluster_limit(
    app: App, tmp_path: Path
) -> None:
    await app.unapplied.check_now()

    diffs = [c for c in lines(tmp_path / "calls.jsonl") if c["sub"] == "diff"]
    assert len(diffs) == 3  # three components in toolsbeta; tools has no cluster
    selectors = {tuple(w for w in c["argv"] if w.startswith("name=")) for c in diffs}
    assert selectors == {
        ("name=builds-api",), ("name=jobs-api",), ("name=builds-worker", "name=builds-worker-jobs"),
    }  # fmt: skip
    for call in diffs:
        assert call["argv"][call["argv"].index("--selector") - 1] != "--selector"
        assert "--detailed-exitcode" in call["argv"]
        assert call["env"]["HELM_KUBECONTEXT"] == "fake"
        assert call["env"]["HELM_DIFF_THREE_WAY_MERGE"] == "true"
    assert most_at_once(lines(tmp_path / "spans.jsonl")) == 2  # never 3, but in parallel

    found, _ = app.unapplied.findings()
    texts = {f.component: f.text for f in found if f.env == "toolsbeta"}
    assert texts["builds-api"] == (
        "applying main would change 2 resources: Deployment/builds-api,"
        " ConfigMap/builds-api-config (helmfile diff); no apply by this bot recorded there;"
        " next: !apply builds-api toolsbeta"
    )

    # nothing moved: no diff runs again within the interval
    await app.unapplied.check_now()
    assert len([c for c in lines(tmp_path / "calls.jsonl") if c["sub"] == "diff"]) == 3


async def test_a_hand_edit_shows_without_any_commit_and_clears_when_the_diff_is_clean(
    app: App, tmp_path: Path
) -> None:
    bare = Path(app.config.control_repo.url.removeprefix("file://"))  # type: ignore[union-attr]
    main = (await git("rev-parse", "main", cwd=bare)).strip()
    await app.store.execute(
        "INSERT INTO deploys (component, env, action, version, commit_sha, actor, state,"
        " started_at) VALUES ('builds-api', 'toolsbeta', 'apply', 'v', ?, 'console:root',"
        " 'done', ?)",
        (main, time.time()),
    )
    await app.unapplied.check_now()
    found, scopes = app.unapplied.findings()
    text = next(f.text for f in found if (f.component, f.env) == ("builds-api", "toolsbeta"))
    assert f"; no control-repo commit since the last apply ({main[:8]}): changed in the" in text
    assert ("unapplied", "builds-api", "toolsbeta") in scopes

    # main moves and helm-diff finds nothing any more (exit 0): checked, nothing found
    (tmp_path / "control.json").write_text(json.dumps({"helmfile diff": {"exit": 0}}))
    work = tmp_path / "work"
    await git("clone", "--quiet", str(bare), str(work))
    (work / "README.md").write_text("moved\n")
    await git("commit", "--quiet", "-am", "readme", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    await app.unapplied.check_now()
    found, scopes = app.unapplied.findings()
    assert not [f for f in found if (f.component, f.env) == ("builds-api", "toolsbeta")]
    assert ("unapplied", "builds-api", "toolsbeta") in scopes


async def test_changes_the_bot_cannot_read_are_said_and_a_failed_diff_changes_nothing(
    app: App, tmp_path: Path
) -> None:
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"helmfile diff": {"output": "something moved\n", "exit": 2}}))
    await app.unapplied.check_now()
    found, _ = app.unapplied.findings()
    text = next(f.text for f in found if (f.component, f.env) == ("jobs-api", "toolsbeta"))
    assert text.startswith("applying main would change resources helmfile diff did not name")
    assert "0 resources" not in text
    assert await app.unapplied.state.source("jobs-api", "toolsbeta") == (
        "changes (see the helmfile diff)",
    )

    # the next diff fails (the cluster is unreachable): the pair is left as it was, not cleared
    control.write_text(json.dumps({"helmfile diff": {"output": "Error: no cluster\n", "exit": 1}}))
    bare = Path(app.config.control_repo.url.removeprefix("file://"))  # type: ignore[union-attr]
    work = tmp_path / "work"
    await git("clone", "--quiet", str(bare), str(work))
    (work / "README.md").write_text("main moves: the diff runs again\n")
    await git("commit", "--quiet", "-am", "readme", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    await app.unapplied.check_now()
    found, scopes = app.unapplied.findings()
    assert ("unapplied", "jobs-api", "toolsbeta") not in scopes
    assert app.unapplied.state.errors[("jobs-api", "toolsbeta")] == (
        "helmfile diff exited 1: Error: no cluster"
    )
