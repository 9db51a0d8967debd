"""`!apply` end to end: the real App, real git, the recording helmfile on PATH, FakeKube
behind a kubeconfig (the real kubernetes client), a real OCI registry (docker-registry)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.cluster.runner import RunnerError, changed_resources, diff_outcome, fill, run
from bot.cluster.watch import KINDS
from bot.control.forge import OpenBump
from bot.control.pins import read_pin, replace_pin
from bot.core.windows import DAYS
from bot.deploy.followup import Deployed, follow_up
from bot.deploy.model import DeployRequest
from tests.support.bumpworld import FIXTURE, base_config
from tests.support.deployworld import IMAGE, NS, DeployBed, bed
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.shown import said, shown

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL

__all__ = ["bed"]

# the default deploy.diff and deploy.apply: only the component's release (`{selectors}`)
DIFF_ARGV = ["-e", "toolsbeta", "--file", "components/builds-api/helmfile.yaml", "diff",
             "--detailed-exitcode", "--suppress-secrets", "--context", "5",
             "--selector", "name=builds-api"]  # fmt: skip
APPLY_ARGV = ["-e", "toolsbeta", "--file", "components/builds-api/helmfile.yaml", "apply",
              "--wait", "--suppress-secrets", "--selector", "name=builds-api"]  # fmt: skip


def seed_rollout(bed: DeployBed, **rollout: object) -> tuple[str, str, asyncio.Task[None]]:
    """toolsbeta runs the release before its pin; the apply's sync starts the rollout."""
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})

    def start() -> None:
        bed.kube.start_rollout(NS, "builds-api", version=new, **rollout)  # type: ignore[arg-type]

    return old, new, asyncio.create_task(bed.on_sync(start))


def replies(out: list[str]) -> list[str]:
    """What the bot answered (private console lines), without room announcements."""
    return [line for line in out if not line.startswith("[#")]


def announced(out: list[str]) -> list[str]:
    """The deploy lines announced in the component's room (monitors announce there too)."""
    lines = [line.removeprefix("[#toolforge-deploy] ") for line in out if line.startswith("[#")]
    return [line for line in lines if line.startswith(("deploying ", "deploy #"))]


async def test_apply_runs_the_real_argv_at_the_pinned_commit_and_verifies_live(
    bed: DeployBed,
) -> None:
    old, new, started = seed_rollout(bed, ready_after_polls=None)

    async def finish_while_watched() -> None:
        await started
        await bed.kube.wait_for_watches(len(KINDS), timeout=20)  # the bot watches the rollout
        bed.kube.finish_rollout(NS, "builds-api")

    rollout = asyncio.create_task(finish_while_watched())
    head = await bed.main_head()
    log_text: list[str] = []

    async def fetch_log(app: App) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{bed.data['bot']['public_url']}/deploys/1/log") as resp:
                assert resp.status == 200
                log_text.append(await resp.text())
            async with http.get(f"{bed.data['bot']['public_url']}/deploys/99/log") as resp:
                assert resp.status == 404
            async with http.get(f"{bed.data['bot']['public_url']}/metrics") as resp:
                log_text.append(await resp.text())

    s = await bed.run(["!apply builds-api toolsbeta T123"], inspect=fetch_log)
    await rollout

    calls = bed.records()
    assert [(c["tool"], c["argv"]) for c in calls] == [
        ("helmfile", DIFF_ARGV),
        ("helmfile", APPLY_ARGV),
    ]
    for call in calls:
        assert call["head"] == head and call["chartVersion"] == new
        assert call["cwd"] == str(bed.tmp / "demo" / "var" / "deploys" / "1")
        assert call["env"]["KUBECONFIG"] == str(bed.tmp / "kubeconfig")
        assert call["env"]["HELM_KUBECONTEXT"] == "toolsbeta"
        assert call["env"]["DEPLOYBOT_VERSION"] == new
        assert "FAKE_SECRET" not in call["env"]
    url = f"{bed.data['bot']['public_url']}/deploys/1/log"
    start, diff, *brings, done = announced(s.out)  # start -> diff -> brings -> done, once each
    assert all(" brings " in line for line in brings) and len(brings) <= 1
    assert start == (
        f"deploying builds-api {shown(new)} to toolsbeta (deploy #1, T123) from main@{head[:8]}"
        " · artifacts present"
    )
    assert diff == (
        "deploy #1 diff: 2 resources changed: builds-api/Deployment (apps)/builds-api,"
        " builds-api/ConfigMap (v1)/builds-api-config"
    )
    assert re.fullmatch(
        rf"deploy #1 done: builds-api {re.escape(shown(new))} to toolsbeta \(T123\) in \d+s: live version"
        rf" verified · log: {re.escape(url)}",
        done,
    )
    assert (
        said(s.out).count(done) == 1
    )  # said once: the console shows the room, no reply repeats it
    assert "Comparing release=builds-api" in log_text[0] and "helmfile apply: ok" in log_text[0]
    assert 'deploybot_deploys_total{result="done"} 1.0' in log_text[1]
    assert [(e.action, e.result) for e in s.sal] == [("apply", "started"), ("apply", "done")]
    for e in s.sal:
        assert (e.from_version, e.to_version, e.commit_sha) == (old, new, head)
        assert (e.tasks, e.log_url, e.env, e.sal_project) == (
            ["T123"],
            url,
            "toolsbeta",
            "toolsbeta",
        )
    assert (
        s.sal[0].message
        == f"alice: builds-api {old} -> {new} in toolsbeta ({head[:8]}, T123): apply started (artifacts present)"
    )
    assert [(d["state"], d["commit_sha"], d["version"]) for d in s.deploys] == [("done", head, new)]


