"""Checks a deploy must pass before anything runs, and what runs where.

Lock, deploy window, `requires` and registry artifacts are checked in that order; the first
failure becomes a `Refusal` (one line, nothing was run). Admins' `--force` overrides the
window, `requires` and an unreachable registry (never a missing artifact or a lock), and the
override is kept as a note for the SAL. "What runs" is the live chart version when the
environment has a cluster, else what the bot last deployed there successfully.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.cluster.kube import ClusterError
from bot.cluster.livestate import live_sources, target_of
from bot.cluster.registry import RegistryError
from bot.core.errors import UserError
from bot.core.windows import describe_refusal, in_window, parse_windows

if TYPE_CHECKING:
    from bot.services import Services


class Refusal(UserError):
    """A deploy that may not start; nothing was run."""


@dataclass
class Checked:
    """What passed, and what the user should know (`notes` go into the start line + SAL)."""

    notes: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)


async def last_deployed(services: Services, component: str, env: str) -> str | None:
    """The version of the newest successful deploy of component to env, if any."""
    row = await services.store.fetchone(
        "SELECT version FROM deploys WHERE component=? AND env=? AND state='done'"
        " ORDER BY id DESC LIMIT 1",
        (component, env),
    )
    return str(row["version"]) if row and row["version"] else None


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
    return await last_deployed(services, component, env)


async def check_lock(services: Services, component: str, env: str, actor: str) -> None:
    lock = await services.locks.get(component, env)
    if lock is not None and lock.owner != actor:
        raise Refusal(f"{lock.describe()}; nothing run")


def check_window(services: Services, env: str, force: bool, now: datetime, out: Checked) -> None:
    env_cfg = services.config.env(env)
    windows = parse_windows(env_cfg.windows if env_cfg else [])
    if in_window(windows, now.astimezone(UTC)):
        return
    reason = f"{env} is {describe_refusal(windows, now)}"
    if not force:
        raise Refusal(f"{reason}; nothing run (an admin may add --force)")
    out.forced.append(f"{reason}, overridden with --force")


async def check_requires(
    services: Services, component: str, env: str, version: str, force: bool, out: Checked
) -> None:
    """The required environment must run `version` (live with a cluster, else deployed or
    pinned on the target branch)."""
    env_cfg = services.config.env(env)
    required = env_cfg.requires if env_cfg else None
    if required is None:
        return
    if required in services.clusters:
        try:
            runs = {await live_version(services, component, required)}
        except ClusterError as exc:
            raise Refusal(f"cannot read what runs in {required}: {exc}; nothing run") from None
        how = "live"
    else:
        runs = {await last_deployed(services, component, required)}
        if services.bumper is not None:
            runs |= set(await services.bumper.pinned(component, required))
        how = "deployed or pinned"
    if version in runs:
        return
    shown = ", ".join(sorted(v for v in runs if v)) or "unknown"
    reason = f"{env} requires {required}, which does not run {version} ({how}: {shown})"
    if not force:
        raise Refusal(f"{reason}; nothing run (deploy it to {required} first)")
    out.forced.append(f"{reason}, overridden with --force")


async def check_registry(
    services: Services, component: str, version: str, force: bool, out: Checked
) -> None:
    """Image and chart must exist; missing -> Refusal naming them."""
    registry = services.registry
    if registry is None:
        out.notes.append("artifacts not checked: no registry configured")
        return
    comp = services.config.components[component]
    wanted = [(kind, repo) for kind, repo in (("image", comp.image), ("chart", comp.chart)) if repo]
    if not wanted:
        out.notes.append(f"artifacts not checked: no image or chart configured for {component}")
        return
    missing = []
    try:
        for kind, repo in wanted:
            if not await registry.manifest_exists(repo, version):
                missing.append(f"{kind} {registry.repository_path(repo)}:{version}")
    except RegistryError as exc:
        if not force:
            raise Refusal(f"cannot check artifacts: {exc}; nothing run") from None
        out.forced.append(f"artifacts not checked ({exc}), overridden with --force")
        return
    if missing:
        raise Refusal(f"{' and '.join(missing)} missing from the registry; nothing run")
    out.notes.append("artifacts present")
