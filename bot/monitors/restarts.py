"""Restarts nobody deployed: a new ReplicaSet or Helm revision of a component that no deploy
of this bot started (a hand edit, `kubectl rollout restart`, a reloader after a certificate
renewal, someone's `helm upgrade`). Each is announced once in the component's room, which
also puts it on the board (the row's last announcement): what changed (the image, the
pod-template-hash), when, and who by (the Deployment's newest `managedFields` manager, or the
Helm revision's description).

What was seen is stored (`restarts_seen`, owned here), so a restart of the bot neither
repeats an announcement nor misses what changed while it was down. The first look at a
component and environment only takes note: the bot cannot know who made what was there
before it looked. A ReplicaSet or revision created while a deploy of that component and
environment ran (from its start to its end, 60 s either side for clock skew) is the bot's.
The row is written before the line is queued: a crash in between loses the line rather than
saying it twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bot.cluster.kube import ClusterError, KubeCluster
from bot.cluster.livestate import target_of
from bot.cluster.rollouts import Rollout, helm_revisions, replicasets
from bot.services import Services
from bot.store.db import StoreConn

SKEW = 60.0  # seconds: the cluster's clock and the bot's may differ this much
BASELINE = "baseline"  # the item that says the first look was taken
PREFIX = "restart nobody deployed"


Window = tuple[float, float | None]  # a deploy's start and end (None: still running)


def _when(created: datetime | None, now: float) -> float:
    return created.timestamp() if created is not None else now


def by_bot(at: float, windows: Iterable[Window]) -> bool:
    """Made while a deploy of this component and environment ran (SKEW either side)."""
    return any(start - SKEW <= at and (end is None or at <= end + SKEW) for start, end in windows)


def news(
    seen: set[str], found: Iterable[Rollout], windows: list[Window], now: float
) -> tuple[list[Rollout], list[Rollout]]:
    """(the rollouts not seen before, and those of them to announce: made outside every
    deploy window). A rollout without a creation time is judged at `now`."""
    fresh = [r for r in found if r.key not in seen]
    return fresh, [r for r in fresh if not by_bot(_when(r.created, now), windows)]


def describe(component: str, env: str, r: Rollout, before: dict[str, Any] | None) -> str:
    """`restart nobody deployed: builds-api tools: new ReplicaSet … by kubectl-edit: image
    A -> B`."""
    when = f" at {r.created.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if r.created else ""
    head = f"{PREFIX}: {component} {env}: new {r.kind} "
    if r.kind == "Helm revision":
        said = f', "{r.by}"' if r.by else ""
        return f"{head}{r.name} of {r.owner} (chart {r.version}{said}){when}"
    text = (
        f"{head}{r.name} of Deployment {r.owner} (pod-template-hash {r.template_hash},"
        f" revision {r.revision}){when} by {r.by or 'an unknown manager'}"
    )
    images, old = ", ".join(r.images) or "no image", (before or {}).get("images")
    if old is None:
        return f"{text}: image {images}"
    if list(r.images) == list(old):
        return f"{text}: image unchanged ({images}): the pods were replaced"
    return f"{text}: image {', '.join(old) or 'none'} -> {images}"


class RestartWatch:
    """Called by the monitors' round (`check`); announces through the services."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def check(self, now: float) -> list[str]:
        """Look at every component and environment with a cluster; the lines announced."""
        config = self.services.config
        said: list[str] = []
        for env, cluster in self.services.clusters.items():
            if not isinstance(cluster, KubeCluster):
                continue
            for component in config.components:
                target = target_of(config, component)
                try:
                    async with asyncio.timeout(config.monitors.source_timeout):
                        found = await replicasets(cluster, target.namespace, target.release)
                        found += await helm_revisions(cluster, target.namespace, target.release)
                except TimeoutError:
                    break  # the cluster does not answer: the rest of it stays unread this round
                except ClusterError:
                    continue  # not read: nothing is new, nothing is forgotten
                said += await self._compare(component, env, found, now)
        return said

    async def _seen(self, component: str, env: str) -> dict[str, dict[str, Any]]:
        rows = await self.services.store.fetchall(
            "SELECT item, info FROM restarts_seen WHERE component=? AND env=?", (component, env)
        )
        return {r["item"]: json.loads(r["info"]) for r in rows}

    async def _windows(self, component: str, env: str) -> list[Window]:
        rows = await self.services.store.fetchall(
            "SELECT started_at, finished_at FROM deploys WHERE component=? AND env=?"
            " AND action != 'review'",
            (component, env),
        )
        return [(float(r["started_at"]), r["finished_at"]) for r in rows]

    async def _remember(
        self, component: str, env: str, items: Iterable[tuple[str, dict[str, Any]]], now: float
    ) -> None:
        rows = [(component, env, key, json.dumps(info), now) for key, info in items]

        def write(conn: StoreConn) -> None:
            conn.executemany(
                "INSERT INTO restarts_seen (component, env, item, info, first_seen)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

        await self.services.store.transaction(write)

    async def _compare(
        self, component: str, env: str, found: list[Rollout], now: float
    ) -> list[str]:
        seen = await self._seen(component, env)
        info = {r.key: {"owner": r.owner, "revision": r.revision, "images": list(r.images)}
                for r in found}  # fmt: skip
        if BASELINE not in seen:  # the first look: what is there was made before it
            await self._remember(component, env, [(BASELINE, {}), *info.items()], now)
            return []
        fresh, say = news(set(seen), found, await self._windows(component, env), now)
        said = []
        for r in fresh:
            await self._remember(component, env, [(r.key, info[r.key])], now)
            if r not in say:
                continue
            line = describe(component, env, r, _before(r, seen, info))
            await self.services.announcer.announce(
                line, component=component, key=f"restart:{component}:{env}:{r.key}", final=True
            )
            said.append(line)
        return said


def _before(
    r: Rollout, seen: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The newest ReplicaSet of the same Deployment before `r` (seen before, or listed now)."""
    if r.kind != "ReplicaSet":
        return None
    earlier = [
        i for k, i in {**seen, **now}.items()
        if k.startswith("rs/") and i.get("owner") == r.owner and i.get("revision", 0) < r.revision
    ]  # fmt: skip
    return max(earlier, key=lambda i: i["revision"]) if earlier else None