async def test_apply_that_exits_non_zero_fails_in_one_line(bed: DeployBed) -> None:
    bed.push(bed.pins["toolsbeta"])
    bed.script(
        {
            "helmfile apply": {
                "exit": 1,
                "output": "Error: UPGRADE FAILED: another operation is in progress\n",
            }
        }
    )

    s = await bed.run(["!apply builds-api toolsbeta"])

    assert re.fullmatch(
        r"deploy #1 failed: builds-api 0\.0\.\d+ \(\w{8}\) to toolsbeta in \d+s: apply exited 1: Error: UPGRADE"
        r" FAILED: another operation is in progress · hint: .* · log: http://\S+/deploys/1/log",
        said(s.out)[-1],
    )
    assert [e.result for e in s.sal] == ["started", "failed"]
    assert s.deploys[0]["state"] == "failed"


async def test_rollout_that_never_completes_times_out(bed: DeployBed) -> None:
    bed.data["deploy"]["rollout_timeout"] = 1
    *_, rollout = seed_rollout(bed, ready_after_polls=None)

    s = await bed.run(["!apply builds-api toolsbeta"])
    await rollout

    assert "failed" in said(s.out)[-1]
    assert (
        "rollout failed: rollout not complete after 1s: builds-api 0/2 updated, 2/2 available"
        in said(s.out)[-1]
    )
    assert [e.result for e in s.sal] == ["started", "failed"]


async def test_image_pull_backoff_fails_fast_quoting_the_reason(bed: DeployBed) -> None:
    bed.data["deploy"]["rollout_timeout"] = 60
    reason = 'Back-off pulling image "harbor.example.org/toolforge/builds-api:gone"'
    *_, rollout = seed_rollout(bed, failure=("ImagePullBackOff", reason))

    s = await bed.run(["!apply builds-api toolsbeta"])
    await rollout

    assert "rollout failed: pod builds-api-" in said(s.out)[-1]
    assert f": ImagePullBackOff: {reason}" in said(s.out)[-1]
    assert "hint: the image cannot be pulled" in said(s.out)[-1]
    assert ": !rollback builds-api toolsbeta · log: " in said(s.out)[-1]
    assert re.search(r" in [0-9]s: ", said(s.out)[-1])  # fast, not the 60 s rollout timeout
    assert [e.result for e in s.sal] == ["started", "failed"]


async def test_missing_image_refuses_before_anything_runs(bed: DeployBed) -> None:
    version = bed.pins["toolsbeta"]
    bed.push(version, image=False)

    s = await bed.run(["!apply builds-api toolsbeta"])

    assert replies(s.out) == [
        f"apply: refused: image {IMAGE}:{version} missing from the registry; nothing run"
    ]
    assert bed.records() == []
    assert [(e.action, e.result) for e in s.sal] == [("apply", "refused")]
    assert s.deploys == []


