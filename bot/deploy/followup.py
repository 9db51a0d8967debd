"""After a deploy of a bump MR (GitLab forge): a note on the MR, and merge when deployed.

Toolforge reviewers read "Ran on TOOLSBETA: PASSED" notes on the bump MR, so each
environment's deploy result is posted there. When every environment the MR changes runs the
version the MR pins for it, the bot merges the MR (`control_repo.merge_when_deployed`) or
announces that it is ready to merge. (What happens when the MR merges: `bot.deploy.onmerge`.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.cluster.kube import ClusterError
from bot.control.bumper import Bumper
from bot.control.forge import OpenBump
from bot.core.errors import GitLabError, UserError
from bot.model.running import running_version
from bot.services import Services
from bot.store.sal import SalEntry, actor_name

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
    tests: str = ""  # "functional tests 12 passed, 0 failed: <link>"
    tests_tail: str = ""


async def follow_up(
    services: Services, bumper: Bumper | None, mr: OpenBump, done: Deployed
) -> None:
    gitlab, cr = services.gitlab, services.config.control_repo
    if gitlab is None or cr is None or cr.forge != "gitlab" or not cr.project:
        return
    verdict = "PASSED" if done.state == "done" else "FAILED"
    body = (
        f"Deployed {done.component} {done.version} on {done.env.upper()}: {verdict}"
        f" (deploy #{done.deploy_id} by {actor_name(done.actor)}, {done.took}). "
        f"Log: {done.log_url}"
    )
    if done.tests:
        body += f"\n\n{done.tests[:1].upper()}{done.tests[1:]}"
        if done.tests_tail:
            body += f"\n\n```\n{done.tests_tail.replace('```', '` ` `')}\n```"
    if services.config.gitlab is None or services.config.gitlab.mr_notes:
        try:
            await gitlab.post_mr_note(cr.project, mr.iid, body)
        except GitLabError as exc:
            log.warning("cannot comment on bump MR !%s: %s", mr.iid, exc)
    if done.state != "done":
        return
    try:
        pending = await pending_envs(services, bumper, done.component, mr)
    except (UserError, ClusterError) as exc:
        log.warning("cannot tell whether MR !%s is fully deployed: %s", mr.iid, exc)
        return
    key = f"mr-deployed:{mr.iid}"
    if pending:
        return
    if not cr.merge_when_deployed:
        await services.announcer.announce(
            f"{done.component} bump MR !{mr.iid} is ready to merge: every environment it "
            f"changes runs its version · {mr.url}",
            component=done.component, key=key, final=True,
        )  # fmt: skip
        return
    try:
        await gitlab.merge_mr(cr.project, mr.iid)
    except GitLabError as exc:
        await services.announcer.announce(
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
    await services.announcer.announce(
        f"merged {done.component} bump MR !{mr.iid}: every environment it changes runs its "
        f"version · {mr.url}",
        component=done.component, key=key, final=True,
    )  # fmt: skip


async def pending_envs(
    services: Services, bumper: Bumper | None, component: str, mr: OpenBump
) -> list[str]:
    """Environments whose pin the MR changes and that do not run the MR's version yet."""
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
