"""GitLab deployments: each bot deploy of a component with `gitlab_deployments: true` is
recorded as a deployment of its GitLab project, so GitLab's Environments page and merge
request widget say "deployed to tools 2 hours ago".

The deployer only writes rows (`gitlab_deployments`, in the store, in the same step as its
own state): it never waits for GitLab. The leader's sender loop creates each deployment
(environment = the bot's environment name, `ref` = the release tag, that is the version,
`sha` = the tag's commit, else the version's sha8 suffix) as `running`, moves it to its end
state (done -> success, failed -> failed, interrupted -> canceled) and points the
environment's URL at the deploy's page. A rollback is a deployment of the older tag, which
GitLab itself shows as a rollback; its row says `rollback`. When GitLab is slow or down the
rows wait and are sent in order once it answers (backing off up to 30 s), so every record
arrives and no deploy waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from bot.core.errors import GitLabError
from bot.core.tasks import within
from bot.deploy.model import Action, Deploy
from bot.services import Services
from bot.store.sal import utcnow

log = logging.getLogger("deploybot.gitlab.deployments")

STATUS = {"done": "success", "failed": "failed", "interrupted": "canceled"}
SHA8 = re.compile(r"-([0-9a-f]{8})$")
MAX_BACKOFF = 30.0


class GitLabDeployments:
    """What the deployer tells (`started`, `ended`) and the loop that tells GitLab."""

    def __init__(self, services: Services, tick: float = 1.0) -> None:
        self.services, self.tick = services, tick
        self._wake = asyncio.Event()
        self._backoff = 0.0

    def _project(self, component: str) -> str | None:
        comp = self.services.config.components.get(component)
        if comp is None or not comp.gitlab_deployments or comp.helm_repo:
            return None
        if comp.project_id is not None:
            return str(comp.project_id)
        return comp.project

    async def started(self, d: Deploy) -> None:
        await self._write(d, "running")

    async def ended(self, d: Deploy, state: str) -> None:
        await self._write(d, STATUS.get(state, "failed"))

    async def _write(self, d: Deploy, status: str) -> None:
        """Store what GitLab should be told (never raises: a deploy does not wait on this)."""
        project = self._project(d.req.component)
        if project is None or d.req.action == Action.REVIEW or not d.version:
            return
        try:
            await self.services.store.transaction(lambda c: self._upsert(c, d, project, status))
        except Exception:
            log.exception("could not queue the GitLab deployment of deploy #%s", d.id)
            return
        self._wake.set()

    def _upsert(self, c: Any, d: Deploy, project: str, status: str) -> None:
        row = c.execute("SELECT id FROM gitlab_deployments WHERE deploy_id=?", (d.id,)).fetchone()
        if row is not None:
            c.execute("UPDATE gitlab_deployments SET status=? WHERE id=?", (status, row["id"]))
            return
        m = SHA8.search(d.version)
        kind = "rollback" if d.is_rollback else "deploy"
        c.execute(
            "INSERT INTO gitlab_deployments (deploy_id, project, environment, ref, sha, tag, url,"
            " status, kind, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (d.id, project, d.req.env, d.version, m.group(1) if m else "", 1,
             f"{self.services.config.bot.public_url.rstrip('/')}/deploys/{d.id}", status,
             kind, utcnow()),
        )  # fmt: skip

    async def pending(self) -> list[Any]:
        return await self.services.store.fetchall(
            "SELECT * FROM gitlab_deployments WHERE gitlab_id IS NULL"
            " OR sent_status IS NULL OR sent_status != status ORDER BY id"
        )

    # --- the leader's loop ------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            sent = await self.send_pending()
            wait = self.tick if sent else max(self.tick, self._backoff)
            try:
                await within(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def send_pending(self) -> bool:
        """Send what waits, oldest first; stop at the first GitLab failure (True: all sent)."""
        gitlab = self.services.gitlab
        if gitlab is None:
            return True
        for row in await self.pending():
            try:
                await self._send(dict(row))
            except GitLabError as exc:
                self._backoff = min(max(self._backoff * 2, self.tick), MAX_BACKOFF)
                await self.services.store.execute(
                    "UPDATE gitlab_deployments SET attempts=attempts+1, last_error=? WHERE id=?",
                    (str(exc)[:300], row["id"]),
                )
                log.warning(
                    "GitLab deployment of deploy #%s not sent yet: %s", row["deploy_id"], exc
                )
                return False
        self._backoff = 0.0
        return True

    async def _send(self, row: dict[str, Any]) -> None:
        gitlab = self.services.gitlab
        assert gitlab is not None
        project, store = row["project"], self.services.store
        if row["gitlab_id"] is None:
            sha = await self._sha(project, row["ref"], row["sha"])
            made = await gitlab.create_deployment(project, row["environment"], row["ref"], sha,
                                                  tag=True, status="running")  # fmt: skip
            await store.execute(
                "UPDATE gitlab_deployments SET gitlab_id=?, sha=?, sent_status='running' WHERE id=?",
                (int(made["id"]), sha, row["id"]),
            )
            row.update(gitlab_id=int(made["id"]), sent_status="running")
            env_id = (made.get("environment") or {}).get("id")
            if env_id is not None:  # best effort: the deployment itself is what counts
                try:
                    await gitlab.set_environment_url(project, int(env_id), row["url"])
                except GitLabError as exc:
                    log.warning("environment URL of %s not set: %s", row["environment"], exc)
        if row["status"] != row["sent_status"]:
            await gitlab.update_deployment(project, row["gitlab_id"], row["status"])
            await store.execute(
                "UPDATE gitlab_deployments SET sent_status=? WHERE id=?", (row["status"], row["id"])
            )

    async def _sha(self, project: str, ref: str, sha8: str) -> str:
        """The tag's full commit id when GitLab knows the tag, else the sha8 suffix."""
        gitlab = self.services.gitlab
        assert gitlab is not None
        commit = await gitlab.get_commit(project, ref)
        return str(commit["id"]) if commit else sha8
