"""Restarts nobody deployed: a ReplicaSet (or Helm revision) that appears without a deploy of
this bot is announced once with what changed and who by — and never again, also after the
bot restarts on the same store; one made while the bot's own deploy ran is not announced."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from bot.app import App
from bot.deploy.model import Action, DeployRequest
from bot.monitors.checks import Monitors
from bot.monitors.restarts import PREFIX, RestartWatch
from tests.support.monitorworld import Clock, World, world
from tests.support.shown import shown


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def restart_lines(w: World, app: App) -> list[str]:
    return [line for line in await w.outbox(app) if line.startswith(PREFIX)]


async def test_a_replicaset_made_outside_the_bot_is_announced_once(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        tools = w.kubes["tools"]
        now = time.time()
        old = w.pins[("builds-api", "tools")]
        new = w.releases["builds-api"][-1]
        app = await w.app()
        clock = Clock(now)
        monitors = Monitors(
            app.services, app.bumper, clock=clock, restarts=RestartWatch(app.services)
        )
        await monitors.check_now()
        assert await restart_lines(w, app) == []  # the first look only takes note

        edited = now - 30
        tools.edit_by_hand("builds-api", "builds-api", at=rfc3339(edited), version=new)
        clock.now = now + 60
        await monitors.check_now()
        lines = await restart_lines(w, app)
        assert len(lines) == 1, lines
        rs = lines[0].split(" new ReplicaSet ")[1].split()[0]  # builds-api-<hash>
        pod_hash = rs.removeprefix("builds-api-")
        assert lines[0] == (
            f"{PREFIX}: builds-api tools: new ReplicaSet {rs} of Deployment builds-api"
            f" (pod-template-hash {pod_hash}, revision 2) at"
            f" {datetime.fromtimestamp(edited, UTC):%Y-%m-%d %H:%M} UTC by kubectl-edit: image"
            f" harbor.example.org/toolforge/builds-api:{old} ->"
            f" harbor.example.org/toolforge/builds-api:{new}"
        )
        clock.now = now + 120
        await monitors.check_now()
        assert len(await restart_lines(w, app)) == 1  # not again

        # the bot restarts: a new process on the same store announces nothing again
        again = await w.app()
        restarted = Monitors(
            again.services, again.bumper, clock=clock, restarts=RestartWatch(again.services)
        )
        await restarted.check_now()
        assert len(await restart_lines(w, again)) == 1

        # someone's `helm upgrade` of jobs-api: a Helm revision nobody deployed through the bot
        tools.add_helm_release("jobs-api", "jobs-api", 7, "jobs-api", w.releases["jobs-api"][-1])
        await restarted.check_now()
        helm = (await restart_lines(w, again))[1:]
        assert helm == [
            f"{PREFIX}: jobs-api tools: new Helm revision 7 of jobs-api (chart"
            f' {shown(w.releases["jobs-api"][-1])}, "Upgrade complete")'
        ]


async def test_a_replicaset_made_while_the_bots_deploy_ran_is_not_announced(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        tools = w.kubes["tools"]
        now = time.time()
        app = await w.app()
        clock = Clock(now)
        monitors = Monitors(
            app.services, app.bumper, clock=clock, restarts=RestartWatch(app.services)
        )
        await monitors.check_now()
        new = w.releases["builds-api"][-1]
        req = DeployRequest("builds-api", "tools", "console:alice", Action.APPLY)
        await app.deployer.records.insert(req, new, w.pins[("builds-api", "tools")], None, None)
        tools.edit_by_hand(
            "builds-api", "builds-api", at=rfc3339(time.time()), version=new, manager="helm"
        )
        await monitors.check_now()
        assert await restart_lines(w, app) == []  # the bot's deploy is running: its own
        # a later hand restart (the deploy long over) is someone else's
        await app.services.store.execute(
            "UPDATE deploys SET state='done', finished_at=? WHERE component='builds-api'",
            (time.time(),),
        )
        tools.edit_by_hand(
            "builds-api", "builds-api", at=rfc3339(time.time() + 3600), manager="kubectl-rollout"
        )
        clock.now = now + 3700
        await monitors.check_now()
        [line] = await restart_lines(w, app)
        assert line.endswith(
            f"by kubectl-rollout: image unchanged (harbor.example.org/toolforge/builds-api:{new}):"
            " the pods were replaced"
        )
