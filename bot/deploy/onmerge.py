"""Control-repo merge requests: one line per state change, and auto-apply when a bump MR
merges.

Every MR event on the control repo is announced once per real change (the
`merge_requests` table remembers what the channel has seen, so a label or reviewer change
stays quiet). When a bump MR (`bump_<component>`) is merged, each `auto_apply` environment
whose pin on the target branch is not what runs there applies it, in configured order.
"""

from __future__ import annotations

import logging
import time

from bot.cluster.kube import ClusterError
from bot.control.bumper import Bumper
from bot.core.errors import UserError
from bot.deploy.deployer import Deployer
from bot.deploy.model import Action, DeployRequest
from bot.gitlab.events import MergeRequestEvent
from bot.gitlab.inbox import Router
from bot.model.running import running_version
from bot.services import Services

log = logging.getLogger("deploybot.deployer")

MR_ACTIONS = {
    "open": "opened",
    "reopen": "reopened",
    "update": "updated",
    "merge": "merged",
    "close": "closed",
}


class ControlRepoMRs:
    """The merge_request webhook of the control repo; owns the `merge_requests` table."""

    def __init__(self, services: Services, bumper: Bumper | None, deployer: Deployer) -> None:
        self.services = services
        self.bumper = bumper
        self.deployer = deployer

    def register(self, router: Router) -> None:
        router.register("merge_request", self.on_merge_request)

    async def on_merge_request(self, ev: MergeRequestEvent) -> None:
        control = self.services.config.control_repo
        if control is None or control.project != ev.project_path:
            return
        await self._announce(ev)
        await self._auto_apply(ev)

    def _component(self, ev: MergeRequestEvent) -> str | None:
        name = ev.source_branch.removeprefix("bump_")
        if ev.source_branch.startswith("bump_") and name in self.services.config.components:
            return name
        return None

    async def _announce(self, ev: MergeRequestEvent) -> None:
        s = self.services
        word = MR_ACTIONS.get(ev.action or "")
        if word is None:
            return
        summary = f"{ev.state}|{ev.last_commit_sha}|{ev.title}"
        row = await s.store.fetchone(
            "SELECT summary FROM merge_requests WHERE project=? AND iid=?",
            (ev.project_path, ev.iid),
        )
        if row is not None and row["summary"] == summary:
            return  # nothing the channel has not seen (a label or reviewer change)
        component = self._component(ev)
        what = f"{component} bump MR" if component else "control repo MR"
        by = f" by gitlab:{ev.user}" if ev.user else ""
        await s.announcer.announce(
            f"{what} !{ev.iid} {word}{by}: {ev.title[:120]} {ev.url}",
            component=component,
            key=f"mr:{ev.project_id}:{ev.iid}",
            final=ev.state in ("merged", "closed"),
        )
        await s.store.execute(
            "INSERT INTO merge_requests (project, iid, component, state, summary, url, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project, iid) DO UPDATE SET"
            " component=excluded.component, state=excluded.state, summary=excluded.summary,"
            " url=excluded.url, updated_at=excluded.updated_at",
            (ev.project_path, ev.iid, component, ev.state, summary, ev.url, time.time()),
        )

    async def _auto_apply(self, ev: MergeRequestEvent) -> None:
        component = self._component(ev)
        if self.bumper is None or ev.action != "merge" or component is None:
            return
        actor = f"gitlab:{ev.user or 'unknown'}"
        reqs = []
        for env in self.services.config.environments:
            if not env.auto_apply:
                continue
            try:
                pinned = await self.bumper.pinned(component, env.name)
                runs = await running_version(self.services, component, env.name)
            except (UserError, ClusterError) as exc:
                log.warning(
                    "auto-apply of %s in %s after !%s: %s", component, env.name, ev.iid, exc
                )
                continue
            if pinned and pinned[0] != runs:
                reqs.append(
                    DeployRequest(component, env.name, actor, Action.AUTO_APPLY, version=pinned[0])
                )
        if reqs:
            self.deployer.apply_later(reqs)
