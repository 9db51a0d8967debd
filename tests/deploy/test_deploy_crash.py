"""`kill -9` of `deploybot run` during a long apply, then a restart: the deploy shows as
interrupted (chat + SAL, live state re-read) and nothing is applied a second time."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from bot.core.redact import Redactor
from bot.store.db import store_from_config
from bot.store.sal import Sal
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.real import deploybot
from tests.support.shown import shown

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL

__all__ = ["bed"]
ROOT = Path(__file__).resolve().parents[2]


async def start_bot(config: Path, out: Path) -> asyncio.subprocess.Process:
    with out.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            *deploybot(), "run", "-c", str(config),
            cwd=ROOT, env=dict(os.environ), stdin=asyncio.subprocess.PIPE, stdout=fh, stderr=fh,
        )  # fmt: skip


async def wait_for_sync(bed: DeployBed, proc: asyncio.subprocess.Process) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        syncs = [c for c in bed.records() if c["sub"] == "apply"]
        if syncs:
            return syncs[0]
        assert proc.returncode is None, "the bot exited before applying"
        await asyncio.sleep(0.05)  # polling another process's output file
    raise TimeoutError("helmfile sync never ran")


async def test_kill_9_mid_apply_then_restart_marks_it_interrupted(bed: DeployBed) -> None:
    old, version = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(version)
    bed.script({"helmfile apply": {"sleep": 120}})
    me = {"who": [f"console:{getpass.getuser()}"], "role": "deployer"}  # the console's user
    bed.data["auth"]["rules"].append(me)
    config = bed.tmp / "deploybot.yaml"
    config.write_text(yaml.safe_dump(bed.data))
    first_out, second_out = bed.tmp / "first.out", bed.tmp / "second.out"

    first = await start_bot(config, first_out)
    orphan = 0
    try:
        assert first.stdin is not None
        first.stdin.write(b"!apply builds-api toolsbeta T7\n")
        await first.stdin.drain()
        sync = await wait_for_sync(bed, first)
        orphan = int(str(sync["pid"]))
        first.kill()  # SIGKILL: no cleanup of any kind
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
        if orphan:  # the apply ran in its own process group and outlived the bot
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)

    second = await start_bot(config, second_out)
    try:
        await asyncio.wait_for(second.communicate(b"!sal builds-api 3\n"), timeout=60)
    finally:
        if second.returncode is None:
            second.kill()
            await second.wait()
    assert second.returncode == 0, second_out.read_text()[-2000:]

    out = second_out.read_text()
    url = f"{bed.data['bot']['public_url']}/deploys/1/log"
    assert (
        f"[#toolforge-deploy] deploy #1 of builds-api {shown(version)} to toolsbeta interrupted:"
        f" the bot restarted while applying; nothing was re-applied; live now: {shown(old)};"
        " check, then"
        f" !apply builds-api toolsbeta to retry · log: {url}"
    ) in out
    assert [c["sub"] for c in bed.records()] == ["diff", "apply"]  # nothing applied again
    assert (bed.tmp / "demo" / "var" / "deploys" / "1.log").read_text().count("$ helmfile") == 2

    store = store_from_config(bed.config)
    await store.open()
    try:
        entries = list(reversed(await Sal(store, [], Redactor()).query(limit=10)))
        row = await store.fetchone("SELECT state, error FROM deploys WHERE id = 1")
    finally:
        await store.close()
    assert [(e.action, e.result, e.tasks) for e in entries] == [
        ("apply", "started", ["T7"]),
        ("apply", "interrupted", ["T7"]),
    ]
    assert entries[1].log_url == url and entries[1].to_version == version
    assert row is not None and dict(row) == {
        "state": "interrupted",
        "error": "bot restarted while applying",
    }
    jsonl = bed.tmp / "demo" / "var" / "sal.jsonl"
    assert [json.loads(line)["result"] for line in jsonl.read_text().splitlines()] == [
        "started",
        "interrupted",
    ]
