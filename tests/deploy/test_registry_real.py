"""Registry preflight against a REAL OCI registry (Debian's `docker-registry`, distribution
2.8, on loopback): image and chart pushed over the distribution API, then a retention rule
simulated by deleting the image tag's manifest. The HTTP fake stays only for Harbor's label
API (tests/monitors/test_protect.py)."""

from __future__ import annotations

import asyncio

from tests.support.deployworld import CHART, IMAGE, NS, DeployBed, bed
from tests.support.shown import said, shown

__all__ = ["bed"]


def replies(out: list[str]) -> list[str]:
    return [line for line in out if not line.startswith("[#")]


async def test_preflight_allows_present_artifacts_and_refuses_a_deleted_image(
    bed: DeployBed,
) -> None:
    oci_registry = bed.registry  # the bed's registry is the real one
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    oci_registry.push_manifest(IMAGE, new)
    oci_registry.push_chart(CHART, new)
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.script({"helmfile apply": {"ack": True}})
    sync = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )

    s = await bed.run(["!apply builds-api toolsbeta"])
    await sync

    start = next(line for line in s.out if "(deploy #1) from main@" in line)
    assert start.endswith(" · artifacts present")
    assert said(s.out)[-1].startswith(f"deploy #1 done: builds-api {shown(new)} to toolsbeta")

    oci_registry.delete_tag(IMAGE, new)  # a retention rule removes the image
    calls = len(bed.records())
    # it runs its pin now, so only a forced re-apply gets as far as the registry check
    s = await bed.run(["!apply builds-api toolsbeta --force"])

    assert replies(s.out)[-1] == (
        f"apply: refused: image {IMAGE}:{new} missing from the registry; nothing run"
    )
    assert len(bed.records()) == calls  # nothing ran
    assert oci_registry.manifest_digest(CHART, new) is not None  # the chart is still there
