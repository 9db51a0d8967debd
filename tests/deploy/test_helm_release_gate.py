"""A Helm release left failed or pending blocks a normal `!apply` (one line naming the state
and the next command, nothing run), an admin's `--force` deploys over a failed one, and
`!rollback --emergency` still runs: it is the way out. Release records are FakeKube's Secrets,
encoded as Helm 3 writes them."""

from __future__ import annotations

import asyncio

from tests.support.deployworld import NS, DeployBed, bed, deploy_latest
from tests.support.shown import said, shown

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#")]


def seed_failed(bed: DeployBed, status: str = "failed") -> tuple[str, str]:
    """toolsbeta runs `old` (revision 1 deployed); the upgrade to the pin left revision 2."""
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    for version in bed.releases:
        bed.push(version)
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", old)
    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", new, status)
    return old, new


async def test_failed_release_blocks_apply_and_emergency_rollback_clears_it(
    bed: DeployBed,
) -> None:
    previous, latest = await deploy_latest(bed)  # deploy #1: previous -> latest
    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", previous)
    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", latest, "failed")
    calls = len(bed.records())

    s = await bed.run(["!apply builds-api toolsbeta"])

    assert replies(s.out)[-1:] == [
        f"apply: refused: helm release builds-api failed at revision 2 ({shown(latest)}); last"
        f" deployed: revision 1 ({shown(previous)}); nothing run (next: !rollback builds-api"
        " toolsbeta --emergency or an admin's --force)"
    ]
    assert len(bed.records()) == calls  # neither helmfile nor helm ran
    assert [(e.action, e.result) for e in s.sal[-1:]] == [("apply", "refused")]

    def rolled_back() -> None:  # what `helm rollback` does
        bed.kube.start_rollout(NS, "builds-api", version=previous)
        bed.kube.add_helm_release(NS, "builds-api", 3, "builds-api", previous)

    rollback = asyncio.create_task(bed.on_sync(rolled_back, sub="rollback"))
    s = await bed.run(["!rollback builds-api toolsbeta --emergency"])
    await rollback

    assert [c["argv"][0] for c in bed.records()[calls:]] == ["rollback"]
    done = said(s.out)[-1]
    assert done.startswith(
        f"deploy #2 done: rollback of builds-api in toolsbeta from {shown(latest)} (revision 2)"
        f" to {shown(previous)} (revision 1)"
    ), done
    assert f"live version {shown(previous)} verified" in done


async def test_force_deploys_over_a_failed_release_but_never_over_a_pending_one(
    bed: DeployBed,
) -> None:
    old, new = seed_failed(bed, "pending-upgrade")

    s = await bed.run(["!apply builds-api toolsbeta --force"])

    assert replies(s.out)[-1:] == [
        f"apply: refused: helm release builds-api pending-upgrade at revision 2 ({shown(new)});"
        f" last deployed: revision 1 ({shown(old)}); nothing run (next: !rollback builds-api"
        f" toolsbeta --emergency (or helm rollback builds-api 1 -n {NS}))"
    ]
    assert bed.records() == []

    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", new, "failed")
    bed.script({"helmfile apply": {"ack": True}})
    sync = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )
    s = await bed.run(["!apply builds-api toolsbeta --force"])
    await sync

    started = next(e for e in s.sal if e.result == "started")
    assert f"failed at revision 2 ({new})" in started.message
    assert "deployed over it with --force" in started.message
    assert said(s.out)[-1].startswith(f"deploy #1 done: builds-api {shown(new)} to toolsbeta")
