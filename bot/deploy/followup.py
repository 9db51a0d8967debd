"""Deploys and the bump MR (GitLab forge): a note per deploy, merge when deployed, and
auto-apply when the MR is merged.

Toolforge reviewers read "Ran on TOOLSBETA: PASSED" notes on the bump MR, so each
environment's deploy result is posted there. When every environment the MR changes runs the
version the MR pins for it, the bot merges the MR (`control_repo.merge_when_deployed`) or
announces that it is ready to merge. When a bump MR is merged (webhook), `auto_apply`
environments that do not run the new pin yet apply it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.cluster.kube import ClusterError
from bot.control.forge import OpenBump
from bot.core.errors import UserError
from bot.core.sal import SalEntry, actor_name
from bot.deploy.preflight import running_version
from bot.deploy.records import DeployRequest
from bot.gitlab.api import GitLabError
from bot.gitlab.events import MergeRequestEvent
from bot.gitlab.inbox import Router

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("deploybot.deployer")


@dataclass(frozen=True)
class Deployed:
    component: str
    env: str
    version: str
    actor: str
    deploy_id: int
    state: str  # done | failed
    took: str
    log_url: str


async def follow_up(services: Services, mr: OpenBump, done: Deployed) -> None:
    gitlab, cr = services.gitlab, services.config.control_repo
    if gitlab is None or cr is None or cr.forge != "gitlab" or not cr.project:
        return
    verdict = "PASSED" if done.state == "done" else "FAILED"
    body = (
        f"Deployed {done.component} {done.version} on {done.env.upper()}: {verdict}"
        f" (deploy #{done.deploy_id} by {actor_name(done.actor)}, {done.took}). "
        f"Log: {done.log_url}"
    )
    if services.config.gitlab is None or services.config.gitlab.mr_notes:
        try:
            await gitlab.post_mr_note(cr.project, mr.iid, body)
        except GitLabError as exc:
            log.warning("cannot comment on bump MR !%s: %s", mr.iid, exc)
    if done.state != "done":
        return
    try:
        pending = await pending_envs(services, done.component, mr)
    except (UserError, ClusterError) as exc:
        log.warning("cannot tell whether MR !%s is fully deployed: %s", mr.iid, exc)
        return
    key = f"mr-deployed:{mr.iid}"
    if pending:
        return
    if not cr.merge_when_deployed:
        await services.announce(
            f"{done.component} bump MR !{mr.iid} is ready to merge: every environment it "
            f"changes runs its version · {mr.url}",
            component=done.component, key=key, final=True,
        )  # fmt: skip
        return
    try:
        await gitlab.merge_mr(cr.project, mr.iid)
    except GitLabError as exc:
        await services.announce(
            f"{done.component} bump MR !{mr.iid} is deployed everywhere but could not be "
            f"merged: {exc} · {mr.url}",
            component=done.component, key=key, final=True,
        )  # fmt: skip
        return
    await services.sal.record(
        SalEntry(
            actor=done.actor, action="merge", component=done.component, env=done.env,
            message=f"{actor_name(done.actor)}: merged {done.component} bump MR !{mr.iid}"
            " (every environment it changes runs its version)",
            to_version=done.version, mr_url=mr.url, result="merged",
        )
    )  # fmt: skip
    await services.announce(
        f"merged {done.component} bump MR !{mr.iid}: every environment it changes runs its "
        f"version · {mr.url}",
        component=done.component, key=key, final=True,
    )  # fmt: skip


async def pending_envs(services: Services, component: str, mr: OpenBump) -> list[str]:
    """Environments whose pin the MR changes and that do not run the MR's version yet."""
    bumper = services.bumper
    if bumper is None:
        return []
    pending = []
    for env in services.config.env_names:
        proposed = await bumper.pinned(component, env, mr.branch)
        if not proposed or proposed == await bumper.pinned(component, env):
            continue
        if await running_version(services, component, env) != proposed[0]:
            pending.append(env)
    return pending


class MergedBumps:
    """The MR-merged webhook of a bump MR: each `auto_apply` environment whose pin on the
    target branch is not what runs there applies it now, in configured order."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def register(self, router: Router) -> None:
        router.register("merge_request", self.on_merge_request)

    async def on_merge_request(self, ev: MergeRequestEvent) -> None:
        s = self.services
        cr = s.config.control_repo
        component = ev.source_branch.removeprefix("bump_")
        if (
            s.deployer is None or s.bumper is None or cr is None or cr.project != ev.project_path
            or ev.action != "merge" or not ev.source_branch.startswith("bump_")
            or component not in s.config.components
        ):  # fmt: skip
            return
        actor = f"gitlab:{ev.user or 'unknown'}"
        reqs = []
        for env in s.config.environments:
            if not env.auto_apply:
                continue
            try:
                pinned = await s.bumper.pinned(component, env.name)
                runs = await running_version(s, component, env.name)
            except (UserError, ClusterError) as exc:
                log.warning(
                    "auto-apply of %s in %s after !%s: %s", component, env.name, ev.iid, exc
                )
                continue
            if pinned and pinned[0] != runs:
                reqs.append(
                    DeployRequest(component, env.name, actor, "auto-apply", version=pinned[0])
                )
        if reqs:
            s.deployer.apply_later(reqs)
