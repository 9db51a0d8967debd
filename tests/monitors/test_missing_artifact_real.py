"""The missing-artifact monitor against a REAL OCI registry (Debian's `docker-registry` on
loopback): every image and chart in use pushed over the distribution API, then one tag
deleted as a retention rule would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bot.monitors.checks import Monitors
from tests.support.monitorworld import CHARTS, Clock, world
from tests.support.oci_registry import OciRegistry


async def test_monitor_raises_missing_artifact_when_a_tag_is_deleted(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    def real_registry(data: dict[str, Any]) -> None:
        data["registry"] = {"url": oci_registry.url, "kind": "oci"}
        data["monitors"].update(undeployed_after=10 * 365 * 86400)

    async with world(tmp_path, real_registry) as w:
        for name, versions in w.releases.items():
            for version in versions:
                oci_registry.push_manifest(f"toolforge/{name}", version)
                oci_registry.push_chart(f"{CHARTS}/{name}", version)
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(time.time()))

        assert await monitors.check_now() == []  # every artifact in use is there

        gone = w.pins[("jobs-api", "tools")]
        oci_registry.delete_tag("toolforge/jobs-api", gone)
        actions = await monitors.check_now()

    raised = [(a.verb, a.alert.kind, a.alert.component, a.alert.env) for a in actions]
    envs = [env for env in ("toolsbeta", "tools") if w.pins[("jobs-api", env)] == gone]
    assert raised == [("raise", "missing-artifact", "jobs-api", env) for env in envs]
    text = next(a.alert.text for a in actions if a.alert.env == "tools")
    assert text == (
        f"image toolforge/jobs-api:{gone} (live, pinned) is gone from the registry:"
        " the next restart or deploy will fail"
    )
