"""kill -9 of a `!deploy` on the GitLab forge around the API calls that publish the bump (the
commit on `bump_<component>`, then its MR), then a restart: a change GitLab took gets its SAL
entry and one announcement; one it never got leaves nothing; a GitLab that is down at the
restart keeps the intent until it answers.

Before, a crash after GitLab took the commit/MR and before the SAL write left a bump MR with
no SAL entry and no announcement. The real `deploybot run` talks to the GitLab HTTP fake,
which holds the publishing request (after or without applying it) until the bot is killed.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.control.forge import GitLabControl
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry
from tests.support.bumpworld import FIXTURE
from tests.support.crashbed import start_bot, until
from tests.support.fakes.gitlab import FakeGitLab, Hold
from tests.support.session import free_port
from tests.support.shown import shown

pytestmark = pytest.mark.faults
TOKEN = "glpat-intents-t0ken"
CONTROL = "repos/cloud/toolforge/toolforge-deploy"
BUILDS = "repos/cloud/toolforge/builds-api"
BRANCH = "bump_builds-api"
COMMITS = f"/projects/{CONTROL}/repository/commits"
MRS = f"/projects/{CONTROL}/merge_requests"
TOLD = "was being proposed when the bot restarted"
WARNED = "cannot tell whether the builds-api"


@dataclass
class Bed:
    tmp: Path
    fake: FakeGitLab
    config: Path
    latest: str

    @property
    def intents(self) -> list[Path]:
        return sorted((self.tmp / "var" / "intents").glob("*.json"))

    async def sal(self) -> list[SalEntry]:
        store = Store(self.tmp / "var" / "deploybot.sqlite3")
        await store.open()
        try:
            return await Sal(store, [], Redactor()).query(component="builds-api", limit=50)
        finally:
            await store.close()


@pytest.fixture
async def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bed]:
    monkeypatch.setenv("DEPLOYBOT_TEST_GITLAB_TOKEN", TOKEN)
    async with FakeGitLab(token=TOKEN) as gl:
        files = {str(p.relative_to(FIXTURE)): p.read_text() for p in FIXTURE.rglob("*")
                 if p.is_file()}  # fmt: skip
        gl.add_project(CONTROL, files=files)
        gl.add_project(BUILDS)
        sha = gl.add_commit(BUILDS, "main", {"CHANGES": "change 132\n"}, "change 132")
        latest = f"0.0.132-20240220120000-{sha[:8]}"
        gl.add_tag(BUILDS, latest, sha)
        data: dict[str, Any] = {
            "bot": {"state_dir": str(tmp_path / "var"), "public_url": "http://127.0.0.1:9"},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "chat": {"console": {}},
            "control_repo": {"forge": "gitlab", "project": CONTROL, "branch": "main"},
            "gitlab": {"url": gl.url, "token_env": "DEPLOYBOT_TEST_GITLAB_TOKEN"},
            "environments": [
                {"name": "toolsbeta", "sal_project": "toolsbeta"},
                {"name": "tools", "sal_project": "tools", "requires": "toolsbeta"},
            ],
            "components": {"builds-api": {"project": BUILDS}},
            "monitors": {"enabled": False},
            "sal": {"retry_every": 0.5},  # intents the forge could not decide: asked again
            "auth": {"rules": [{"who": [f"console:{getpass.getuser()}"], "role": "deployer"}]},
        }
        config = tmp_path / "deploybot.yaml"
        config.write_text(yaml.safe_dump(data))
        yield Bed(tmp_path, gl, config, latest)


async def deploy_and_kill(bed: Bed, held: Hold) -> None:
    """`!deploy builds-api <latest> to toolsbeta T9`, kill -9 while GitLab holds `held`."""
    bot = await start_bot(bed.config, bed.tmp / "first.out")
    try:
        assert bot.stdin is not None
        bot.stdin.write(f"!deploy builds-api {bed.latest} to toolsbeta T9\n".encode())
        await bot.stdin.drain()
        await asyncio.wait_for(held.reached.wait(), timeout=60)
        assert bed.intents, "no intent was written before the publishing call"
        bot.kill()
        await bot.wait()
    finally:
        held.release()
        if bot.returncode is None:
            bot.kill()
            await bot.wait()


async def restart(bed: Bed, ready: str | None, out: Path) -> str:
    """Start the bot again; once `ready` is in its output (else once no intent is left),
    ask `!sal builds-api 5` and end the session. Returns everything it printed."""
    bot = await start_bot(bed.config, out)
    try:
        if ready is None:
            await until(lambda: not bed.intents, "the intent to be dropped", within=60.0)
        else:
            await until(lambda: ready in out.read_text(), repr(ready), within=60.0)
        await asyncio.wait_for(bot.communicate(b"!sal builds-api 5\n"), timeout=60)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    return out.read_text()


def told(bed: Bed, action: str) -> str:
    mr = f"https://gitlab.example.org/{CONTROL}/-/merge_requests/1"
    return (
        f"builds-api {shown(bed.latest)} (toolsbeta) {TOLD}: bump MR !1 {action}, {mr}; its SAL entry"
        " is now written; nothing was applied by it — next: !apply builds-api toolsbeta"
    )


async def assert_recorded_once(bed: Bed, out: str) -> None:
    mrs = bed.fake.merge_requests(CONTROL)
    assert [(m["iid"], m["source_branch"], m["state"]) for m in mrs] == [(1, BRANCH, "opened")]
    assert mrs[0]["title"] == f"builds-api: bump to {bed.latest}"
    assert out.count(TOLD) == 1 and told(bed, "opened") in out
    head = bed.fake.branch_head(CONTROL, BRANCH)
    bumps = [e for e in await bed.sal() if e.action == "bump"]
    assert [(e.env, e.to_version, e.commit_sha, e.mr_url) for e in bumps] == [
        ("toolsbeta", bed.latest, head, mrs[0]["web_url"])
    ]
    assert bumps[0].tasks == ["T9"]
    assert "(recorded after a restart)" in bumps[0].message
    assert "!1" in bumps[0].message and "not merged yet" in bumps[0].message
    assert not bed.intents


@pytest.mark.parametrize(
    "window", ["commit taken, no MR yet", "MR opened"], ids=["after-commit", "after-mr"]
)
async def test_kill_9_after_gitlab_took_the_bump_records_and_announces_it_once(
    bed: Bed, window: str
) -> None:
    prefix = COMMITS if window.startswith("commit") else MRS
    await deploy_and_kill(bed, bed.fake.hold("POST", prefix, apply=True))
    assert bed.fake.branch_head(CONTROL, BRANCH) is not None  # GitLab has the commit
    assert not [e for e in await bed.sal() if e.action == "bump"]  # and the SAL has nothing
    out = await restart(bed, TOLD, bed.tmp / "second.out")
    await assert_recorded_once(bed, out)
    # a third start finds nothing left to record or say
    again = await restart(bed, None, bed.tmp / "third.out")
    assert TOLD not in again
    assert len([e for e in await bed.sal() if e.action == "bump"]) == 1


async def test_kill_9_before_gitlab_got_the_commit_drops_the_intent(bed: Bed) -> None:
    main = bed.fake.branch_head(CONTROL, "main")
    await deploy_and_kill(bed, bed.fake.hold("POST", COMMITS, apply=False))
    # as if the restart came after the cut-off call could still have taken effect
    old = time.time() - GitLabControl.in_flight - 1
    for path in bed.intents:
        os.utime(path, (old, old))
    out = await restart(bed, None, bed.tmp / "second.out")
    assert TOLD not in out and WARNED not in out
    assert (
        out.count(
            f"builds-api {shown(bed.latest)} (toolsbeta) never reached GitLab before the bot"
            " restarted;"
            " nothing changed — !status builds-api to check, then try again"
        )
        == 1
    )
    assert "no SAL entries for builds-api" in out
    assert bed.fake.branch_head(CONTROL, BRANCH) is None
    assert bed.fake.merge_requests(CONTROL) == []
    assert bed.fake.branch_head(CONTROL, "main") == main
    assert not [e for e in await bed.sal() if e.action == "bump"]


async def test_gitlab_down_at_restart_keeps_the_intent_until_it_answers(bed: Bed) -> None:
    await deploy_and_kill(bed, bed.fake.hold("POST", MRS, apply=True))
    bed.fake.fail_next("GET", "/projects", 503, times=1_000_000)  # GitLab down
    out = bed.tmp / "second.out"
    branch_reads = f"{CONTROL}/repository/branches/{BRANCH}"
    since = len(bed.fake.requests)
    bot = await start_bot(bed.config, out)
    try:
        await until(lambda: WARNED in out.read_text(), "the warning", within=60.0)
        # a second pass (each one reads the branch 5 times: the client's retries) also failed
        await until(
            lambda: sum(branch_reads in r.path for r in bed.fake.requests[since:]) > 5,
            "a second look at GitLab",
            within=60.0,
        )
        assert len(bed.intents) == 1  # kept
        bed.fake.clear_faults()  # GitLab is back
        await until(lambda: TOLD in out.read_text(), "the announcement", within=60.0)
        await asyncio.wait_for(bot.communicate(b"!sal builds-api 5\n"), timeout=60)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
    text = out.read_text()
    assert text.count(WARNED) == 1, text
    await assert_recorded_once(bed, text)
