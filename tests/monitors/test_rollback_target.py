"""Rollback safety: when only the artifact of the release `!rollback` would return to (the
`previous` pin, `Bumper.previous`) is pruned, a `rollback-target-missing` alert says so, and
it resolves when the tag is back. Against a REAL OCI registry (`docker-registry`)."""

from __future__ import annotations

import time
from pathlib import Path

from bot.monitors.checks import Monitors
from tests.support.monitorworld import ENVS, Clock, on_real_registry, push_releases, world
from tests.support.oci_registry import OciRegistry


async def test_deleting_only_the_rollback_targets_tag_raises_and_resolves(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    async with world(tmp_path, on_real_registry(oci_registry)) as w:
        push_releases(w, oci_registry)
        app = await w.app()
        assert app.bumper is not None
        # tools is promoted to what toolsbeta runs: what it ran before is the rollback target
        before, promoted = w.pins[("builds-api", "tools")], w.pins[("builds-api", "toolsbeta")]
        await app.bumper.bump("builds-api", promoted, ["tools"], actor="console:alice")
        w.kubes["tools"].add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=promoted
        )
        w.pins[("builds-api", "tools")] = promoted
        clock = Clock(time.time())
        monitors = Monitors(app.services, app.bumper, clock=clock)
        assert await monitors.check_now() == []

        target = await app.bumper.previous("builds-api", "tools")  # what !rollback picks
        assert target == before
        assert target not in {w.pins[("builds-api", env)] for env in ENVS}  # not live or pinned
        envs = [e for e in ENVS if await app.bumper.previous("builds-api", e) == target]
        oci_registry.delete_tag("toolforge/builds-api", target)  # only that tag
        clock.now += 60
        actions = await monitors.check_now()

        assert [(a.verb, a.alert.kind, a.alert.component, a.alert.env) for a in actions] == [
            ("raise", "rollback-target-missing", "builds-api", env) for env in envs
        ]
        tools = next(a for a in actions if a.alert.env == "tools")
        assert tools.line(clock.now) == (
            f"ALERT rollback-target-missing builds-api tools: !rollback builds-api tools would"
            f" return to {target} (previous), but image toolforge/builds-api:{target} is gone from"
            " the registry: that rollback would be refused"
        )
        assert "next:" not in tools.line(clock.now)  # no step to advise: none is invented

        oci_registry.push_manifest("toolforge/builds-api", target)  # the tag is back
        clock.now += 60
        cleared = await monitors.check_now()
        assert [(a.verb, a.alert.kind, a.alert.env) for a in cleared] == [
            ("clear", "rollback-target-missing", env) for env in envs
        ]
