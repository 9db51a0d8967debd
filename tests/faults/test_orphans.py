"""kill -9 during a deploy step: the step's process dies with the bot, and what it started
itself (helm under helmfile) is found on restart and waited for; no second apply of the same
component+environment runs beside it.

Before, the restarted bot said "nothing was re-applied" and accepted a new `!apply` that
ran concurrently with the orphan: two syncs of one release at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
from pathlib import Path

import pytest
import yaml

from bot.deploy.orphans import group_alive
from tests.support.crashbed import start_bot, until
from tests.support.deployworld import NS, DeployBed, bed

__all__ = ["bed"]
pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]


async def test_kill_9_mid_apply_the_step_dies_and_its_orphan_blocks_applies(
    bed: DeployBed,
) -> None:
    old, version = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(version)
    started = bed.tmp / "grandchild.pid"
    # the apply step (sh) starts a grandchild in its process group, as helmfile starts helm
    bed.data["deploy"] = {
        "timeout": 300, "rollout_timeout": 5,
        "apply": ["sh", "-c", f"sleep 300 & echo $$ $! > {started}; wait"],
    }  # fmt: skip
    me = {"who": [f"console:{getpass.getuser()}"], "role": "deployer"}
    bed.data["auth"]["rules"].append(me)
    config = bed.tmp / "deploybot.yaml"
    config.write_text(yaml.safe_dump(bed.data))
    first_out, second_out = bed.tmp / "first.out", bed.tmp / "second.out"
    step = grandchild = 0
    first = await start_bot(config, first_out)
    second: asyncio.subprocess.Process | None = None
    try:
        assert first.stdin is not None
        first.stdin.write(b"!apply builds-api toolsbeta\n")
        await first.stdin.drain()
        await until(
            lambda: started.exists() and len(started.read_text().split()) == 2,
            "apply",
            within=60.0,
            show=first_out,
        )
        step, grandchild = (int(x) for x in started.read_text().split())
        first.kill()
        await first.wait()
        # the step itself died with the bot; its grandchild is an orphan that still runs
        await until(
            lambda: not os.path.exists(f"/proc/{step}") or _zombie(step), "step death", within=60.0
        )
        assert group_alive(step)

        second = await start_bot(config, second_out)
        assert second.stdin is not None
        second.stdin.write(b"!apply builds-api toolsbeta\n")
        await second.stdin.drain()
        await until(
            lambda: "apply: refused" in second_out.read_text(),
            "the refusal",
            within=60.0,
            show=second_out,
        )
        text = second_out.read_text()
        assert f"process group {step} from before the bot restarted still runs" in text
        assert "nothing was re-applied" not in text
        os.kill(grandchild, signal.SIGKILL)
        await until(
            lambda: "has exited" in second_out.read_text(),
            "the all-clear",
            within=60.0,
            show=second_out,
        )
        line = next(ln for ln in second_out.read_text().splitlines() if "has exited" in ln)
        assert line == (
            f"[#toolforge-deploy] deploy #1's leftover process group {step} has exited;"
            " check, then !apply builds-api toolsbeta to retry"
        )
        second.stdin.close()
        await asyncio.wait_for(second.wait(), 60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        if step:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step, signal.SIGKILL)
    sync_runs = [c for c in bed.records() if c["sub"] == "apply"]
    assert sync_runs == []  # the refused apply never ran a step


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
