"""kill -9 between the push of a bump and its SAL entries (a slow remote), then a restart:
the pushed pin change gets its SAL entry and an announcement.

Before, such a crash left a pin change on main with no SAL entry and no announcement. The
remote is slowed by a real `pre-receive` hook that waits for the test's go.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from pathlib import Path

import pytest
import yaml

from bot.core.git import git
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal
from tests.support.crashbed import start_bot, until
from tests.support.deployworld import DeployBed, bed
from tests.support.shown import shown

__all__ = ["bed"]
pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]


async def test_kill_9_after_push_before_sal_completes_the_entry_on_restart(
    bed: DeployBed,
) -> None:
    entered, go = bed.tmp / "hook-entered", bed.tmp / "hook-go"
    hook = bed.control_repo / "hooks" / "pre-receive"
    hook.write_text(
        f"#!/bin/sh\ncat >/dev/null\ntouch {entered}\n"
        f"while [ ! -e {go} ]; do sleep 0.05; done\n"  # the slow remote
    )
    hook.chmod(0o755)
    me = {"who": [f"console:{getpass.getuser()}"], "role": "deployer"}
    bed.data["auth"]["rules"].append(me)
    config = bed.tmp / "deploybot.yaml"
    config.write_text(yaml.safe_dump(bed.data))
    before = await bed.main_head()
    latest = bed.releases[-1]
    first_out, second_out = bed.tmp / "first.out", bed.tmp / "second.out"
    first = await start_bot(config, first_out)
    try:
        assert first.stdin is not None
        first.stdin.write(f"!deploy builds-api {latest} to toolsbeta T9\n".encode())
        await first.stdin.drain()
        await until(entered.exists, "the push to reach the remote", within=60.0)
        first.kill()  # between the push and the SAL write
        await first.wait()
    finally:
        go.touch()
        if first.returncode is None:
            first.kill()
            await first.wait()
    moved: list[str] = []

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not moved or moved[0] == before):
        moved[:] = [await bed.main_head()]
        await asyncio.sleep(0.05)  # the orphaned push finishing in the remote
    assert moved and moved[0] != before, "the push did not land"
    head = moved[0]
    hook.unlink()

    told = (
        f"builds-api {shown(latest)} was pushed to main in {head[:8]} (toolsbeta) just before the bot"
        " restarted; its SAL entry is now written; nothing was applied by it"
    )
    cut_off = (  # toolsbeta auto-applies: the crash also cut off that apply
        f"builds-api {shown(latest)} was pinned in toolsbeta ({head[:8]}) but the bot restarted before"
        " the auto-apply started; nothing was applied there — !apply builds-api toolsbeta"
    )
    second = await start_bot(config, second_out)
    try:  # the intents are reconciled in the background: ask once they were
        await until(
            lambda: cut_off in second_out.read_text(), "the cut-off auto-apply", within=60.0
        )
        await asyncio.wait_for(second.communicate(b"!sal builds-api 2\n"), timeout=60)
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
    out = second_out.read_text()
    assert out.count(told) == 1 and out.count(cut_off) == 1
    assert out.index(told) < out.index(cut_off)
    store = Store(bed.tmp / "demo" / "var" / "deploybot.sqlite3")
    await store.open()
    try:
        entries = await Sal(store, [], Redactor()).query(component="builds-api", limit=10)
    finally:
        await store.close()
    bumps = [e for e in entries if e.commit_sha == head and e.action == "bump"]
    assert len(bumps) == 1
    assert bumps[0].to_version == latest and bumps[0].env == "toolsbeta"
    assert bumps[0].tasks == ["T9"] and bumps[0].message.endswith("(recorded after a restart)")
    assert (await git("log", "-1", "--format=%H", "main", cwd=bed.control_repo)).strip() == head
