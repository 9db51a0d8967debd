"""Registry protection against FakeRegistry's Harbor v2 label endpoints: the label ends up on
exactly the in-use artifacts (live, pinned, previous), and nothing is ever deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.cluster.registry import Registry
from bot.monitors.checks import Monitors
from tests.support.monitorworld import CHARTS, Clock, World, world

LABEL = "deployed"


def _protect(data: dict[str, Any]) -> None:
    data["registry"].update(protect=True)


def _labelled(w: World) -> set[str]:
    return {
        f"{repo}:{tag}"
        for repo, artifacts in w.registry.repos.items()
        for artifact in artifacts.values()
        for tag in artifact.tags
        if LABEL in w.registry.label_names(repo, tag)
    }


def _in_use(w: World) -> set[str]:
    return {
        f"{repo}/{component}:{version}"
        for (component, _), version in w.pins.items()
        for repo in ("toolforge", CHARTS)
    }


def _tags(w: World) -> set[str]:
    return {
        f"{repo}:{tag}"
        for repo, artifacts in w.registry.repos.items()
        for artifact in artifacts.values()
        for tag in artifact.tags
    }


async def test_label_kept_on_exactly_the_artifacts_in_use(tmp_path: Path) -> None:
    async with world(tmp_path, _protect) as w:
        oldest = w.releases["builds-api"][0]  # in use nowhere
        async with Registry(w.registry.url, "harbor") as client:
            await client.add_label("toolforge", "builds-api", oldest, LABEL)
            await client.add_label(CHARTS, "builds-api", oldest, LABEL)
        before = _tags(w)
        app = await w.app()
        clock = Clock(w.release_time(w.releases["jobs-api"][-1]))
        monitors = Monitors(app.services, app.bumper, clock=clock)

        await monitors.check_now()
        assert _labelled(w) == _in_use(w)
        assert _tags(w) == before  # nothing deleted
        lines = [line for line in await w.outbox(app) if "registry protection" in line]
        assert len(lines) == 1
        assert lines[0].startswith(f"registry protection (label '{LABEL}'): labelled ")
        assert f"unlabelled {CHARTS}/builds-api:{oldest}, toolforge/builds-api:{oldest}" in lines[0]

        # toolsbeta now runs the newest release: it is in use, so it gets the label too
        newest = w.releases["builds-api"][-1]
        w.kubes["toolsbeta"].add_deployment(
            "builds-api", "builds-api", chart="builds-api", version=newest
        )
        clock.now += 60
        await monitors.check_now()
        assert _labelled(w) == _in_use(w) | {
            f"toolforge/builds-api:{newest}",
            f"{CHARTS}/builds-api:{newest}",
        }
        lines = [line for line in await w.outbox(app) if "registry protection" in line]
        assert len(lines) == 2 and "unlabelled" not in lines[1]

        clock.now += 60
        await monitors.check_now()  # nothing to change: nothing announced
        lines = [line for line in await w.outbox(app) if "registry protection" in line]
        assert len(lines) == 2


async def test_nothing_is_unlabelled_while_live_state_is_unknown(tmp_path: Path) -> None:
    async with world(tmp_path, _protect) as w:
        oldest = w.releases["jobs-api"][0]
        async with Registry(w.registry.url, "harbor") as client:
            await client.add_label("toolforge", "jobs-api", oldest, LABEL)
        w.kubes["tools"].fault = "error"  # maybe tools still runs the oldest version
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(w.release_time(oldest)))
        await monitors.check_now()
        assert LABEL in w.registry.label_names("toolforge/jobs-api", oldest)
        labelled = _labelled(w)
        assert {
            f"toolforge/jobs-api:{w.pins[('jobs-api', e)]}" for e in ("toolsbeta", "tools")
        } <= (labelled)
