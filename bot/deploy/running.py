"""What runs where: the live chart version when an environment has a cluster (or a live
file), else the version the bot last deployed there successfully."""

from __future__ import annotations

from collections.abc import Sequence

from bot.cluster.kube import ClusterError
from bot.cluster.livestate import live_sources, target_of
from bot.deploy.records import last_deployed
from bot.services import Services


async def live_version(services: Services, component: str, env: str) -> str | None:
    """The chart version running in env (None: no cluster or live file, or it cannot say)."""
    source = live_sources(services.config, services.clusters).get(env)
    if source is None:
        return None
    target = target_of(services.config, component)
    return await source.live_version(target.namespace, target.release, target.chart_name)


async def running_version(services: Services, component: str, env: str) -> str | None:
    """Live when a cluster (or live file) says (ClusterError propagates), else last deployed."""
    if env in live_sources(services.config, services.clusters):
        return await live_version(services, component, env)
    return await last_deployed(services.store, component, env)


async def live_of(
    services: Services, component: str, version: str, envs: Sequence[str]
) -> dict[str, bool | None]:
    """Per environment: does it run `version` (None: no live state, or it cannot say)?
    What "step k of n" counts as reached wherever it is shown."""
    sources = live_sources(services.config, services.clusters)
    out: dict[str, bool | None] = {}
    for env in envs:
        if env not in sources:
            out[env] = None
            continue
        try:
            live = await live_version(services, component, env)
        except ClusterError:
            live = None
        out[env] = None if live is None else live == version
    return out