async def test_outside_the_window_refuses_unless_an_admin_forces(bed: DeployBed) -> None:
    *_, rollout = seed_rollout(bed)
    closed_day = DAYS[(datetime.now(UTC).weekday() + 2) % 7].capitalize()
    window = f"{closed_day} 10:00-11:00 UTC"
    next(e for e in bed.data["environments"] if e["name"] == "toolsbeta")["windows"] = [window]

    refused = await bed.run(["!apply builds-api toolsbeta"], user="carol")
    forced = await bed.run(["!apply builds-api toolsbeta --force"], user="alice")
    await rollout

    assert re.fullmatch(
        rf"apply: refused: toolsbeta is outside the deploy windows \({window}\); next opens"
        r" .* UTC; nothing run \(an admin may add --force\)",
        replies(refused.out)[0],
    )
    assert "done" in said(forced.out)[-1]
    results = [(e.actor, e.result) for e in forced.sal]
    assert results == [
        ("console:carol", "refused"),
        ("console:alice", "started"),
        ("console:alice", "done"),
    ]
    assert "overridden with --force" in forced.sal[1].message
    assert len(bed.records()) == 2  # diff + sync, once


async def test_deployer_without_rights_for_the_env_is_refused_and_logged(bed: DeployBed) -> None:
    s = await bed.run(
        ["!apply builds-api tools", "!apply builds-api toolsbeta --force"], user="bob"
    )

    assert replies(s.out) == [
        "apply: refused: you need the deployer role for builds-api in tools; see !whoami",
        "apply: refused: --force: you need the admin role for builds-api in toolsbeta; see !whoami",
    ]
    assert bed.records() == []
    assert [(e.actor, e.env, e.result) for e in s.sal] == [
        ("console:bob", "tools", "refused"),
        ("console:bob", "toolsbeta", "refused"),
    ]


async def test_requires_checks_the_live_version_of_the_required_env(bed: DeployBed) -> None:
    live = bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=live)
    want = bed.pins["tools"]
    bed.push(want)
    tools = next(e for e in bed.data["environments"] if e["name"] == "tools")
    Path(tools["live_file"]).write_text(f"builds-api: {bed.releases[0]}\n")  # behind its pin

    refused = await bed.run(["!apply builds-api tools"], user="carol")
    forced = await bed.run(["!apply builds-api tools --force"], user="alice")

    assert replies(refused.out) == [
        f"apply: refused: tools requires toolsbeta, which does not run {shown(want)}"
        f" (live: {shown(live)});"
        " nothing run (deploy it to toolsbeta first)"
    ]
    assert said(forced.out)[-1].startswith(f"deploy #1 done: builds-api {shown(want)} to tools in ")
    assert "not verified (no cluster)" in said(forced.out)[-1]
    assert [c["argv"][1] for c in bed.records()] == ["tools", "tools"]
    assert "KUBECONFIG" not in bed.records()[0]["env"]


