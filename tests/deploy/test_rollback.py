"""`!rollback`: re-pin the previous version and apply it, refuse when its artifacts are gone
(the ImagePullBackOff incident), and `--emergency` (helm rollback first, then re-pin)."""

from __future__ import annotations

import asyncio

from bot.core.git import git
from tests.support.deployworld import IMAGE, NS, DeployBed, bed, deploy_latest

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

    assert replies(s.out)[-1].startswith(f"deploy #2 done: builds-api {previous} to toolsbeta")
    assert "live version verified" in replies(s.out)[-1]
    assert await pinned_on_main(bed) == previous
    syncs = [c for c in bed.records() if c["sub"] == "sync"]
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
        ["rollback", "builds-api", "0", "-n", "builds-api", "--wait"]
    ]
    assert helm[0]["env"]["HELM_KUBECONTEXT"] == "toolsbeta"
    done = replies(alice.out)[-1]
    assert done.startswith(f"deploy #2 done: builds-api {previous} to toolsbeta")
    assert f"live version {previous} verified; re-pinned in " in done
    assert await pinned_on_main(bed) == previous
    actions = [(e.actor, e.action, e.result) for e in alice.sal]
    assert actions[-4:] == [
        ("console:carol", "rollback-emergency", "refused"),
        ("console:alice", "rollback-emergency", "started"),
        ("console:alice", "rollback-emergency", "pushed"),
        ("console:alice", "rollback-emergency", "done"),
    ]
