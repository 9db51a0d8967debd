"""An emergency rollback whose Helm history cannot be read (the bot's account may not read
Secrets: 403) still runs — helm picks the revision — but it cannot know, so cannot check, the
image it returns to: its first line says so before anything else. With a readable history the
image of the revision it returns to is checked in the real registry (`docker-registry`)."""

from __future__ import annotations

import asyncio

from tests.support.deployworld import IMAGE, NS, DeployBed, bed, deploy_latest
from tests.support.shown import shown

__all__ = ["bed"]

WARNING = "WARNING: could not check the image it returns to (helm picks the revision)"


async def test_unreadable_helm_history_is_said_in_the_first_line(bed: DeployBed) -> None:
    previous, latest = await deploy_latest(bed)
    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", previous, "superseded")
    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", latest)
    bed.kube.forbidden = {"secrets"}  # RBAC: the bot may not read Helm's release records
    rollout = asyncio.create_task(
        bed.on_sync(
            lambda: bed.kube.start_rollout(NS, "builds-api", version=previous), sub="rollback"
        )
    )

    s = await bed.run(["!rollback builds-api toolsbeta --emergency"])
    await rollout

    first = next(x for x in s.out if "(deploy #2)" in x)
    assert first.startswith(
        f"[#toolforge-deploy] emergency rollback of builds-api in toolsbeta from {shown(latest)} to"
        " the previous Helm revision (deploy #2) via helm rollback (cannot read the Helm"
        f" history: list helm releases in builds-api: HTTP 403 Forbidden) · {WARNING}; "
    ), first
    helm = [c["argv"] for c in bed.records() if c["tool"] == "helm"]
    assert helm == [["rollback", "builds-api", "0", "-n", "builds-api", "--wait"]]
    started = next(e for e in s.sal if e.result == "started" and e.action == "rollback-emergency")
    assert WARNING in started.message


async def test_readable_history_checks_the_image_it_returns_to(bed: DeployBed) -> None:
    previous, latest = await deploy_latest(bed)
    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", previous, "superseded")
    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", latest)
    bed.registry.delete_tag(IMAGE, previous)  # the revision it would return to was pruned

    s = await bed.run(["!rollback builds-api toolsbeta --emergency"])

    assert [x for x in s.out if not x.startswith("[#")] == [
        f"rollback: refused: image {IMAGE}:{previous} missing from the registry; nothing run"
    ]
    assert [c for c in bed.records() if c["tool"] == "helm"] == []
