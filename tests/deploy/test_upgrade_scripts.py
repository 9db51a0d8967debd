"""Upgrade scripts (`components/<c>/<N.N.N>-*.sh`) a deploy crosses are named in the room,
the reply and the SAL before it applies; the bot never runs them."""

from __future__ import annotations

import asyncio
import re

from bot.control.upgrades import crossed, release_part
from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed
from tests.support.shown import said as said_all
from tests.support.shown import shown

__all__ = ["bed"]

NAMES = ["0.0.132-old.sh", "0.0.133-update-resources.sh", "0.0.140-later.sh", "README.md"]


def test_a_script_is_crossed_when_its_version_lies_in_the_deploys_range() -> None:
    a, b = "0.0.132-20240101120000-abcd1234", "0.0.140-20240201120000-abcd5678"
    assert crossed(NAMES, a, b) == ["0.0.133-update-resources.sh", "0.0.140-later.sh"]
    assert crossed(NAMES, b, a) == ["0.0.133-update-resources.sh", "0.0.140-later.sh"]  # back
    assert crossed(NAMES, a, a) == [] and crossed(NAMES, None, b) == []
    assert crossed(["1.12.0-crds.sh"], "v1.11.0", "v1.12.0") == ["1.12.0-crds.sh"]
    assert release_part("0.0.416-dev-mr-3") == (0, 0, 416)


async def test_a_deploy_names_the_script_it_crosses_before_applying(bed: DeployBed) -> None:
    work = bed.tmp / "work-scripts"
    marker = bed.tmp / "script-ran"
    await git("clone", "--quiet", str(bed.control_repo), str(work))
    for name in NAMES[:3]:
        path = work / "components" / "builds-api" / name
        path.write_text(f"#!/bin/sh\ntouch {marker}\n")
        path.chmod(0o755)
    await git("add", "-A", cwd=work)
    await git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "scripts", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    sync = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )
    s = await bed.run(["!apply builds-api toolsbeta"])
    await sync
    text = (
        "upgrade scripts crossed (run by hand; the bot never runs them):"
        " components/builds-api/0.0.133-update-resources.sh"
    )
    room = [line.removeprefix("[#toolforge-deploy] ") for line in s.out if line.startswith("[#")]
    named = room.index(f"deploy #1 of builds-api {shown(old)} -> {shown(new)} in toolsbeta: {text}")
    # start -> diff -> scripts -> brings -> done
    assert named > next(i for i, line in enumerate(room) if line.startswith("deploy #1 diff:"))
    assert re.match(
        rf"deploy #1 done: .* live version verified; {re.escape(text)} · log:", room[-1]
    )
    assert [(e.action, e.result) for e in s.sal] == [
        ("apply", "started"), ("apply", "upgrade-scripts"), ("apply", "done"),
    ]  # fmt: skip
    assert s.sal[1].message.endswith(text)
    assert not marker.exists()


async def test_production_crossing_a_script_asks_for_a_confirmed_review(bed: DeployBed) -> None:
    bed.data["environments"] = [
        {**e, "auto_apply": False} for e in bed.data["environments"] if e["name"] == "toolsbeta"
    ]  # toolsbeta is the last environment here: production
    work = bed.tmp / "work-scripts"
    await git("clone", "--quiet", str(bed.control_repo), str(work))
    (work / "components" / "builds-api" / NAMES[1]).write_text("#!/bin/sh\nexit 0\n")
    await git("add", "-A", cwd=work)
    await git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "script", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})

    first = await bed.run(["!apply builds-api toolsbeta"])
    room = [line.removeprefix("[#toolforge-deploy] ") for line in first.out]
    said = [line for line in room if line.startswith("review #1: ")]  # said once, in its room
    assert len(said) == 1 and "upgrade scripts crossed (named above)" in said[0]
    named = [line for line in room if line.startswith("deploy #1 of builds-api")]
    assert len(named) == 1 and NAMES[1] in named[0] and room.index(named[0]) < room.index(said[0])
    assert "another deployer confirms with !apply builds-api toolsbeta confirm" in said[0]
    assert [c["sub"] for c in bed.records()] == ["diff"]  # nothing applied

    sync = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )
    second = await bed.run(["!apply builds-api toolsbeta confirm"], user="carol")
    await sync
    done = rf"deploy #2 done: builds-api {re.escape(shown(new))} to toolsbeta in"
    assert re.match(done, said_all(second.out)[-1]), second.out
