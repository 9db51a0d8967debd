"""A deploy step whose bot died before the step could ask to die with it (the fork-to-prctl
window of a `kill -9`) exits at once instead of running an apply nobody watches; one whose
bot dies just after the spawn leaves its process group id on disk all the same."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import time
from pathlib import Path

from bot.cluster.runner import die_with_parent, run


def test_a_child_whose_parent_is_already_gone_exits_before_it_runs(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    not_our_parent = os.getpid() + 1_000_000  # the pid the bot had, now someone else's
    proc = subprocess.Popen(
        ["touch", str(ran)], preexec_fn=functools.partial(die_with_parent, not_our_parent)
    )
    assert proc.wait(timeout=10) == 1
    assert not ran.exists()


def test_a_child_of_a_live_bot_runs() -> None:
    proc = subprocess.Popen(["true"], preexec_fn=functools.partial(die_with_parent, os.getpid()))
    assert proc.wait(timeout=10) == 0


async def test_the_group_id_is_on_disk_before_the_command_runs(tmp_path: Path) -> None:
    """A bot killed right after the spawn (its event loop busy, the step already running)
    still leaves the step's group id for the restarted bot (bot.deploy.orphans)."""
    group, seen = tmp_path / "1.pgid", tmp_path / "seen"
    argv = ["sh", "-c", f'cat "{group}" > "{seen}.tmp"; echo $$ >> "{seen}.tmp"; mv "{seen}.tmp" "{seen}"']  # fmt: skip

    def busy_loop() -> None:  # the bot's event loop, stalled until the step has looked
        deadline = time.monotonic() + 20
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # another process's file, polled while the loop is held

    task = asyncio.create_task(
        run(argv, cwd=tmp_path, env=os.environ, timeout=30, log_path=tmp_path / "log",
            pgid_path=group)
    )  # fmt: skip
    asyncio.get_running_loop().call_soon(busy_loop)  # right after the task's spawn
    result = await task
    assert result.returncode == 0, result.output
    recorded = seen.read_text().split()  # what the file said, then the step's own pid
    assert len(recorded) == 2, "no group id on disk when the step started"
    assert recorded[0] == recorded[1]  # the group the step leads: what a restarted bot finds
    assert not group.exists()  # the step ended: nothing left to find
