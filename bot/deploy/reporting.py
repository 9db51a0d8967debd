"""How a deploy is told: its log URL, its lines in the room, its SAL entries, refusals, and
what it brings (commits, upgrade scripts). The deployer's half that only speaks."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.config.model import Config
from bot.control import upgrades
from bot.control.bumper import Bumper
from bot.core.errors import UserError
from bot.deploy.model import Deploy, DeployOutcome, DeployRequest
from bot.deploy.records import DeployRecords
from bot.services import Services
from bot.store.sal import SalEntry, actor_name, deploy_message


def deploy_key(deploy_id: int, step: str | None = None) -> str:
    """The outbox key of one of a deploy's lines: `deploy:7#start`, ..., `deploy:7` (its
    result); a newer state replaces an unsent line of the same key only."""
    return f"deploy:{deploy_id}" + (f"#{step}" if step else "")


class DeployReport:
    """What the deployer says and records about a deploy; composed into it, never inherited."""

    def __init__(self, services: Services, records: DeployRecords, bumper: Bumper | None) -> None:
        self.services = services
        self.config: Config = services.config
        self.records = records
        self.bumper = bumper

    def log_path(self, deploy_id: int) -> Path:
        return self.records.log_path(deploy_id)

    def log_url(self, deploy_id: int) -> str:
        return f"{self.config.bot.public_url.rstrip('/')}/deploys/{deploy_id}/log"

    async def say(
        self, d: Deploy, text: str, *, step: str | None = None, final: bool = False
    ) -> None:
        """One of the deploy's lines; each `step` (start, diff, scripts, brings; the result
        has none) is its own line in the outbox, said in the order the steps happened."""
        await self.services.announcer.announce(
            text, component=d.req.component, key=deploy_key(d.id, step), final=final
        )

    def waiting(self, d: Deploy) -> Callable[[str], Awaitable[None]]:
        """What a step waiting for a helm slot says in the room (`deploy #7 waiting ...`)."""

        async def say(line: str) -> None:
            await self.say(d, f"deploy #{d.id} {line}")

        return say

    async def refuse(self, req: DeployRequest, reason: str) -> DeployOutcome:
        """Record a refused deploy in the SAL; the returned line is the reply."""
        env_cfg = self.config.env(req.env)
        who = actor_name(req.actor)
        await self.services.sal.record(
            SalEntry(
                actor=req.actor, action=req.action, component=req.component, env=req.env,
                message=f"{who}: {req.action} {req.component} in {req.env} refused: {reason}"
                + "".join(f" {t}" for t in req.tasks),
                to_version=req.version, tasks=list(req.tasks), result="refused",
                sal_project=env_cfg.sal_project if env_cfg else None,
            )
        )  # fmt: skip
        self.services.metrics.deploys.labels("refused").inc()
        return DeployOutcome(None, "refused", f"refused: {reason}")

    async def record(self, d: Deploy, result: str, message: str) -> None:
        env_cfg = self.config.env(d.req.env)
        await self.services.sal.record(
            SalEntry(
                actor=d.req.actor, action=d.req.action, message=message,
                component=d.req.component, env=d.req.env, from_version=d.from_version,
                to_version=d.version, commit_sha=d.commit, mr_url=d.mr.url if d.mr else None,
                tasks=list(d.req.tasks), result=result, log_url=self.log_url(d.id),
                sal_project=env_cfg.sal_project if env_cfg else None,
            )
        )  # fmt: skip

    def base(self, d: Deploy) -> str:
        req = d.req
        to = d.version or "(the previous Helm revision, helm picks it)"
        return deploy_message(req.actor, req.component, d.from_version, to, req.env, d.refs)

    async def upgrade_scripts(self, d: Deploy, checkout: Path) -> str:
        """Name (SAL, room) the upgrade scripts this deploy crosses, before it applies;
        returns `; upgrade scripts …` for the final line, or ""."""
        old, note = d.from_version, ""
        if old is None and self.bumper is not None:  # what runs is unknown: the previous pin
            with contextlib.suppress(UserError):
                old = await self.bumper.previous(d.req.component, d.req.env)
            note = f" (what runs is unknown: counted from the previous pin {old})" if old else ""
        names = upgrades.crossed(upgrades.scripts_in(checkout, d.req.component), old, d.version)
        if not names:
            return ""
        text = upgrades.describe(d.req.component, names) + note
        await self.record(d, "upgrade-scripts", f"{self.base(d)}: {text}")
        await self.services.announcer.announce(
            f"deploy #{d.id} of {d.req.component} {d.from_version} -> {d.version} in"
            f" {d.req.env}: {text}", component=d.req.component, key=deploy_key(d.id, "scripts"),
        )  # fmt: skip
        return f"; {text}"

    async def brings(self, d: Deploy) -> None:
        """Announce the commits between what runs and what is deployed (first few inline)."""
        old, diffs = d.from_version, self.services.diffs
        if self.bumper is None or old is None or old == d.version or d.is_rollback:
            return  # a rollback takes commits away; its line names both versions instead
        source, component = self.bumper.source, d.req.component
        brings = await source.changes(component, old, d.version)
        if brings is None:
            return
        said = brings.line
        if not brings.commits and await source.is_ancestor(component, d.version, old):
            # a step back that is not a rollback (a forced downgrade): `old..new` is empty
            # because the commits go away, not because the code is the same
            back = await source.changes(component, d.version, old)
            if back is not None and back.commits:
                brings, said = back, back.back_line
        link = await diffs.save(brings.listing() + "\n") if diffs is not None else None
        await self.services.announcer.announce(  # its start line named the versions
            f"deploy #{d.id} {said(link)}",
            component=component,
            key=deploy_key(d.id, "brings"),
        )
