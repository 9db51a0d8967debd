"""A slow command says "<command>: working on it…" only while its user has heard nothing of
it: never after its own news in the room they read (a reply goes ahead of queued news, so a
late "working on it…" would read as if the deploy had not started, or after its result)."""

from __future__ import annotations

import asyncio
import contextlib
import io

from tests.support.crashbed import until
from tests.support.deployworld import NS, DeployBed, bed

__all__ = ["bed"]

REPLY_TIMEOUT = 1.0  # seconds: the apply's start line is said well before it
WORKING = "apply: working on it…"


async def _hold_the_apply(bed: DeployBed, out: io.StringIO, new: str) -> None:
    """Once the apply's helmfile runs (its start line was said before it), hold it until
    the command's `reply_timeout` has surely passed (or a "working on it…" showed), then let
    it and the rollout finish."""
    await until(
        lambda: any(run["sub"] == "apply" for run in bed.records()), "the apply", within=60.0
    )
    with contextlib.suppress(AssertionError):  # the window passed without one: as it should
        await until(lambda: WORKING in out.getvalue(), WORKING, within=REPLY_TIMEOUT + 1.0)
    await bed.on_sync(
        lambda: bed.kube.start_rollout(NS, "builds-api", version=new, ready_after_polls=1)
    )


async def test_no_working_on_it_after_the_deploys_own_news_in_the_room(bed: DeployBed) -> None:
    bed.data["bot"]["reply_timeout"] = REPLY_TIMEOUT
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    out = io.StringIO()
    task = asyncio.create_task(_hold_the_apply(bed, out, new))
    s = await bed.run(["!apply builds-api toolsbeta"], stdout=out)
    await task
    started = next(i for i, line in enumerate(s.out) if "] deploying builds-api" in line)
    assert "deploy #1 done" in s.out[-1], s.out
    assert WORKING not in s.out[started:], s.out
