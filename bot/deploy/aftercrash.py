"""After a restart: what a crash cut off between a pin change and its deploy.

`Deployer.recover` reports deploys that were in flight, and `bot.control.recovery`
completes the SAL entries of bumps published just before a crash (also of a push that lands
after the restart looked). One gap was left, found by the kill -9 matrix
(tests/faults/test_kill_matrix.py): a `!deploy` (or `!promote`, `!rollback`) killed after
its pin change was pushed and recorded but before the deploy it implies had its row; the
restart said nothing, and the pin sat on main, not applied. Now the newest SAL entry of each
component+environment is looked at: a pin change whose apply should have followed gets one
line naming `!apply`, and an `interrupted` SAL entry (so it is said once, and the log shows
it).

Nothing is ever applied here; a person decides.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.control.bumper import Bumper
from bot.services import Services
from bot.store.sal import SalEntry, deploy_message

PIN_CHANGED = ("pushed", "mr-opened", "mr-updated")
log = logging.getLogger("deploybot.aftercrash")


def _applies(services: Services, bumper: Bumper, entry: SalEntry) -> bool:
    """True when the command that changed this pin goes on to apply it there (as
    `Deployer.auto_apply` and `!rollback` do)."""
    env = services.config.env(entry.env or "")
    if env is None or entry.result not in PIN_CHANGED:
        return False
    if bumper.forge.kind == "gitlab" and not env.deploy_before_merge:
        return False  # applied after the merge, not by the command
    if entry.action == "rollback":
        return True
    return entry.action in ("bump", "promote") and env.auto_apply and not env.review


async def unapplied(
    services: Services, bumper: Bumper, components: Iterable[str]
) -> list[tuple[str, str]]:
    """Pin changes whose apply never started; each gets an `interrupted` SAL entry.
    Returns (component, line) pairs to announce."""
    said: list[tuple[str, str]] = []
    for component in components:
        for env in services.config.env_names:
            newest = await services.sal.query(component=component, env=env, limit=1)
            if not newest or not _applies(services, bumper, newest[0]):
                continue
            e = newest[0]
            verb = "rollback" if e.action == "rollback" else "auto-apply"
            sha = (e.commit_sha or "")[:8]
            base = deploy_message(e.actor, component, e.from_version, e.to_version or "?", env,
                                  [x for x in (sha, *e.tasks) if x])  # fmt: skip
            await services.sal.record(SalEntry(
                actor=e.actor, action=verb, component=component, env=env,
                message=f"{base}: {verb} interrupted: the bot restarted before it started;"
                " nothing was applied",
                from_version=e.from_version, to_version=e.to_version, commit_sha=e.commit_sha,
                mr_url=e.mr_url, tasks=list(e.tasks), result="interrupted",
                sal_project=e.sal_project,
            ))  # fmt: skip
            said.append((component, (
                f"{component} {e.to_version} was pinned in {env} ({sha}) but the bot restarted"
                f" before the {verb} started; nothing was applied there — !apply {component}"
                f" {env} to deploy it"
            )))  # fmt: skip
    return said


async def report_unapplied(services: Services, bumper: Bumper, components: Iterable[str]) -> None:
    """Announce the pin changes of `components` left unapplied. A failure (a store that
    cannot write) is logged, and the bot goes on."""
    try:
        for component, line in await unapplied(services, bumper, components):
            await services.announcer.announce(line, component=component)
    except Exception:
        log.exception("reporting what a crash cut off failed")
