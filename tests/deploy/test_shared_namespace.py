"""Two components in one namespace: a deploy of one watches only its own release's workloads
(`app.kubernetes.io/instance`, or `components.<c>.instance_label`), so a neighbour stuck in
ImagePullBackOff neither fails it nor keeps it waiting; the apply selects its release."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support.deployworld import NS, DeployBed, bed
from tests.support.shown import said, shown

__all__ = ["bed"]


def last_line(out: list[str]) -> str:
    return said(out)[-1]


@pytest.mark.parametrize(
    ("label", "state"),
    [
        (None, "done"),  # app.kubernetes.io/instance, as Helm's standard labels have it
        ("app.kubernetes.io/name", "done"),  # the fake sets it to the release's name too
        ("release", "failed"),  # a label no workload has: none can be told apart
    ],
)
async def test_a_failing_neighbour_does_not_decide_this_deploy(
    bed: DeployBed, label: str | None, state: str
) -> None:
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    # another team's release in the same namespace, stuck pulling its new image
    bed.kube.add_deployment(NS, "builds-builder", chart="builds-builder", version="0.0.7")
    bed.kube.start_rollout(NS, "builds-builder", version="0.0.8", ready_after_polls=None,
                           failure=("ImagePullBackOff", "Back-off pulling image"))  # fmt: skip
    if label is not None:  # a chart that names its release with its own label
        bed.data["components"]["builds-api"]["instance_label"] = label
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})
    rollout = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=new))
    )

    s = await bed.run(["!apply builds-api toolsbeta"])
    await rollout

    apply = next(c for c in bed.records() if c["sub"] == "apply")
    assert apply["argv"][-2:] == ["--selector", "name=builds-api"]
    line = last_line(s.out)
    if state == "done":
        assert re.match(
            rf"deploy #1 done: builds-api {re.escape(shown(new))} to toolsbeta in ", line
        )
        assert "live version verified" in line and "builds-builder" not in line
    else:  # every workload unnamed: the neighbour counts, and its failure is this deploy's
        assert line.startswith("deploy #1 failed: ") and "ImagePullBackOff" in line, line
