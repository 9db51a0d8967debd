"""Task ids travel with a deploy: every SAL entry and announcement of it names them, also
when the deploy is started without one (they come from the bump commit's `Bug:` trailer)."""

from __future__ import annotations

import asyncio

from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed

__all__ = ["bed"]


def _rollout(bed: DeployBed, old: str, new: str) -> asyncio.Task[None]:
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})

    def start() -> None:
        bed.kube.start_rollout(NS, "builds-api", version=new, ready_after_polls=1)

    return asyncio.create_task(bed.on_sync(start))


async def test_a_task_id_is_on_every_entry_and_announcement_of_a_deploy(bed: DeployBed) -> None:
    assert bed.data["environments"][0]["auto_apply"]  # toolsbeta deploys the bump at once
    old = bed.pins["toolsbeta"]
    new = bed.releases[-1]
    assert new != old
    rollout = _rollout(bed, old, new)
    s = await bed.run([f"!deploy builds-api {new} to toolsbeta T358908"])
    await rollout
    assert [(e.action, e.result) for e in s.sal] == [
        ("bump", "pushed"), ("auto-apply", "started"), ("auto-apply", "done"),
    ]  # fmt: skip
    for e in s.sal:
        assert e.tasks == ["T358908"] and "T358908" in e.message  # stashbot reads the message
    said = [
        line
        for line in s.out
        if line.startswith(("[#toolforge-deploy] deploying", "[#toolforge-deploy] deploy #1 done"))
    ]
    assert len(said) == 2 and all("T358908" in line for line in said), said
    body = await git("log", "-1", "--format=%B", "main", cwd=bed.control_repo)
    assert body.rstrip().endswith("Bug: T358908")  # the commit trailer


async def test_an_apply_without_a_task_takes_the_bumps_task(bed: DeployBed) -> None:
    bed.data["environments"][0]["auto_apply"] = False
    old = bed.pins["toolsbeta"]
    new = bed.releases[-1]
    rollout = _rollout(bed, old, new)
    s = await bed.run([f"!deploy builds-api {new} to toolsbeta T77", "!apply builds-api toolsbeta"])
    await rollout
    applies = [e for e in s.sal if e.action == "apply"]
    assert [e.result for e in applies] == ["started", "done"]
    for e in applies:
        assert e.tasks == ["T77"] and "T77" in e.message
    assert [d["tasks"] for d in s.deploys] == ["T77"]
