"""The `deploy.sh` preset runs the control repo's own entry point, so a component's
`override-deploy.sh` is honoured; functional tests (`deploy.test`) are summarised, linked,
and a failure names `!rollback`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.config.model import DEPLOY_SH, parse_config
from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.shown import said, shown

__all__ = ["bed"]

DEPLOY_SH_SCRIPT = """\
#!/bin/sh
# a small stand-in for toolforge-deploy's deploy.sh: <component> [env] [helmfile options]
set -eu
component="$1"; shift
env="${1:-local}"; [ $# -gt 0 ] && shift
cd "$(dirname "$0")/components/$component"
if [ -e override-deploy.sh ]; then exec ./override-deploy.sh; fi
helmfile -e "$env" --file helmfile.yaml diff
exec helmfile -e "$env" --file helmfile.yaml sync "$@"
"""
OVERRIDE = """\
#!/bin/sh
echo "override ran for $DEPLOYBOT_COMPONENT in $DEPLOYBOT_ENV" > "$OVERRIDE_MARK"
exec helmfile -e "$DEPLOYBOT_ENV" --file helmfile.yaml sync --from-override
"""
TESTS = """\
#!/bin/sh
echo "1..3"
echo "ok 1 jobs run"
echo "ok 2 builds start"
if [ -n "${FAKE_TESTS_FAIL:-}" ]; then echo "not ok 3 webservice answers"; exit 1; fi
echo "ok 3 webservice answers"
"""
DIFFED = "name=builds-api"  # the bot's own deploy.diff selects the component's release


async def commit_files(bed: DeployBed, files: dict[str, str]) -> None:
    work = bed.tmp / "work-files"
    await git("clone", "--quiet", str(bed.control_repo), str(work))
    for name, text in files.items():
        (work / name).write_text(text)
        (work / name).chmod(0o755)
    await git("add", "-A", cwd=work)
    await git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "scripts", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)


def start(bed: DeployBed, sub: str = "apply") -> tuple[str, asyncio.Task[None]]:
    """The apply step (`sub`: the control repo's deploy.sh runs `helmfile sync`) starts the
    rollout of the pin."""
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({f"helmfile {sub}": {"ack": True}})
    rollout = bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new), sub=sub)
    return new, asyncio.create_task(rollout)


def test_the_preset_sets_the_apply_argv_unless_apply_is_given() -> None:
    assert parse_config({"deploy": {"preset": "deploy.sh"}}).deploy.apply == DEPLOY_SH
    own = parse_config({"deploy": {"preset": "deploy.sh", "apply": ["x"]}})
    assert own.deploy.apply == ["x"]


@pytest.mark.parametrize("override", [True, False])
async def test_deploy_sh_runs_and_honours_override_deploy_sh(
    bed: DeployBed, override: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"deploy.sh": DEPLOY_SH_SCRIPT}
    if override:
        files["components/builds-api/override-deploy.sh"] = OVERRIDE
    await commit_files(bed, files)
    mark = bed.tmp / "override-mark"
    monkeypatch.setenv("OVERRIDE_MARK", str(mark))
    bed.data["deploy"]["preset"] = "deploy.sh"
    new, rollout = start(bed, "sync")
    s = await bed.run(["!apply builds-api toolsbeta"])
    await rollout
    done = rf"deploy #1 done: builds-api {re.escape(shown(new))} to toolsbeta in "
    assert re.match(done, said(s.out)[-1]), s.out
    calls = [(c["sub"], c["argv"][-1], Path(c["cwd"]).name) for c in bed.records()]
    if override:
        assert calls == [("diff", DIFFED, "1"), ("sync", "--from-override", "builds-api")]
        assert mark.read_text() == "override ran for builds-api in toolsbeta\n"
    else:
        assert calls == [
            ("diff", DIFFED, "1"), ("diff", "diff", "builds-api"), ("sync", "--wait", "builds-api"),
        ]  # fmt: skip
        assert not mark.exists()


@pytest.mark.parametrize("fail", [False, True])
async def test_functional_tests_are_summarised_linked_and_a_failure_names_rollback(
    bed: DeployBed, fail: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await commit_files(bed, {"functional-tests.sh": TESTS})
    if fail:
        monkeypatch.setenv("FAKE_TESTS_FAIL", "1")
    bed.data["deploy"]["test"] = ["./functional-tests.sh", "{env}"]
    new, rollout = start(bed)
    s = await bed.run(["!apply builds-api toolsbeta"])
    await rollout
    last = said(s.out)[-1]
    link = r"http://127\.0\.0\.1:\d+/diffs/[0-9a-f]{16}"
    if fail:
        assert re.match(
            rf"deploy #1 failed: builds-api {re.escape(shown(new))} to toolsbeta in \d+s:"
            r" functional tests 2"
            rf" passed, 1 failed: {link}; the new version is live: to go back, !rollback"
            r" builds-api toolsbeta · log: ",
            last,
        ), last
    else:
        assert re.match(
            rf"deploy #1 done: .*live version verified; functional tests 3 passed, 0 failed:"
            rf" {link} · log: ",
            last,
        ), last
