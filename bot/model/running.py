"""What runs where: the live chart version when an environment has a cluster (or a live
file), else the version the bot last deployed there successfully (read from the `deploys`
table, which `bot.deploy.records` writes)."""

from __future__ import annotations

from bot.cluster.livestate import live_sources, live_state_envs, target_of
from bot.services import Services
from bot.store.db import Store


async def last_deployed(store: Store, component: str, env: str) -> str | None:
    """The version of the newest successful deploy of component to env, if any."""
    row = await store.fetchone(
        "SELECT version FROM deploys WHERE component=? AND env=? AND state='done'"
        " ORDER BY id DESC LIMIT 1",
        (component, env),
    )
    return str(row["version"]) if row and row["version"] else None


async def versions_run(store: Store, component: str, env: str) -> set[str]:
    """The versions the bot's deploys show ran in env: each deployed successfully there, and
    each that ran there when a deploy started (its `from_version`)."""
    rows = await store.fetchall(
        "SELECT version, from_version, state FROM deploys WHERE component=? AND env=?",
        (component, env),
    )
    done = {str(r["version"]) for r in rows if r["state"] == "done" and r["version"]}
    return done | {str(r["from_version"]) for r in rows if r["from_version"]}


# the deploys that applied a control-repo commit (an emergency rollback applies no commit, a
# review applies nothing)
_APPLIED = "state='done' AND action != 'review' AND commit_sha IS NOT NULL"


async def last_applied_commit(store: Store, component: str, env: str) -> str | None:
    """The control-repo commit of the newest successful apply there (None: none known)."""
    row = await store.fetchone(
        f"SELECT commit_sha FROM deploys WHERE component=? AND env=? AND {_APPLIED}"
        " ORDER BY id DESC LIMIT 1",
        (component, env),
    )
    return str(row["commit_sha"]) if row and row["commit_sha"] else None


async def last_applied_commits(store: Store) -> dict[tuple[str, str], str]:
    """`last_applied_commit` of every component and environment, in one query."""
    rows = await store.fetchall(
        "SELECT component, env, commit_sha FROM deploys WHERE id IN"
        f" (SELECT MAX(id) FROM deploys WHERE {_APPLIED} GROUP BY component, env)"
    )
    return {(str(r["component"]), str(r["env"])): str(r["commit_sha"]) for r in rows}


async def live_version(services: Services, component: str, env: str) -> str | None:
    """The chart version running in env (None: no cluster or live file, or it cannot say)."""
    source = live_sources(services.config, services.clusters).get(env)
    if source is None:
        return None
    target = target_of(services.config, component)
    return await source.live_version(target.namespace, target.release, target.chart_name)


def has_live_state(services: Services, env: str) -> bool:
    """A cluster (or a live file) says what runs in env."""
    return env in live_state_envs(services.config, services.clusters)


async def running_version(services: Services, component: str, env: str) -> str | None:
    """Live when a cluster (or live file) says (ClusterError propagates), else last deployed."""
    if has_live_state(services, env):
        return await live_version(services, component, env)
    return await last_deployed(services.store, component, env)
