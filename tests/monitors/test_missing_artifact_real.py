"""The missing-artifact monitor against a REAL OCI registry (Debian's `docker-registry` on
loopback): every image and chart in use pushed over the distribution API, then one tag
deleted as a retention rule would."""

from __future__ import annotations

import time
from pathlib import Path

from bot.monitors.checks import Monitors
from tests.support.monitorworld import Clock, on_real_registry, push_releases, world
from tests.support.oci_registry import OciRegistry


async def test_monitor_raises_missing_artifact_when_a_tag_is_deleted(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    async with world(tmp_path, on_real_registry(oci_registry)) as w:
        push_releases(w, oci_registry)
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