async def test_bump_mr_gets_a_note_per_env_and_is_merged_once_every_env_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control, branch = "repos/cloud/toolforge/toolforge-deploy", "bump_builds-api"
    paths = {env: f"components/builds-api/values/{env}.yaml" for env in ("toolsbeta", "tools")}
    new = "0.0.140-20240301120000-abcdef12"
    async with FakeGitLab(token="glpat-deploy-test") as gl:
        files = {
            str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*") if p.is_file()
        }
        gl.add_project(control, files=files)
        gl.add_project("repos/cloud/toolforge/builds-api")
        old = {env: read_pin(files[path], "chartVersion") for env, path in paths.items()}
        gl.add_commit(
            control,
            branch,
            {p: replace_pin(files[p], "chartVersion", new) for p in paths.values()},
            "bump",
        )
        mr = gl.add_merge_request(control, branch, "main", f"builds-api: bump to {new}")
        monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", "glpat-deploy-test")
        config = base_config(
            tmp_path,
            {"forge": "gitlab", "project": control, "merge_when_deployed": True},
            {"builds-api": {"project": "repos/cloud/toolforge/builds-api"}},
            gitlab={"url": gl.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"},
        )
        app = App(config, console=ConsoleAdapter(io.StringIO(""), io.StringIO(), user="tester"))
        await app.start()
        try:
            deployer = app.deployer
            assert deployer is not None
            bump = OpenBump(mr["iid"], mr["web_url"], branch)
            states = []
            for env in ("toolsbeta", "tools"):
                req = DeployRequest("builds-api", env, "console:tester")
                deploy_id = await deployer.records.insert(req, new, old[env], "c0ffee", bump)
                await deployer.records.set_state(deploy_id, "done")
                tests = (
                    (
                        "functional tests 2 passed, 0 failed: http://127.0.0.1:9/diffs/ab12",
                        "ok 1 jobs\nok 2 builds",
                    )
                    if env == "toolsbeta"
                    else ("", "")
                )
                done = Deployed("builds-api", env, new, "console:tester", deploy_id, "done", "9s",
                                deployer.report.log_url(deploy_id), *tests)  # fmt: skip
                await follow_up(app.services, app.bumper, bump, done)
                states.append(gl.merge_requests(control)[0]["state"])
            sal = await app.services.sal.query(limit=5)
        finally:
            await app.stop()
    notes = [n["body"] for n in gl.notes(control, mr["iid"])]
    assert notes == [
        f"Deployed builds-api {new} on TOOLSBETA: PASSED (deploy #1 by tester, 9s)."
        " Log: http://127.0.0.1:9/deploys/1/log\n\nFunctional tests 2 passed, 0 failed:"
        " http://127.0.0.1:9/diffs/ab12\n\n```\nok 1 jobs\nok 2 builds\n```",
        f"Deployed builds-api {new} on TOOLS: PASSED (deploy #2 by tester, 9s)."
        " Log: http://127.0.0.1:9/deploys/2/log",
    ]
    assert states == ["opened", "merged"]  # tools did not run it after the first deploy
    assert (sal[0].action, sal[0].result, sal[0].mr_url) == ("merge", "merged", mr["web_url"])


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie waiting for init to reap it is dead too


async def test_a_command_past_its_timeout_is_killed_with_its_whole_process_group(
    tmp_path: Path,
) -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "7.log"

    result = await run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=1.5,
        log_path=log,
    )

    assert result.timed_out and result.returncode is None
    child = int(result.output.split()[1])
    for _ in range(200):  # SIGKILL delivery is asynchronous: poll for up to 10 s
        if _gone(child):
            break
        await asyncio.sleep(0.05)
    assert _gone(child)
    assert "[deploybot] killed after 1.5s timeout" in log.read_text()


def test_placeholders_are_filled_and_unsafe_values_refused() -> None:
    values = {"component": "builds-api", "env": "tools", "version": "0.0.1-2024-abc"}
    assert fill(["-e", "{env}", "--set", "v={version}", "{kube_context}"], values) == [
        "-e", "tools", "--set", "v=0.0.1-2024-abc", ""
    ]  # fmt: skip
    with pytest.raises(RunnerError, match="unknown placeholder"):
        fill(["{secret}"], values)
    with pytest.raises(RunnerError, match="refusing to pass version"):
        fill(["{version}"], {**values, "version": "1; rm -rf /"})


def test_diff_summary_counts_resources_from_helm_diff_output() -> None:
    output = (
        "\x1b[33mns, api, Deployment (apps) has changed:\x1b[0m\n"
        "ns, api, Deployment (apps) has changed:\n"  # repeated: counted once
        "ns, api-cfg, ConfigMap (v1) has been added:\n"
        "ns, old, Service (v1) has been removed:\n"
        "  some, context, line has changed: inside a diff body\n"
    )
    assert changed_resources(output) == [
        "ns/Deployment (apps)/api", "ns/ConfigMap (v1)/api-cfg", "ns/Service (v1)/old"
    ]  # fmt: skip
    assert [diff_outcome(c) for c in (0, 2, 1, None)] == [
        "no changes", "changes", "failed", "failed"
    ]  # fmt: skip
