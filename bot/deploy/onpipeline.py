"""Staging from CI: `deploy_on_pipeline: true` on an environment.

When a default-branch (or release tag) pipeline of a component succeeds and the artifacts it
built are found (`bot.pipelines.announce` calls `on_artifacts` once per commit), each such
environment is pinned to that version and applied, under the same gates as `!deploy` (lock,
a deploy already running, freeze, window, requires, review, the Helm release state, the
registry); the line says "deploying because pipeline #N succeeded", a refusal says which
gate held it. Only a move forward: a pipeline of an older commit deploys nothing.
"""

from __future__ import annotations

import logging

from bot.control.bumper import Bumper
from bot.core.errors import UserError
from bot.core.tasks import TaskSet
from bot.deploy.deployer import Deployer
from bot.deploy.model import Action, DeployRequest
from bot.model.ancestry import Direction
from bot.services import Services

log = logging.getLogger("deploybot.deployer")


class PipelineDeploys:
    """Owned by the composition root; `on_artifacts` is the pipeline announcer's hook."""

    def __init__(self, services: Services, bumper: Bumper | None, deployer: Deployer) -> None:
        self.services = services
        self.bumper = bumper
        self.deployer = deployer
        self._tasks = TaskSet()

    def envs(self) -> list[str]:
        return [e.name for e in self.services.config.environments if e.deploy_on_pipeline]

    async def on_artifacts(
        self, component: str, version: str, pipeline_id: int, user: str | None
    ) -> None:
        """Start the deploys in the background (the artifact look-up has a time limit)."""
        if self.bumper is None or not self.envs():
            return
        actor = f"gitlab:{user or 'pipeline'}"
        self._tasks.spawn(
            self._deploy(component, version, pipeline_id, actor), name=f"pipeline-{pipeline_id}"
        )

    async def wait_idle(self, timeout: float) -> bool:
        return await self._tasks.wait_idle(timeout)

    async def stop(self) -> None:
        await self._tasks.stop()

    async def _say(self, component: str, text: str) -> None:
        await self.services.announcer.announce(text, component=component)

    async def _deploy(self, component: str, version: str, pipeline_id: int, actor: str) -> None:
        for env in self.envs():
            try:
                await self._one(component, env, version, pipeline_id, actor)
            except Exception:  # one environment's failure must not stop the next
                log.exception("deploy of %s %s to %s after pipeline #%s", component, version,
                              env, pipeline_id)  # fmt: skip

    async def _one(
        self, component: str, env: str, version: str, pipeline_id: int, actor: str
    ) -> None:
        assert self.bumper is not None
        why = f"pipeline #{pipeline_id} succeeded"
        move = await self.deployer.model.direction(component, env, version)
        if move in (Direction.SAME, Direction.BACK):
            return  # it runs that already, or something newer: nothing to do
        req = DeployRequest(component, env, actor, Action.AUTO_APPLY)
        env_cfg = self.services.config.env(env)
        refused = await self.deployer.precheck(req, version)
        if refused is None and env_cfg is not None and env_cfg.review:
            refused = await self.deployer.report.refuse(
                req, f"{env} applies only after a review: !apply {component} {env} runs the diff"
            )
        if refused is not None:
            await self._say(
                component,
                f"not deploying {component} {version} to {env} although {why}: {refused.line}",
            )
            return
        try:
            outcome = await self.bumper.bump(component, version, [env], actor=actor)
        except UserError as exc:
            await self._say(component, f"not deploying {component} {version} to {env}"
                                       f" although {why}: {exc}")  # fmt: skip
            return
        gitlab = self.bumper.forge.kind == "gitlab"
        if gitlab and env_cfg is not None and not env_cfg.deploy_before_merge:
            if outcome.published is not None:  # the merge of the bump MR applies it
                await self._say(component, f"pinned {component} {version} in {env} because"
                                           f" {why}; it applies when the bump MR merges")  # fmt: skip
            return
        await self._say(component, f"deploying {component} {version} to {env} because {why}")
        await self.deployer.apply(req)
