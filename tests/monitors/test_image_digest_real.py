"""Image digests against a REAL OCI registry (Debian's `docker-registry` on loopback): the
pods' `imageID` (Kubernetes fake) against the digest the registry gives for the pinned tag.
A re-pushed tag (same version, new digest) shows in `!status` as "running a different image
than the pin's" and raises an `image-digest` alert; the pods pulling the new image clear it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bot.monitors.checks import Monitors
from bot.status.lines import status_lines
from tests.support.monitorworld import CHARTS, Clock, world
from tests.support.oci_registry import OciRegistry, add_tag, push_manifest

IMAGE = "toolforge/builds-api"


async def test_a_re_pushed_tag_shows_as_running_a_different_image(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    def real_registry(data: dict[str, Any]) -> None:
        data["registry"] = {"url": oci_registry.url, "kind": "oci"}
        data["monitors"].update(undeployed_after=10 * 365 * 86400)

    async with world(tmp_path, real_registry) as w:
        digests = {}
        for name, versions in w.releases.items():
            for version in versions:
                digests[(name, version)] = oci_registry.push_manifest(f"toolforge/{name}", version)
                oci_registry.push_chart(f"{CHARTS}/{name}", version)
        pinned = w.pins[("builds-api", "tools")]
        pulled = digests[("builds-api", pinned)]
        w.kubes["tools"].add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=pinned, image_digest=pulled
        )
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(time.time()))
        assert [a.alert.kind for a in await monitors.check_now()] == []  # the pin's image runs

        # CI rebuilds and pushes the same version again: the tag now names another manifest
        push_manifest(oci_registry.url, IMAGE, "rebuild")
        repushed = add_tag(oci_registry.url, IMAGE, "rebuild", pinned)
        assert repushed != pulled
        actions = await monitors.check_now()
        raised = [(a.verb, a.alert.kind, a.alert.env) for a in actions]
        assert raised == [("raise", "image-digest", "tools")]
        text = actions[0].alert.text
        assert text.startswith("running a different image than the pin's: pod builds-api-")
        assert f"runs {pinned}@{pulled[:19]}" in text
        assert f"the registry's {IMAGE}:{pinned} is {repushed[:19]}" in text

        app.board.forget("builds-api")
        [line] = await status_lines(app.board, ["builds-api"], ["tools"])
        assert "ALERT: image-digest (running a different image than the pin's)" in line

        # the pods restart and pull what the tag names now: resolved
        w.kubes["tools"].add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=pinned, image_digest=repushed
        )
        actions = await monitors.check_now()
        assert [(a.verb, a.alert.kind) for a in actions] == [("clear", "image-digest")]
