"""`!rollback`: re-pin the previous version and apply it, refuse when its artifacts are gone
(the ImagePullBackOff incident), and `--emergency` (helm rollback first, then re-pin)."""

from __future__ import annotations

import asyncio

from bot.core.git import git
from tests.support.deployworld import IMAGE, NS, DeployBed, bed, deploy_latest
from tests.support.shown import said, shown

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#")]


async def pinned_on_main(bed: DeployBed) -> str:
    text = await git(
        "show", "main:components/builds-api/values/toolsbeta.yaml", cwd=bed.control_repo
    )
    return text.split("chartVersion:", 1)[1].split()[0]


async def test_rollback_repins_previous_and_applies_it(bed: DeployBed) -> None:
    previous, latest = await deploy_latest(bed)
    rollout = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=previous), nth=2)
    )

    s = await bed.run(["!rollback builds-api toolsbeta T99"])
    await rollout

    assert said(s.out)[-1].startswith(
        f"deploy #2 done: rollback of builds-api in toolsbeta from {shown(latest)} to"
        f" {shown(previous)} (T99) in "
    )
    assert "live version verified" in said(s.out)[-1]
    start = [x for x in s.out if "(deploy #2, T99)" in x]
    assert start[0].endswith(
        f"rolling back builds-api in toolsbeta from {shown(latest)} to {shown(previous)}"
        " (deploy #2, T99)"
        f" via main@{(await bed.main_head())[:8]} · artifacts present"
    )
    assert await pinned_on_main(bed) == previous
    syncs = [c for c in bed.records() if c["sub"] == "apply"]
    assert [c["chartVersion"] for c in syncs] == [latest, previous]
    assert syncs[1]["head"] == (await git("rev-parse", "main", cwd=bed.control_repo)).strip()
    rollback = [(e.action, e.result, e.from_version, e.to_version) for e in s.sal[-3:]]
    assert rollback == [
        ("rollback", "pushed", latest, previous),
        ("rollback", "started", latest, previous),
        ("rollback", "done", latest, previous),
    ]
    assert s.sal[-1].tasks == ["T99"]


async def test_rollback_to_a_pruned_image_is_refused_before_anything_changes(
    bed: DeployBed,
) -> None:
    previous, latest = await deploy_latest(bed)
    bed.registry.delete_tag(IMAGE, previous)  # a retention rule pruned it
    calls_before = len(bed.records())

    s = await bed.run(["!rollback builds-api toolsbeta"])

    assert replies(s.out) == [
        f"rollback: refused: image {IMAGE}:{previous} missing from the registry; nothing run"
    ]
    assert len(bed.records()) == calls_before
    assert await pinned_on_main(bed) == latest
    assert [(e.action, e.result, e.to_version) for e in s.sal[-1:]] == [
        ("rollback", "refused", previous)
    ]


async def test_emergency_rollback_runs_helm_rollback_then_repins(bed: DeployBed) -> None:
    previous, latest = await deploy_latest(bed)
    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", previous, "superseded")
    bed.kube.add_helm_release(NS, "builds-api", 2, "builds-api", latest)
    rollout = asyncio.create_task(
        bed.on_sync(
            lambda: bed.kube.start_rollout(NS, "builds-api", version=previous), sub="rollback"
        )
    )

    carol = await bed.run(["!rollback builds-api toolsbeta --emergency"], user="carol")
    alice = await bed.run(["!rollback builds-api toolsbeta --emergency"], user="alice")
    await rollout

    assert replies(carol.out) == [
        "rollback: refused: you need the admin role for builds-api in toolsbeta; see !whoami"
    ]
    helm = [c for c in bed.records() if c["tool"] == "helm"]
    assert [c["argv"] for c in helm] == [
        ["rollback", "builds-api", "1", "-n", "builds-api", "--wait"]
    ]
    assert helm[0]["env"]["HELM_KUBECONTEXT"] == "toolsbeta"
    done = said(alice.out)[-1]
    assert done.startswith(
        f"deploy #2 done: rollback of builds-api in toolsbeta from {shown(latest)} (revision 2)"
        f" to {shown(previous)} (revision 1) in "
    )
    assert f"live version {shown(previous)} verified; re-pinned in " in done
    assert await pinned_on_main(bed) == previous
    actions = [(e.actor, e.action, e.result) for e in alice.sal]
    assert actions[-4:] == [
        ("console:carol", "rollback-emergency", "refused"),
        ("console:alice", "rollback-emergency", "started"),
        ("console:alice", "rollback-emergency", "pushed"),
        ("console:alice", "rollback-emergency", "done"),
    ]
    assert (alice.sal[-1].from_version, alice.sal[-1].to_version) == (latest, previous)


async def test_emergency_after_a_rollback_never_moves_forward_unless_told(
    bed: DeployBed,
) -> None:
    """Helm's previous revision is the newer release after a rollback: `helm rollback 0`
    would move forward. The bot reads the history and goes back to the older one, or
    refuses; `to <ref>` may move forward on purpose. The bot has no store and no registry."""
    old, previous, latest = bed.releases[-3], bed.pins["toolsbeta"], bed.releases[-1]
    bed.data["registry"]["url"] = "http://127.0.0.1:9"  # unreachable
    bed.data["bot"]["state_dir"] = str(bed.tmp / "fresh-state")  # an empty store
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=previous)
    for rev, (version, status) in enumerate(
        [(latest, "superseded"), (previous, "deployed")], start=2
    ):
        bed.kube.add_helm_release(NS, "builds-api", rev, "builds-api", version, status)
    bed.script({"helm rollback": {"ack": True}})

    refused = await bed.run(["!rollback builds-api toolsbeta --emergency"])
    assert replies(refused.out) == [
        f"rollback: refused: no earlier Helm revision of builds-api runs an older version than"
        f" {shown(previous)} (revision 3); say which one with to <ref>; nothing run"
    ]
    assert [c for c in bed.records() if c["tool"] == "helm"] == []

    bed.kube.add_helm_release(NS, "builds-api", 1, "builds-api", old, "superseded")
    rollout = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=old), sub="rollback")
    )
    bed.data["bot"]["state_dir"] = str(bed.tmp / "fresh-state-2")  # empty again
    back = await bed.run(["!rollback builds-api toolsbeta --emergency"])
    await rollout
    assert [c["argv"][2] for c in bed.records() if c["tool"] == "helm"] == ["1"]
    assert said(back.out)[-1].startswith(
        f"deploy #1 done: rollback of builds-api in toolsbeta from {shown(previous)} (revision 3)"
        f" to {shown(old)} (revision 1) in "
    )
    start = next(x for x in back.out if "(deploy #1)" in x)
    assert "artifacts not checked (" in start and "an emergency does not wait" in start

    bed.kube.add_helm_release(NS, "builds-api", 4, "builds-api", old)  # what helm wrote
    bed.kube.add_helm_release(NS, "builds-api", 3, "builds-api", previous, "superseded")
    rollout = asyncio.create_task(
        bed.on_sync(
            lambda: bed.kube.start_rollout(NS, "builds-api", version=latest), sub="rollback", nth=2
        )
    )
    forward = await bed.run([f"!rollback builds-api toolsbeta to {latest[-8:]} --emergency"])
    await rollout
    assert [c["argv"][2] for c in bed.records() if c["tool"] == "helm"] == ["1", "2"]
    moved = f"from {shown(old)} (revision 4) to {shown(latest)} (revision 2) in "
    assert moved in said(forward.out)[-1]
    assert "helm rollback to revision 2 (forward, as asked with to)" in " ".join(forward.out)
